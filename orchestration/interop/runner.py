"""Runs the interop matrix in a lab built from labspec.topology (issue 12).

Per peer suite s and role:
- ``mn`` (claims 7-11): stock im-<s> initiates towards our SG-B through SG-A's IP-IP
  tunnel, once per (proposal, key type) cell: IKE_SA up, CHILD_SA up with the cell's
  algorithms (read on both sides), ping both ways through the SA (b's answers return
  through the same CHILD_SA), the realm-indexed filter admits 10.0.0.7 and drops 10.0.0.8
  (its counters move), and a running 50 pps stream survives CHILD_SA rekey, IKE_SA rekey
  and IKE_SA reauthentication with at most LOSS_WINDOW packets lost. Then the negative
  cells, each refused, with the reason found in the peer's and in our SG's charon log.
Times are taken inside the peer (date before and after `swanctl --initiate`), so the
bench's cell and baseline include the same swanctl start-up.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable

from orchestration.lab import Lab

from . import labspec as L
from .matrix import (KEY_TYPES, NEGATIVES, PROPOSALS, SUITE_RELEASE, Cell, algs_disagree, column,
                     missing_features)
from .peer import PEER_LOG, SWANCTL_DIR, cell_name, initiator_swanctl, responder_swanctl
from .pki import MatrixCA

Say = Callable[[str], None]

OUR_REALM = "A"                                      # SG-B's realm for SG-A's initiators
OUR_LOG = f"/var/lib/testbed/sg/{OUR_REALM}/charon.log"
OUR_URI = f"unix:///var/lib/testbed/sg/{OUR_REALM}/charon.vici"
# Packets of a 50 pps stream that may be lost across one CHILD rekey + IKE rekey + reauth.
# Measured 0 in 45 of 45 runs with make_before_break (see description.md); 2 packets = 40 ms.
LOSS_WINDOW = 2
STREAM_COUNT, STREAM_INTERVAL, STEP_S = 200, 0.02, 1.0   # 4 s stream, a rekey step a second

# What list-sas shows for each proposal (IKE line, ESP line).
SHOWN = {
    "aes128gcm16-prfsha256-ecp256": ("AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256", "AES_GCM_16-128"),
    "aes256-sha256-modp3072": ("AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_3072",
                               "AES_CBC-256/HMAC_SHA2_256_128"),
    "chacha20poly1305-prfsha256-curve25519": ("CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519",
                                              "ESP:CHACHA20_POLY1305"),
}
# Why each negative cell must be refused: (regex in the peer's log, regex in our SG's log).
REFUSAL = {
    "wrong-san": (r"AUTHENTICATION_FAILED", r"no matching peer config found|constraint check failed"),
    "expired": (r"AUTHENTICATION_FAILED", r"certificate .*(expired|invalid|not valid)|no trusted .* public key found"),
    "other-ca": (r"AUTHENTICATION_FAILED", r"no issuer certificate found|no trusted .* public key found"),
    "no-proposal": (r"NO_PROPOSAL_CHOSEN", r"received proposals unacceptable|no acceptable proposal found"),
}


def _hex(a: str) -> str:
    return IPv4Address(a).packed.hex()


@dataclass
class MatrixRun:
    """One matrix run over a lab that is up. `cells` collects the results."""
    lab: Lab
    suites: list[str]
    proposals: list[str] = field(default_factory=lambda: list(PROPOSALS))
    key_types: list[str] = field(default_factory=lambda: list(KEY_TYPES))
    say: Say = print
    rekey: bool = True
    negatives: bool = True
    target: str = L.TARGET           # in the workgroup: must be reached through the SA
    not_target: str = L.NOT_TARGET   # not in the workgroup: must be dropped by the filter
    cells: list[Cell] = field(default_factory=list)
    mn_ha_key: bytes = field(default_factory=lambda: os.urandom(16))   # claim 24's MN-HA key

    # ---- set-up --------------------------------------------------------------------------
    def prepare(self, timeout: float = 60) -> None:
        """Issue every certificate, hand them to SGs and peers, wait until all are ready."""
        ca, other = MatrixCA(), MatrixCA("another CA")
        for node, public in (("sg-a", L.SG_A), ("sg-b", L.SG_B)):
            c = ca.issue(f"{node}.interop", [public], "p256")
            self.lab.put_file(node, "/etc/testbed/sg/cert.pem", c.cert)
            self.lab.put_file(node, "/etc/testbed/sg/key.pem", c.key, 0o600)
            self.lab.put_file(node, "/etc/testbed/sg/ca.pem", ca.pem)
            self.lab.put_file(node, L.SG_READY, b"")
        mn = ca.issue("m.interop", [L.SG_B], "p256", san_dns=(L.MN_FQDN,))
        self.lab.put_file("m", f"{L.MN_PKI}/cert.pem", mn.cert)
        self.lab.put_file("m", f"{L.MN_PKI}/key.pem", mn.key, 0o600)
        self.lab.put_file("m", f"{L.MN_PKI}/ca.pem", ca.pem)
        self.lab.put_file("m", L.MN_READY, b"")
        for s in self.suites:
            node = L.responder_node(s)
            for kt in KEY_TYPES:
                c = ca.issue(f"{node}.interop", [L.responder_public(s)], kt)
                self.lab.put_file(node, f"{SWANCTL_DIR}/x509/{kt}.pem", c.cert)
                self.lab.put_file(node, f"{SWANCTL_DIR}/private/{kt}.pem", c.key, 0o600)
            self.lab.put_file(node, f"{SWANCTL_DIR}/x509ca/ca.pem", ca.pem)
            self._responder_conf(s, None, "p256")
        for s in self.suites:
            node = L.initiator_node(s)
            creds = {f"{kt}": ca.issue(f"{node}.interop", [L.SG_A], kt) for kt in KEY_TYPES}
            creds["wrong-san"] = ca.issue(f"{node}.interop", [L.OTHER_SG], "p256")
            creds["expired"] = ca.issue(f"{node}.interop", [L.SG_A], "p256", expired=True)
            creds["other-ca"] = other.issue(f"{node}.interop", [L.SG_A], "p256")
            for name, c in creds.items():
                self.lab.put_file(node, f"{SWANCTL_DIR}/x509/{name}.pem", c.cert)
                self.lab.put_file(node, f"{SWANCTL_DIR}/private/{name}.pem", c.key, 0o600)
            self.lab.put_file(node, f"{SWANCTL_DIR}/x509ca/ca.pem", ca.pem)
            self.lab.put_file(node, f"{SWANCTL_DIR}/swanctl.conf", initiator_swanctl(
                L.SG_B, L.SG_A, L.OTHER_SG, L.REALM,
                baseline=(L.responder_public(s), f"{L.responder_realm(s)}/32")))
        deadline = time.monotonic() + timeout
        todo = {L.initiator_node(s) for s in self.suites} | {L.responder_node(s) for s in self.suites} | {"sg-b"}
        while todo and time.monotonic() < deadline:
            for node in sorted(todo):
                if node == "sg-b":
                    ok = self._sg_ready()
                else:
                    ok = self.lab.exec(node, "swanctl --load-all --noprompt").ok
                if ok:
                    todo.discard(node)
            time.sleep(0.5)
        if todo:
            raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(sorted(todo))} "
                               "(see results/<scenario>/logs/<node>/)")

    def _sg_ready(self) -> bool:
        r = self.lab.exec("sg-b", "cat /run/testbed/sg.json")
        try:
            st = json.loads(r.stdout)
        except ValueError:
            return False
        realm = st.get("realms", {}).get(OUR_REALM, {})
        return bool(realm.get("charon_running")) and not realm.get("error") and st["filter"].get("version") == 0

    # ---- helpers ---------------------------------------------------------------------------
    def _size(self, node: str, path: str) -> int:
        r = self.lab.exec(node, f"stat -c %s {path} 2>/dev/null || echo 0")
        return int(r.stdout.strip() or 0)

    def _since(self, node: str, path: str, offset: int) -> str:
        return self.lab.exec(node, f"tail -c +{offset + 1} {path}").stdout

    def _counter(self, name: str) -> int:
        r = self.lab.exec("sg-b", f"nft -j list counter ip tb_workgroup {name}")
        try:
            return int([i["counter"] for i in json.loads(r.stdout)["nftables"] if "counter" in i][0]["packets"])
        except (ValueError, LookupError):
            return -1

    def _ours_sas(self) -> str:
        return self.lab.exec("sg-b", f"ip netns exec realm-{OUR_REALM} swanctl --list-sas --uri {OUR_URI}").stdout

    @staticmethod
    def _excerpt(text: str, pattern: str | None = None, lines: int = 8) -> str:
        rows = [ln for ln in text.splitlines() if ln.strip()]
        if pattern:
            hit = [ln for ln in rows if re.search(pattern, ln)]
            if hit:
                return "\n".join(hit[-lines:])
        keep = [ln for ln in rows if re.search(r"(?i)error|fail|no |invalid|expired|refus|received|proposal|can't|unable|conflict", ln)]
        return "\n".join((keep or rows)[-lines:])

    def initiate(self, node: str, conn: str, timeout_s: int = 10) -> tuple[bool, float | None, str]:
        """`swanctl --initiate` of CONN on NODE: (succeeded, elapsed ms inside the node, output)."""
        r = self.lab.exec(node, f"s=$(date +%s%N); swanctl --initiate --ike {conn} --child net "
                                f"--timeout {timeout_s} >/tmp/init.out 2>&1; rc=$?; e=$(date +%s%N); "
                                "cat /tmp/init.out; echo ELAPSED_NS $((e-s)) RC $rc", timeout=timeout_s + 20)
        m = re.search(r"ELAPSED_NS (\d+) RC (\d+)", r.stdout)
        if not m:
            return False, None, r.stdout + r.stderr
        return m.group(2) == "0", int(m.group(1)) / 1e6, r.stdout

    def terminate(self, node: str, conn: str) -> None:
        self.lab.exec(node, f"swanctl --terminate --ike {conn} --timeout 5 >/dev/null 2>&1; true")

    # ---- role mn: stock initiating MN -> our SG -------------------------------------------
    def check_algorithms(self, suite: str) -> list[str]:
        """Features the knowledge claims for this release but its charon lacks."""
        out = self.lab.exec(L.initiator_node(suite), "swanctl --list-algs").stdout
        return algs_disagree(SUITE_RELEASE[suite], out)

    def mn_cell(self, suite: str, proposal: str, key_type: str) -> Cell:
        release = SUITE_RELEASE[suite]
        cell = Cell(suite, "mn", column(proposal, key_type), "fail")
        if missing := missing_features(release, proposal, key_type):
            cell.status, cell.reason = "unsupported", f"{release} ({', '.join(missing)})"
            return cell
        node, conn = L.initiator_node(suite), cell_name(proposal, key_type)
        peer_at, ours_at = self._size(node, PEER_LOG), self._size("sg-b", OUR_LOG)
        try:
            self._mn_steps(cell, node, conn, proposal)
        finally:
            self.terminate(node, conn)
        if cell.status == "fail":
            cell.logs = {f"peer ({node})": self._excerpt(self._since(node, PEER_LOG, peer_at)),
                         "ours (sg-b realm A)": self._excerpt(self._since("sg-b", OUR_LOG, ours_at)),
                         **cell.logs}
        return cell

    def _step(self, cell: Cell, name: str, ok: bool, reason: str) -> bool:
        cell.steps[name] = bool(ok)
        if not ok and not cell.reason:
            cell.reason = reason
        return bool(ok)

    def _mn_steps(self, cell: Cell, node: str, conn: str, proposal: str) -> None:
        ike_alg, esp_alg = SHOWN[proposal]
        ok, ms, out = self.initiate(node, conn)
        cell.setup_ms = ms
        peer_sas = self.lab.exec(node, f"swanctl --list-sas --ike {conn}").stdout
        ours = self._ours_sas()
        if not self._step(cell, "IKE_SA up", ok and re.search(rf"{conn}: #\d+, ESTABLISHED", peer_sas)
                          and "ESTABLISHED" in ours and ike_alg in peer_sas and ike_alg in ours,
                          f"IKE_SA not up with {ike_alg}: {self._excerpt(out, None, 2)}"):
            cell.logs["list-sas"] = f"peer:\n{peer_sas}\nours:\n{ours}"
            return
        if not self._step(cell, "CHILD_SA up", re.search(r"INSTALLED, TUNNEL", peer_sas) and esp_alg in peer_sas
                          and re.search(r"INSTALLED, TUNNEL", ours) and esp_alg in ours,
                          f"CHILD_SA not installed with {esp_alg}"):
            return
        row = f"r_{_hex(L.SG_A)}_{_hex(L.initiator_addr(cell.suite))}"
        drop = f"drop_{_hex(L.SG_A)}"
        row0, drop0 = self._counter(row), self._counter(drop)
        ping = self.lab.exec(node, f"ping -c3 -i0.2 -W1 {self.target}").stdout
        got = int(m.group(1)) if (m := re.search(r"(\d+) received", ping)) else 0
        ours = self._ours_sas()
        pk = [int(x) for x in re.findall(r"(\d+) packets", ours)]
        if not self._step(cell, "traffic both ways", got == 3 and len(pk) >= 2 and min(pk[:2]) >= 3,
                          f"ping {self.target} through the SA: {got}/3 answered; our SA packets in/out {pk[:2]}"):
            return
        self.lab.exec(node, f"ping -c2 -i0.2 -W1 {self.not_target}")
        row1, drop1 = self._counter(row), self._counter(drop)
        if not self._step(cell, "realm filter", row1 - row0 >= 3 and drop1 - drop0 >= 2,
                          f"realm-indexed filter: row for {L.initiator_addr(cell.suite)}->{self.target} "
                          f"counted {row1 - row0} (want >= 3), drops to {self.not_target} {drop1 - drop0} (want >= 2)"):
            return
        if self.rekey:
            lost, detail = self.rekey_during_stream(node, conn, dst=self.target)
            if not self._step(cell, "rekey", lost is not None and lost <= LOSS_WINDOW,
                              f"rekey/reauth during a stream: {detail}"):
                return
            cell.steps["rekey lost"] = lost  # type: ignore[assignment]
        cell.status = "pass"

    def rekey_during_stream(self, node: str, conn: str, src: str | None = None,
                            dst: str = L.TARGET, child: str = "net", ping_opts: str = "",
                            count_at: str | None = None) -> tuple[int | None, str]:
        """50 pps from SRC (default: NODE) to DST while stock NODE rekeys the CHILD_SA,
        rekeys the IKE_SA and reauthenticates it (make-before-break): (packets lost, detail).
        Lost = requests without answer, or with COUNT_AT (the echo's receiver) requests that
        did not arrive there (ICMP InEchos), for paths whose answers do not come back."""
        echos0 = self._in_echos(count_at) if count_at else 0
        src = src or node
        stream = f"ping -q {ping_opts} -c {STREAM_COUNT} -i {STREAM_INTERVAL} -W 1 {dst}"
        if src != node:
            self.lab.exec(src, f"{stream} > /tmp/stream.out 2>&1 &")
        before = self.lab.exec(node, f"swanctl --list-sas --ike {conn}").stdout
        spi0 = re.findall(r"in\s+([0-9a-f]{8})", before)
        ike0 = re.findall(rf"{conn}: #(\d+)", before)
        own = f"{stream} > /tmp/stream.out 2>&1 & p=$!; " if src == node else ""
        # Reauthentication first: charon refuses it while a rekeyed CHILD_SA still waits out
        # delete_rekeyed_delay (5 s) in state DELETED.
        script = (f"{own}sleep {STEP_S}; swanctl --rekey --ike {conn} --reauth >/dev/null; sleep {STEP_S}; "
                  f"swanctl --rekey --ike {conn} >/dev/null; sleep {STEP_S}; "
                  f"swanctl --rekey --child {child} >/dev/null; ")
        if src == node:
            out = self.lab.exec(node, script + "wait $p; cat /tmp/stream.out", timeout=60).stdout
        else:
            self.lab.exec(node, script, timeout=60)
            time.sleep(STREAM_COUNT * STREAM_INTERVAL)
            out = self.lab.exec(src, "while pgrep -x ping >/dev/null; do sleep 0.2; done; cat /tmp/stream.out",
                                timeout=30).stdout
        after = self.lab.exec(node, f"swanctl --list-sas --ike {conn}").stdout
        spi1 = re.findall(r"in\s+([0-9a-f]{8})", after)
        ike1 = re.findall(rf"{conn}: #(\d+)", after)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if not m:
            return None, f"no stream result: {out.strip()[-200:]}"
        # reauth and IKE rekey each make a new IKE_SA (unique ids grow by 2); the CHILD_SAs are new
        if not (set(spi1) - set(spi0)) or not ike1 or not ike0 or \
                max(map(int, ike1)) < max(map(int, ike0)) + 2:
            return None, f"not every rekey happened (CHILD SPIs {spi0} -> {spi1}, IKE_SA #{ike0} -> #{ike1})"
        arrived = self._in_echos(count_at) - echos0 if count_at else int(m.group(2))
        lost = int(m.group(1)) - arrived
        return lost, f"{lost} of {m.group(1)} packets lost (window {LOSS_WINDOW})"

    def _in_echos(self, node: str) -> int:
        out = self.lab.exec(node, "cat /proc/net/snmp").stdout
        head, vals = [ln.split() for ln in out.splitlines() if ln.startswith("Icmp:")][:2]
        return int(vals[head.index("InEchos")])

    def negative_cell(self, suite: str, kind: str) -> Cell:
        """A connection that our SG must refuse; passes when it is refused and both logs say why."""
        node, conn = L.initiator_node(suite), f"n-{kind}"
        cell = Cell(suite, "mn", kind, "fail")
        peer_at, ours_at = self._size(node, PEER_LOG), self._size("sg-b", OUR_LOG)
        ok, _, out = self.initiate(node, conn, timeout_s=8)
        self.terminate(node, conn)
        time.sleep(0.3)
        peer_log, our_log = self._since(node, PEER_LOG, peer_at), self._since("sg-b", OUR_LOG, ours_at)
        want_peer, want_ours = REFUSAL[kind]
        cell.logs = {f"peer ({node})": self._excerpt(peer_log, want_peer, 3),
                     "ours (sg-b realm A)": self._excerpt(our_log, want_ours, 3)}
        seen_peer, seen_ours = bool(re.search(want_peer, peer_log)), bool(re.search(want_ours, our_log))
        cell.steps = {"refused": not ok, "peer log says why": seen_peer, "our log says why": seen_ours}
        if ok:
            cell.reason = f"{NEGATIVES[kind]} was ACCEPTED"
        elif not (seen_peer and seen_ours):
            cell.reason = (f"refused, but the logs lack /{want_peer}/ (peer: {seen_peer}) "
                           f"or /{want_ours}/ (ours: {seen_ours})")
        else:
            cell.status, cell.reason = "pass", "refused: " + self._excerpt(our_log, want_ours, 1).split("] ")[-1][:80]
        return cell

    def run_mn_row(self, suite: str, negatives: bool = True) -> list[Cell]:
        cells = [self.mn_cell(suite, p, k) for p in self.proposals for k in self.key_types]
        cells += [Cell(suite, "mn", column(p, "psk"), "n/a", "claims 7-11 authenticate with X.509")
                  for p in self.proposals]
        if negatives:
            cells += [self.negative_cell(suite, kind) for kind in NEGATIVES]
        for c in cells:
            self.say(f"  {suite} {c.role} {c.column}: {c.status} {c.reason}")
        self.cells += cells
        return cells

    # ---- role sg: our MN agent -> stock responder SG --------------------------------------
    def _responder_conf(self, suite: str, proposal: str | None, key_type: str,
                        ha_proposal: str | None = None) -> None:
        self.lab.put_file(L.responder_node(suite), f"{SWANCTL_DIR}/swanctl.conf", responder_swanctl(
            L.responder_public(suite), f"{L.responder_realm(suite)}/32", L.SG_B, proposal, key_type,
            baseline_from=L.SG_A, mn_addrs=L.MN_ADDR, baseline_addrs=L.INITIATORS,
            ha=(ha_proposal, L.HOME_ADDR, self.mn_ha_key) if ha_proposal else None))

    def _mn_tunnel(self, suite: str) -> dict:
        r = self.lab.exec("m", "cat /run/testbed/mn.json")
        try:
            return json.loads(r.stdout).get("tunnels", {}).get(L.responder_public(suite), {})
        except ValueError:
            return {}

    def sg_cell(self, suite: str, proposal: str, key_type: str, wait_s: float = 20) -> Cell:
        """Our MN agent m builds its tunnel to stock rs-<suite>, which accepts only this
        cell's proposal and authenticates with a certificate of this key type."""
        release = SUITE_RELEASE[suite]
        cell = Cell(suite, "sg", column(proposal, key_type), "fail")
        if missing := missing_features(release, proposal, key_type):
            cell.status, cell.reason = "unsupported", f"{release} ({', '.join(missing)})"
            return cell
        node = L.responder_node(suite)
        peer_at = self._size(node, PEER_LOG)
        ours_log = f"/var/lib/testbed/mn/{L.responder_mvpn(suite)}/charon.log"
        ours_at = self._size("m", ours_log)
        self._responder_conf(suite, proposal, key_type)
        self.lab.exec(node, "swanctl --load-all --noprompt >/dev/null; "
                            "swanctl --terminate --ike from-mn --timeout 5 >/dev/null 2>&1; true")
        ike_alg, esp_alg = SHOWN[proposal]
        t0 = time.time()
        deadline, sas, tunnel = time.monotonic() + wait_s, "", {}
        while time.monotonic() < deadline:
            # the stock side shows the new SA, and our agent (status written every second)
            # reports an initiation that completed after this cell began
            sas = self.lab.exec(node, "swanctl --list-sas --ike from-mn").stdout
            tunnel = self._mn_tunnel(suite)
            if re.search(r"INSTALLED, TUNNEL", sas) and ike_alg in sas and (tunnel.get("established_at") or 0) > t0:
                break
            time.sleep(0.3)
        cell.setup_ms = tunnel.get("setup_ms")
        try:
            self._sg_steps(cell, node, sas, tunnel, ike_alg, esp_alg)
        finally:
            if cell.status == "fail":
                cell.logs = {f"peer ({node})": self._excerpt(self._since(node, PEER_LOG, peer_at)),
                             "ours (m)": self._excerpt(self._since("m", ours_log, ours_at))}
        return cell

    def _sg_steps(self, cell: Cell, node: str, sas: str, tunnel: dict, ike_alg: str, esp_alg: str) -> None:
        ours_up = any(sa.get("state") == "ESTABLISHED" for sa in tunnel.get("sas", [])) and not tunnel.get("error")
        if not self._step(cell, "IKE_SA up", re.search(r"from-mn: #\d+, ESTABLISHED", sas) and ike_alg in sas
                          and ours_up, f"IKE_SA not up with {ike_alg} (our MN agent: {tunnel.get('error')})"):
            return
        if not self._step(cell, "CHILD_SA up", re.search(r"INSTALLED, TUNNEL", sas) and esp_alg in sas,
                          f"CHILD_SA not installed with {esp_alg}"):
            return
        # Our MN agent's tunnel is the outbound half of claim 12: the answers it decrypts end in
        # its per-target namespace (in the patent's design answers come over the target's own
        # tunnel), so "both ways" is read from both ends' CHILD_SA counters, not from ping.
        dst, mvpn = L.responder_realm(cell.suite), L.responder_mvpn(cell.suite)
        self.lab.exec("m", f"ping -c3 -i0.2 -W1 {dst}")
        sas = self.lab.exec(node, "swanctl --list-sas --ike from-mn").stdout
        pk = [int(x) for x in re.findall(r"(\d+) packets", sas)]
        ours = self.lab.exec("m", f"ip netns exec via-{mvpn} swanctl --list-sas "
                                  f"--uri unix:///var/lib/testbed/mn/{mvpn}/charon.vici").stdout
        ok_pk = [int(x) for x in re.findall(r"(\d+) packets", ours)]
        if not self._step(cell, "traffic both ways", len(pk) >= 2 and min(pk[:2]) >= 3
                          and len(ok_pk) >= 2 and min(ok_pk[:2]) >= 3,
                          f"3 pings {L.MN_ADDR} -> {dst}: stock SA packets in/out {pk[:2]}, ours {ok_pk[:2]}"):
            return
        cell.steps["realm filter"] = True  # n/a here: the stock SG has no workgroup filter
        if self.rekey:
            lost, detail = self.rekey_during_stream(node, "from-mn", src="m", dst=dst, child="mn", count_at=node)
            if not self._step(cell, "rekey", lost is not None and lost <= LOSS_WINDOW,
                              f"rekey/reauth by the stock SG during a stream: {detail}"):
                return
            cell.steps["rekey lost"] = lost  # type: ignore[assignment]
        cell.status = "pass"

    def run_sg_row(self, suite: str) -> list[Cell]:
        cells = [self.sg_cell(suite, p, k) for p in self.proposals for k in self.key_types]
        cells += [Cell(suite, "sg", column(p, "psk"), "n/a", "claim 12 authenticates with X.509")
                  for p in self.proposals]
        for c in cells:
            self.say(f"  {suite} {c.role} {c.column}: {c.status} {c.reason}")
        self.cells += cells
        return cells

    # ---- role ha: our MN's claim-24 IPsec -> stock HA ------------------------------------
    def _our_ha_initiator(self, suite: str, proposal: str) -> dict:
        """In v: render our MN's claim-24 swanctl.conf (testbed.mip.ipsec.mn_swanctl) with
        PROPOSAL offered first, load it into v's charon (started once, testbed.common.strongswan's
        Charon) and initiate: {"ok", "ms", "error"}."""
        from .matrix import PROPOSALS as P
        ikes = ",".join([P[proposal].ike] + [p.ike for k, p in P.items() if k != proposal])
        esps = ",".join([P[proposal].esp] + [p.esp for k, p in P.items() if k != proposal])
        code = f"""
import json, time
from pathlib import Path
from testbed.mip.ipsec import CHILD_NAME, IKE_NAME, _write_dir, mn_swanctl
from testbed.common.strongswan import Charon, StrongswanError
ch = Charon(name="mn", workdir=Path("/var/lib/testbed/interop-ha"))
try:
    with ch.session() as s:
        s.version()
except OSError:
    ch.start()
try:
    ch.terminate(IKE_NAME, 3000)
except StrongswanError:
    pass
conf = mn_swanctl("{L.HOME_ADDR}", "{L.responder_public(suite)}", "{L.responder_realm(suite)}/32",
                  bytes.fromhex("{self.mn_ha_key.hex()}"), proposals="{ikes}", esp_proposals="{esps}")
ch.load_swanctl(_write_dir(ch.workdir, conf))
t = time.monotonic()
try:
    ch.initiate(CHILD_NAME, IKE_NAME, 10000)
    print(json.dumps({{"ok": True, "ms": (time.monotonic() - t) * 1000, "error": ""}}))
except StrongswanError as e:
    print(json.dumps({{"ok": False, "ms": None, "error": str(e)[-300:]}}))
"""
        r = self.lab.exec("v", ["python3", "-c", code], timeout=40)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"ok": False, "ms": None, "error": (r.stdout + r.stderr)[-300:]}

    def ha_cell(self, suite: str, proposal: str) -> Cell:
        """Claim 24: stock rs-<suite> as the HA's IPsec responder (PSK = MN-HA key, only this
        proposal), our MN v initiating from its home address on a co-located care-of address."""
        release = SUITE_RELEASE[suite]
        cell = Cell(suite, "ha", column(proposal, "psk"), "fail")
        if missing := [f for f in missing_features(release, proposal, "p256") if f != "ecdsa"]:
            cell.status, cell.reason = "unsupported", f"{release} ({', '.join(missing)})"
            return cell
        node = L.responder_node(suite)
        ours_log = "/var/lib/testbed/interop-ha/charon.log"
        peer_at, ours_at = self._size(node, PEER_LOG), self._size("v", ours_log)
        self._responder_conf(suite, None, "p256", ha_proposal=proposal)
        self.lab.exec(node, "swanctl --load-all --noprompt >/dev/null")
        res = self._our_ha_initiator(suite, proposal)
        cell.setup_ms = res.get("ms")
        ike_alg, esp_alg = SHOWN[proposal]
        sas = self.lab.exec(node, "swanctl --list-sas --ike ha").stdout
        try:
            if not self._step(cell, "IKE_SA up", res["ok"] and "ESTABLISHED" in sas and ike_alg in sas,
                              f"IKE_SA not up with {ike_alg}: {res.get('error') or 'stock side shows none'}"):
                return cell
            if not self._step(cell, "CHILD_SA up", re.search(r"INSTALLED, TUNNEL", sas) and esp_alg in sas,
                              f"CHILD_SA not installed with {esp_alg}"):
                return cell
            dst = L.responder_realm(suite)
            ping = self.lab.exec("v", f"ping -c3 -i0.2 -W1 -I {L.HOME_ADDR} {dst}").stdout
            got = int(m.group(1)) if (m := re.search(r"(\d+) received", ping)) else 0
            sas = self.lab.exec(node, "swanctl --list-sas --ike ha").stdout
            pk = [int(x) for x in re.findall(r"(\d+) packets", sas)]
            if not self._step(cell, "traffic both ways", got == 3 and len(pk) >= 2 and min(pk[:2]) >= 3,
                              f"ping {dst} from home address {L.HOME_ADDR}: {got}/3; stock SA in/out {pk[:2]}"):
                return cell
            cell.steps["realm filter"] = True  # n/a: claim 24's tunnel has no workgroup filter
            if self.rekey:
                lost, detail = self.rekey_during_stream(node, "ha", src="v", dst=dst, child="ha",
                                                        ping_opts=f"-I {L.HOME_ADDR}")
                if not self._step(cell, "rekey", lost is not None and lost <= LOSS_WINDOW,
                                  f"rekey/reauth by the stock HA during a stream: {detail}"):
                    return cell
                cell.steps["rekey lost"] = lost  # type: ignore[assignment]
            cell.status = "pass"
            return cell
        finally:
            if cell.status == "fail":
                cell.logs = {f"peer ({node})": self._excerpt(self._since(node, PEER_LOG, peer_at)),
                             "ours (v)": self._excerpt(self._since("v", ours_log, ours_at))}
            self.lab.exec(node, "swanctl --terminate --ike ha --timeout 5 >/dev/null 2>&1; true")

    def run_ha_row(self, suite: str) -> list[Cell]:
        cells = [self.ha_cell(suite, p) for p in self.proposals]
        cells += [Cell(suite, "ha", column(p, k), "n/a", "claim 24 authenticates with the MN-HA key")
                  for p in self.proposals for k in self.key_types]
        for c in cells[:len(self.proposals)]:
            self.say(f"  {suite} {c.role} {c.column}: {c.status} {c.reason}")
        self.cells += cells
        return cells

    def run_rows(self, suite: str) -> list[Cell]:
        """Every role's row for one suite."""
        return self.run_mn_row(suite, self.negatives) + self.run_sg_row(suite) + self.run_ha_row(suite)


def write_results(cells: list[Cell], folder, extra: dict | None = None) -> dict:
    """matrix.json, matrix.md and matrix.html under FOLDER; returns the JSON document."""
    from pathlib import Path

    from .matrix import render_html, render_markdown
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"cells": [c.to_json() for c in cells], **(extra or {})}
    (folder / "matrix.json").write_text(json.dumps(doc, indent=1))
    (folder / "matrix.md").write_text(render_markdown(cells))
    (folder / "matrix.html").write_text(render_html(cells))
    return doc


def suites_in(lab: Lab) -> list[str]:
    """The peer suites whose nodes this lab has (labspec names)."""
    from orchestration.images import PEER_SUITES
    return [s for s in PEER_SUITES if L.initiator_node(s) in lab.topology.nodes]
