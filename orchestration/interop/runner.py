"""Runs the interop matrix in a lab built from labspec.topology (issue 12).

Per peer suite s and role:
- ``mn`` (claims 7-11): stock im-<s> initiates towards our SG-B through SG-A's IP-IP
  tunnel, once per (proposal, key type) cell: IKE_SA up, CHILD_SA up with the cell's
  algorithms (read on both sides), ping both ways through the SA (b's answers return
  through the same CHILD_SA), the certificate's key type is the one that signed and was
  verified (both charon logs), the realm-indexed filter admits 10.0.0.7 and drops 10.0.0.8
  (its counters move), and a running 50 pps stream survives IKE_SA reauthentication, IKE_SA
  rekey and CHILD_SA rekey with at most LOSS_WINDOW packets lost, each step confirmed by the
  SA identities it must change (evidence.judge). Then the negative cells, each refused, with
  the peer's log showing the notify and our SG's log naming exactly this cell's reason.
- ``sg`` (claim 12): our MN agent m -> stock responder rs-<s>; the same steps without the
  filter (the stock SG has none: "n/a").
- ``ha`` (claim 24): our MN v on a co-located care-of address -> stock rs-<s> as the home
  agent's IPsec, pre-shared MN-HA key.
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

from . import evidence as E
from . import labspec as L
from .matrix import (KEY_TYPES, NEGATIVES, PROPOSALS, PSK, SUITE_RELEASE, Cell, algs_disagree, column,
                     counts, missing_features)
from .peer import PEER_LOG, SWANCTL_DIR, cell_name, initiator_swanctl, responder_swanctl
from .pki import MatrixCA

Say = Callable[[str], None]

OUR_REALM = "A"                                      # SG-B's realm for SG-A's initiators
OUR_LOG = f"/var/lib/testbed/sg/{OUR_REALM}/charon.log"
OUR_URI = f"unix:///var/lib/testbed/sg/{OUR_REALM}/charon.vici"
AGENT_LOG = "/var/log/testbed/start-0.log"           # our agents' own log (the node's start command)
HA_LOG = "/var/lib/testbed/interop-ha/charon.log"    # v's charon for claim 24
# Packets of a 50 pps stream that may be lost across one CHILD rekey + IKE rekey + reauth.
# Measured 0 in 58 and 1 in 5 of 63 cells with make_before_break (see description.md);
# 2 packets = 40 ms.
LOSS_WINDOW = 2
# 5.5 s stream: 1 s, then a rekey step a second, each followed by a list-sas snapshot.
STREAM_COUNT, STREAM_INTERVAL, STEP_S = 275, 0.02, 1.0
REKEY_STEPS = {"reauth": "IKE_SA reauth", "ike-rekey": "IKE_SA rekey", "child-rekey": "CHILD_SA rekey"}

# What list-sas shows for each proposal (IKE line, ESP line).
SHOWN = {
    "aes128gcm16-prfsha256-ecp256": ("AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256", "AES_GCM_16-128"),
    "aes256-sha256-modp3072": ("AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_3072",
                               "AES_CBC-256/HMAC_SHA2_256_128"),
    "chacha20poly1305-prfsha256-curve25519": ("CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519",
                                              "ESP:CHACHA20_POLY1305"),
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
            # negative cells' certificates carry their cell in the CN, so logs tell them apart
            creds["wrong-san"] = ca.issue(f"{node}-wrong-san.interop", [L.OTHER_SG], "p256")   # also n-wrong-id
            creds["expired"] = ca.issue(f"{node}-expired.interop", [L.SG_A], "p256", expired=True)
            creds["other-ca"] = other.issue(f"{node}-other-ca.interop", [L.SG_A], "p256")
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

    def _offsets(self, where: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str, int]]:
        """{label: (node, path)} -> {label: (node, path, current size)}: where a cell's logs begin."""
        return {k: (n, p, self._size(n, p)) for k, (n, p) in where.items()}

    def _excerpts(self, at: dict[str, tuple[str, str, int]]) -> dict[str, str]:
        """Each log since its offset, cut to the lines that explain a failure (evidence.excerpt)."""
        return {k: E.excerpt(self._since(n, p, o)) for k, (n, p, o) in at.items()}

    def _key_step(self, cell: Cell, key_type: str, identity: str, signer: tuple[str, str],
                  verifier: tuple[str, str], last_only: bool = False) -> bool:
        """The cell's credential really was used: SIGNER = (label, log) authenticated itself
        as IDENTITY, and VERIFIER = (label, log) verified IDENTITY, every time (LAST_ONLY:
        the last time, i.e. the SA under test) with KEY_TYPE's signature scheme
        (evidence.KEY_SCHEMES), not another key's."""
        signed = E.auth_schemes(signer[1], identity, myself=True)
        verified = E.auth_schemes(verifier[1], identity, myself=False)
        if last_only:
            signed, verified = signed[-1:], verified[-1:]
        ok = E.key_type_confirmed(signed, key_type) and E.key_type_confirmed(verified, key_type)
        return self._step(cell, "key type", ok,
                          f"{key_type} not what authenticated {identity}: {signer[0]} signed with "
                          f"{signed or 'nothing'}, {verifier[0]} verified {verified or 'nothing'}")

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
        """``swanctl --terminate`` of IKE_SA CONN on NODE (5 s swanctl timeout); never fails on
        the command's result (nothing to terminate is fine). LabError for a node the lab has not.
        """
        self.lab.exec(node, f"swanctl --terminate --ike {conn} --timeout 5 >/dev/null 2>&1; true")

    # ---- role mn: stock initiating MN -> our SG -------------------------------------------
    def check_algorithms(self, suite: str) -> list[str]:
        """Features the knowledge claims for this release but its charon lacks."""
        out = self.lab.exec(L.initiator_node(suite), "swanctl --list-algs").stdout
        return algs_disagree(SUITE_RELEASE[suite], out)

    def mn_cell(self, suite: str, proposal: str, key_type: str) -> Cell:
        """Cell (SUITE, "mn", PROPOSAL / KEY_TYPE), claims 7-11: stock im-<suite> initiates
        connection ``cell_name(PROPOSAL, KEY_TYPE)`` through SG-A towards our SG-B.

        Status "unsupported" (no run) when the release lacks a feature of the cell
        (matrix.missing_features); else "pass" when every step of the module docstring passed
        (IKE_SA and CHILD_SA up with the proposal's algorithms on both sides, key type, traffic
        both ways, realm filter counters, and with ``rekey`` the three rekey steps within
        LOSS_WINDOW packets), otherwise "fail" with the first failing step's reason and the
        logs since the cell began (peer, our realm charon, our agent). The connection is
        terminated afterwards in every case. KeyError for a suite the matrix does not know
        (SUITE_RELEASE); LabError from Lab.exec for a missing node.
        """
        release = SUITE_RELEASE[suite]
        cell = Cell(suite, "mn", column(proposal, key_type), "fail")
        if missing := missing_features(release, proposal, key_type):
            cell.status, cell.reason = "unsupported", f"{release} ({', '.join(missing)})"
            return cell
        node, conn = L.initiator_node(suite), cell_name(proposal, key_type)
        at = self._offsets({f"peer ({node})": (node, PEER_LOG), "ours (sg-b realm A)": ("sg-b", OUR_LOG),
                            "ours (sg-b agent)": ("sg-b", AGENT_LOG)})
        try:
            self._mn_steps(cell, node, conn, proposal, key_type, at)
        finally:
            self.terminate(node, conn)
        if cell.status == "fail":
            cell.logs = {**self._excerpts(at), **cell.logs}
        return cell

    def _step(self, cell: Cell, name: str, ok: bool, reason: str) -> bool:
        cell.steps[name] = bool(ok)
        if not ok and not cell.reason:
            cell.reason = reason
        return bool(ok)

    def _mn_steps(self, cell: Cell, node: str, conn: str, proposal: str, key_type: str,
                  at: dict[str, tuple[str, str, int]]) -> None:
        ike_alg, esp_alg = SHOWN[proposal]
        ok, ms, out = self.initiate(node, conn)
        cell.setup_ms = ms
        peer_sas = self.lab.exec(node, f"swanctl --list-sas --ike {conn}").stdout
        ours = self._ours_sas()
        if not self._step(cell, "IKE_SA up", ok and re.search(rf"{conn}: #\d+, ESTABLISHED", peer_sas)
                          and "ESTABLISHED" in ours and ike_alg in peer_sas and ike_alg in ours,
                          f"IKE_SA not up with {ike_alg}: {E.excerpt(out, None, 2)}"):
            cell.logs["list-sas"] = f"peer:\n{peer_sas}\nours:\n{ours}"
            return
        if not self._step(cell, "CHILD_SA up", re.search(r"INSTALLED, TUNNEL", peer_sas) and esp_alg in peer_sas
                          and re.search(r"INSTALLED, TUNNEL", ours) and esp_alg in ours,
                          f"CHILD_SA not installed with {esp_alg}"):
            return
        peer_log, our_log = (self._since(*at[k]) for k in (f"peer ({node})", "ours (sg-b realm A)"))
        if not self._key_step(cell, key_type, L.SG_A, (node, peer_log), ("our sg-b", our_log)):
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
        if self.rekey and not self._rekey_steps(cell, self.rekey_during_stream(node, conn, dst=self.target)):
            return
        cell.status = "pass"

    def _rekey_steps(self, cell: Cell, result: tuple[int | None, dict[str, str], str]) -> bool:
        """One step per rekey kind (it happened as such) and one for the loss window."""
        lost, verdicts, detail = result
        for step, why in verdicts.items():
            if not self._step(cell, REKEY_STEPS[step], not why, why):
                return False
        if lost is not None:
            cell.steps["rekey lost"] = lost
        return self._step(cell, "rekey loss", lost is not None and lost <= LOSS_WINDOW,
                          f"rekey/reauth during a stream: {detail}")

    def rekey_during_stream(self, node: str, conn: str, src: str | None = None,
                            dst: str = L.TARGET, ping_opts: str = "", count_at: str | None = None,
                            do: tuple[str, ...] = tuple(REKEY_STEPS)) -> tuple[int | None, dict[str, str], str]:
        """50 pps from SRC (default: NODE) to DST while stock NODE reauthenticates its IKE_SA
        of CONN (make-before-break), rekeys the IKE_SA and rekeys the CHILD_SA, a step a
        second, each addressed by unique id from a list-sas snapshot and judged by the next
        snapshot (evidence.judge: reauth = new IKE_SA and new CHILD_SAs, IKE rekey = new
        IKE_SA with the same CHILD_SAs, CHILD rekey = same IKE_SA, new CHILD SPIs).
        DO: the steps to run (a step left out must then be judged as not having happened).
        Returns (packets lost or None, {step: "" or why it did not happen as such}, detail).
        Lost = requests without answer, or with COUNT_AT (the echo's receiver) requests that
        did not arrive there (ICMP InEchos), for paths whose answers do not come back."""
        echos0 = self._in_echos(count_at) if count_at else 0
        src = src or node
        self.lab.exec(src, f"rm -f /tmp/stream.out; ping -q {ping_opts} -c {STREAM_COUNT} -i {STREAM_INTERVAL} "
                           f"-W 1 {dst} > /tmp/stream.out 2>&1 &")

        def snapshot() -> E.IkeSA | None:
            return E.current(self.lab.exec(node, f"swanctl --list-sas --ike {conn}").stdout, conn)

        before, verdicts, said = snapshot(), {}, []
        time.sleep(STEP_S)
        for step in REKEY_STEPS:
            installed = [c for c in (before.children if before else ()) if c.state == "INSTALLED"]
            args = {"reauth": f"--ike-id {before.uid} --reauth" if before else "",
                    "ike-rekey": f"--ike-id {before.uid}" if before else "",
                    "child-rekey": f"--child-id {installed[0].uid}" if installed else ""}[step]
            if step in do and args:
                said.append(self.lab.exec(node, f"swanctl --rekey {args} 2>&1").stdout.strip())
            time.sleep(STEP_S)
            after = snapshot()
            verdicts[step] = E.judge(step, before, after)
            before = after
        out = self.lab.exec(src, "while pgrep -x ping >/dev/null; do sleep 0.2; done; cat /tmp/stream.out",
                            timeout=30).stdout
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if not m:
            return None, verdicts, f"no stream result: {out.strip()[-200:]}"
        arrived = self._in_echos(count_at) - echos0 if count_at else int(m.group(2))
        lost = int(m.group(1)) - arrived
        detail = f"{lost} of {m.group(1)} packets lost (window {LOSS_WINDOW})"
        if any(verdicts.values()):
            detail += "; swanctl --rekey said: " + " | ".join(x[-120:] for x in said)
        return lost, verdicts, detail

    def _in_echos(self, node: str) -> int:
        out = self.lab.exec(node, "cat /proc/net/snmp").stdout
        head, vals = [ln.split() for ln in out.splitlines() if ln.startswith("Icmp:")][:2]
        return int(vals[head.index("InEchos")])

    def negative_cell(self, suite: str, kind: str) -> Cell:
        """A connection that our SG must refuse; passes when it is refused, the peer's log
        shows the notify it got back, and our SG's log gives exactly this cell's reason
        (evidence.refusal_reason: the most specific line found must name KIND, so the reason
        of another negative cell fails it)."""
        node, conn = L.initiator_node(suite), f"n-{kind}"
        cell = Cell(suite, "mn", kind, "fail")
        # charon caches certificates it has verified a signature of (cert_cache) and tries
        # them again for the same identity: without the flush, the expired certificate of
        # the cell before shows up as "subject certificate invalid" in the other-ca cell.
        self.lab.exec("sg-b", f"ip netns exec realm-{OUR_REALM} swanctl --flush-certs --uri {OUR_URI}")
        peer_at, ours_at = self._size(node, PEER_LOG), self._size("sg-b", OUR_LOG)
        ok, _, out = self.initiate(node, conn, timeout_s=8)
        self.terminate(node, conn)
        time.sleep(0.3)
        peer_log, our_log = self._since(node, PEER_LOG, peer_at), self._since("sg-b", OUR_LOG, ours_at)
        want_peer = E.peer_refusal(kind)
        said, line = E.refusal_reason(our_log)
        # the excerpt keeps the lines the reason is judged by: the refusal and, for
        # wrong-san, the context that tells it from a peer-config miss (REFUSAL_CONTEXT)
        context = E.REFUSAL_CONTEXT.get(kind, ())
        pattern = "|".join([dict(E.OUR_REFUSALS)[kind], *context])
        cell.logs = {f"peer ({node})": E.excerpt(peer_log, want_peer, 3),
                     "ours (sg-b realm A)": E.excerpt(our_log, pattern, 3 + len(context))}
        seen_peer = bool(re.search(want_peer, peer_log))
        cell.steps = {"refused": not ok, "peer log says why": seen_peer, "our log names this cell": said == kind}
        if ok:
            cell.reason = f"{NEGATIVES[kind]} was ACCEPTED"
        elif not seen_peer or said != kind:
            cell.reason = (f"refused, but not as {kind}: peer log /{want_peer}/ {seen_peer}; our log "
                           f"names {said or 'no reason'}" + (f" ({line.split('] ')[-1][:80]})" if line else ""))
        else:
            cell.status, cell.reason = "pass", "refused: " + line.split("] ")[-1][:80]
        return cell

    def run_mn_row(self, suite: str, negatives: bool = True) -> list[Cell]:
        """Row "mn" of SUITE (claims 7-11): ``mn_cell`` for every proposal x key type of this run,
        an "n/a" cell per proposal for psk (these claims authenticate with X.509), and with
        ``negatives`` (default True) one ``negative_cell`` per kind of matrix.NEGATIVES. Each
        cell is reported through ``say`` and appended to ``self.cells``; returns the row's
        cells in that order.
        """
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
        ours_log = f"/var/lib/testbed/mn/{L.responder_mvpn(suite)}/charon.log"
        at = self._offsets({f"peer ({node})": (node, PEER_LOG), "ours (m charon)": ("m", ours_log),
                            "ours (m agent)": ("m", AGENT_LOG)})
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
            self._sg_steps(cell, node, sas, tunnel, ike_alg, esp_alg, key_type, at)
        finally:
            if cell.status == "fail":
                cell.logs = {**self._excerpts(at),
                             "ours (m status)": json.dumps({k: tunnel.get(k) for k in ("error", "sas", "established_at")})}
        return cell

    def _sg_steps(self, cell: Cell, node: str, sas: str, tunnel: dict, ike_alg: str, esp_alg: str,
                  key_type: str, key_at: dict[str, tuple[str, str, int]]) -> None:
        ours_up = any(sa.get("state") == "ESTABLISHED" for sa in tunnel.get("sas", [])) and not tunnel.get("error")
        if not self._step(cell, "IKE_SA up", re.search(r"from-mn: #\d+, ESTABLISHED", sas) and ike_alg in sas
                          and ours_up, f"IKE_SA not up with {ike_alg} (our MN agent: {tunnel.get('error')})"):
            return
        if not self._step(cell, "CHILD_SA up", re.search(r"INSTALLED, TUNNEL", sas) and esp_alg in sas,
                          f"CHILD_SA not installed with {esp_alg}"):
            return
        # Our agent may re-initiate while the stock config is switched, so the window can hold
        # an authentication under the previous cell's key: judge the last one (the SA under
        # test). Offsets taken after the switch raced: the full run saw rs sign after the
        # first offset and m verify before the second ("our m verified nothing").
        if not self._key_step(cell, key_type, L.responder_public(cell.suite),
                              (node, self._since(*key_at[f"peer ({node})"])),
                              ("our m", self._since(*key_at["ours (m charon)"])), last_only=True):
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
        cell.steps["realm filter"] = "n/a"  # the stock SG has no workgroup filter
        if self.rekey and not self._rekey_steps(
                cell, self.rekey_during_stream(node, "from-mn", src="m", dst=dst, count_at=node)):
            return
        cell.status = "pass"

    def run_sg_row(self, suite: str) -> list[Cell]:
        """Row "sg" of SUITE (claim 12): ``sg_cell`` for every proposal x key type (our MN agent
        m to stock rs-<suite>), then an "n/a" cell per proposal for psk (claim 12 uses X.509).
        Each cell is reported through ``say`` and appended to ``self.cells``; returns the row.
        """
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
        at = self._offsets({f"peer ({node})": (node, PEER_LOG), "ours (v charon)": ("v", HA_LOG)})
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
            if not self._key_step(cell, PSK, L.HOME_ADDR, ("our v", self._since(*at["ours (v charon)"])),
                                  (node, self._since(*at[f"peer ({node})"]))):
                return cell
            dst = L.responder_realm(suite)
            ping = self.lab.exec("v", f"ping -c3 -i0.2 -W1 -I {L.HOME_ADDR} {dst}").stdout
            got = int(m.group(1)) if (m := re.search(r"(\d+) received", ping)) else 0
            sas = self.lab.exec(node, "swanctl --list-sas --ike ha").stdout
            pk = [int(x) for x in re.findall(r"(\d+) packets", sas)]
            if not self._step(cell, "traffic both ways", got == 3 and len(pk) >= 2 and min(pk[:2]) >= 3,
                              f"ping {dst} from home address {L.HOME_ADDR}: {got}/3; stock SA in/out {pk[:2]}"):
                return cell
            cell.steps["realm filter"] = "n/a"  # claim 24's tunnel has no workgroup filter
            if self.rekey and not self._rekey_steps(cell, self.rekey_during_stream(
                    node, "ha", src="v", dst=dst, ping_opts=f"-I {L.HOME_ADDR}")):
                return cell
            cell.status = "pass"
            return cell
        finally:
            if cell.status == "fail":
                cell.logs = {**self._excerpts(at), "ours (v initiator)": res.get("error") or "(no error)"}
            self.lab.exec(node, "swanctl --terminate --ike ha --timeout 5 >/dev/null 2>&1; true")

    def run_ha_row(self, suite: str) -> list[Cell]:
        """Row "ha" of SUITE (claim 24): ``ha_cell`` per proposal (pre-shared MN-HA key), then
        "n/a" cells for every proposal x certificate key type (claim 24 authenticates with the
        MN-HA key). The tested cells are reported through ``say``; all are appended to
        ``self.cells``; returns the row.
        """
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

    def collect_logs(self) -> None:
        """Copy our agents' charon logs (SG realms under /var/lib/testbed/sg/<realm>/, the MN's
        per-M-VPN ones, v's) into each node's /var/log/testbed (the lab's logs folder) as
        charon-<path>.log, e.g. logs/sg-b/charon-sg-A.log. Never raises."""
        script = ("for f in $(find /var/lib/testbed -name charon.log 2>/dev/null); do "
                  "n=${f#/var/lib/testbed/}; n=${n%/charon.log}; "
                  "cp \"$f\" \"/var/log/testbed/charon-$(echo \"$n\" | tr / -).log\"; done; true")
        for node in ("sg-a", "sg-b", "m", "v"):
            try:
                self.lab.exec(node, script, timeout=30)
            except Exception:  # a node that is gone has nothing to collect
                pass


# What write_results makes; run_scenario removes them before a run (scenario.py's OUTPUTS),
# so a run that stops early shows no table of the previous run.
OUTPUTS = ("matrix.json", "matrix.md", "matrix.html")


def write_results(cells: list[Cell], folder, extra: dict | None = None) -> dict:
    """matrix.json (cells and per-row counts), matrix.md and matrix.html under FOLDER;
    returns the JSON document."""
    from pathlib import Path

    from .matrix import render_html, render_markdown
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"cells": [c.to_json() for c in cells], "counts": counts(cells), **(extra or {})}
    (folder / "matrix.json").write_text(json.dumps(doc, indent=1))
    (folder / "matrix.md").write_text(render_markdown(cells))
    (folder / "matrix.html").write_text(render_html(cells))
    return doc


def suites_in(lab: Lab) -> list[str]:
    """The peer suites whose nodes this lab has (labspec names)."""
    from orchestration.images import PEER_SUITES
    return [s for s in PEER_SUITES if L.initiator_node(s) in lab.topology.nodes]
