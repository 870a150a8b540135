"""One peer realm inside the SG: its namespace, tunnel interface, charon and plumbing.

Layout for peer P (index i), built with plain `ip`/`nft` so an operator can inspect it:

    SG namespace                         namespace realm-P
    ─────────────                        ─────────────────
    raw socket (proto 4) ── TUN fd ───── ip-P   (our public /32; default route)
    rl-P 169.254.i.2/30 ──── veth ────── home   169.254.i.1/30 + target /32s
    workgroup filter: iifname rl-P        charon (responder for P only, ipsec0)

- IKE/ESP from P's initiators arrive on ip-P addressed to our public address, which is
  local in realm-P: only that charon sees them, and its only connection demands P's
  public address as the initiator's identity/subjectAltName (claim 11).
- Decrypted packets leave ipsec0 and go to `home` (rule: iif ipsec0 -> table 100, before
  the local table), so they enter the SG's namespace on rl-P: the ingress interface names
  the realm for the workgroup filter. Packets from ip-P other than those for our public
  address (IKE answers to our own MNs) go home the same way (iif ip-P -> table 100).
- kernel-libipsec in 5.9.8 installs a route for every outbound policy and needs a local
  address inside the negotiated local traffic selector (the target's /32); the targets
  are therefore configured on `home`, and the `local` rule is moved after the iif rules so
  that decrypted packets for them are still forwarded, not delivered locally.
- Traffic from our LAN towards P's public address is steered (SG namespace rule) into
  realm-P and leaves through ip-P; our own encapsulated packets use the main table.
- With require_ipsec, realm-P forwards inwards only what ipsec0 decrypted plus IKE answers
  from P's SG; plain IP-IP from P is dropped and counted.
"""
from __future__ import annotations

import logging
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Iterable

from testbed.common.strongswan import (ESP_PROPOSALS, IKE_PROPOSALS, Charon, Credentials, StrongswanError,
                                   render_responder_swanctl, summarize_sas, write_swanctl_dir)
from testbed.common.tun import configure_link, run_ip

log = logging.getLogger(__name__)

HOME = "home"
HOME_TABLE = 100
RULE_PREF_LOCAL_STEER = 1000   # SG ns: to peer public, locally generated -> main
RULE_PREF_PEER = 1100          # SG ns: to peer public, forwarded -> realm table
PEER_TABLE_BASE = 200


def _sysctl(netns: str | None, key: str, value: str) -> bool:
    """Set a sysctl in `netns`. Docker mounts /proc/sys read-only; with CAP_SYS_ADMIN a
    private mount namespace can remount it writable, which is the fallback here."""
    pre = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.run(pre + ["sysctl", "-qw", f"{key}={value}"], capture_output=True, text=True)
    if proc.returncode == 0:
        return True
    proc = subprocess.run(pre + ["unshare", "-m", "sh", "-c",
                                 f"mount -o remount,rw /proc/sys && sysctl -qw {key}={value}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        log.warning("sysctl %s=%s in %s failed: %s", key, value, netns or "SG namespace",
                    proc.stderr.strip())
        return False
    return True


def _nft(netns: str, text: str) -> None:
    proc = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=text,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nft in {netns}: {proc.stderr.strip()}")


class Realm:
    """Namespace + responder charon for one peer SG (see module docstring)."""

    def __init__(self, name: str, index: int, peer_public: str, *, public_address: str,
                 identity: str, realm_prefixes: Iterable[str], creds: Credentials,
                 workdir: Path, netns: str, tun_ifname: str, require_ipsec: bool = True,
                 debug: int = 1, mtu: int = 1480, proposals: str | None = None,
                 esp_proposals: str | None = None, answer_via_sa: bool = False) -> None:
        if not 0 <= index < 256:
            raise ValueError(f"realm index {index}: at most 256 peer realms")
        self.name = name
        self.index = index
        self.peer_public = str(IPv4Address(peer_public))
        self.public_address = public_address
        self.identity = identity
        self.realm_prefixes = [str(p) for p in realm_prefixes]
        self.creds = creds
        self.workdir = Path(workdir)
        self.netns = netns
        self.tun_ifname = tun_ifname
        self.outer_if = f"rl-{name}"
        self.require_ipsec = require_ipsec
        self.mtu = mtu
        self.targets: set[str] = set()
        self.proposals = proposals or IKE_PROPOSALS
        self.esp_proposals = esp_proposals or ESP_PROPOSALS
        self.answer_via_sa = answer_via_sa
        self.answers_to: set[str] = set()   # initiators routed back into this realm
        self.charon = Charon(name, self.workdir, netns=netns, debug=debug)
        self.error: str | None = None
        self.swanctl_output = ""

    @property
    def realm_addr(self) -> str:
        return f"169.254.{self.index}.1"

    @property
    def sg_addr(self) -> str:
        return f"169.254.{self.index}.2"

    # ---- build / tear down -------------------------------------------------------------
    def create_namespace(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)  # stale, ours by name
        run_ip(["netns", "add", self.netns])
        run_ip(["link", "set", "lo", "up"], self.netns)
        _sysctl(self.netns, "net.ipv4.ip_forward", "1")
        _sysctl(self.netns, "net.ipv4.conf.all.rp_filter", "0")
        # Targets are local addresses in this namespace (see module docstring); packets from
        # our LAN whose source is such a target must not be dropped as martians.
        _sysctl(self.netns, "net.ipv4.conf.all.accept_local", "1")
        _sysctl(self.netns, "net.ipv4.conf.default.accept_local", "1")

    def attach_tunnel(self) -> None:
        """Move our tunnel interface for P into realm-P and route everything local out of it."""
        configure_link(self.tun_ifname, netns=self.netns, addresses=[f"{self.public_address}/32"],
                       mtu=self.mtu)
        run_ip(["route", "replace", "default", "dev", self.tun_ifname], self.netns)

    def build(self) -> None:
        """veth, rules, realm filter, then charon with its connection."""
        subprocess.run(["ip", "link", "del", self.outer_if], capture_output=True)  # stale, ours
        run_ip(["link", "add", self.outer_if, "type", "veth", "peer", "name", HOME,
                "netns", self.netns])
        _sysctl(None, f"net.ipv4.conf.{self.outer_if}.rp_filter", "0")
        run_ip(["addr", "add", f"{self.sg_addr}/30", "dev", self.outer_if])
        run_ip(["link", "set", self.outer_if, "up"])
        run_ip(["addr", "add", f"{self.realm_addr}/30", "dev", HOME], self.netns)
        run_ip(["link", "set", HOME, "up"], self.netns)
        _sysctl(self.netns, f"net.ipv4.conf.{HOME}.rp_filter", "0")
        _sysctl(self.netns, f"net.ipv4.conf.{HOME}.accept_local", "1")
        # realm ns: decrypted (ipsec0) and tunnel-borne answers go home, before `local`
        run_ip(["route", "replace", "default", "via", self.sg_addr, "dev", HOME, "table",
                str(HOME_TABLE)], self.netns)
        # Both rules come before `local`: targets of the workgroup (ours, as seen from P)
        # are local addresses here, and so may be our own MNs' addresses. Table 100 sends
        # everything home except our public address (IKE/ESP for this charon), which it
        # declares local itself.
        run_ip(["route", "replace", "local", self.public_address, "dev", self.tun_ifname,
                "table", str(HOME_TABLE)], self.netns)
        run_ip(["rule", "add", "pref", "10", "iif", "ipsec0", "lookup", str(HOME_TABLE)],
               self.netns)
        run_ip(["rule", "add", "pref", "11", "iif", self.tun_ifname, "lookup", str(HOME_TABLE)],
               self.netns)
        run_ip(["rule", "add", "pref", "20", "lookup", "local"], self.netns)
        run_ip(["rule", "del", "pref", "0"], self.netns)
        # SG ns: forwarded traffic to P's public address goes through realm-P
        table = str(PEER_TABLE_BASE + self.index)
        run_ip(["route", "replace", "default", "via", self.realm_addr, "dev", self.outer_if,
                "table", table])
        run_ip(["rule", "add", "pref", str(RULE_PREF_LOCAL_STEER + self.index), "to",
                f"{self.peer_public}/32", "iif", "lo", "lookup", "main"])
        run_ip(["rule", "add", "pref", str(RULE_PREF_PEER + self.index), "to",
                f"{self.peer_public}/32", "lookup", table])
        self._realm_filter()

    def _realm_filter(self) -> None:
        tun, peer = self.tun_ifname, self.peer_public
        inward_plain = (f'iifname "{tun}" oifname "{HOME}" accept'
                        if not self.require_ipsec else "")
        # answer_via_sa: our LAN's answers enter from home and must leave only encrypted
        answers = f'iifname "{HOME}" oifname "ipsec0" accept' if self.answer_via_sa else ""
        # Targets are local addresses here (kernel-libipsec needs them): plain packets for
        # them from the tunnel would be delivered locally, so the input hook drops them too.
        _nft(self.netns, f"""
table ip tb_realm {{}}
delete table ip tb_realm
table ip tb_realm {{
    counter unprotected {{}}
    chain forward {{
        type filter hook forward priority 0; policy drop;
        iifname "ipsec0" oifname "{HOME}" accept
        iifname "{HOME}" oifname "{tun}" accept
        iifname "{tun}" oifname "{HOME}" ip saddr {peer} udp sport {{ 500, 4500 }} accept
        {inward_plain}
        {answers}
        counter name "unprotected" drop
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname "{tun}" ip daddr != {self.public_address} counter name "unprotected" drop
    }}
}}
""")

    def start_charon(self) -> None:
        try:
            self.charon.start()
            conf = write_swanctl_dir(
                self.workdir / "swanctl",
                render_responder_swanctl({self.name: self.peer_public}, self.identity,
                                         local_ts=self.realm_prefixes, proposals=self.proposals,
                                         esp_proposals=self.esp_proposals),
                self.creds)
            self.swanctl_output = self.charon.load_swanctl(conf)
            self.error = None
        except (StrongswanError, OSError) as exc:
            self.error = str(exc)
            log.error("realm %s: charon: %s", self.name, exc)

    def set_targets(self, targets: Iterable[str]) -> None:
        """Keep the targets' /32s on `home` (kernel-libipsec needs them, see docstring)."""
        new = {str(IPv4Address(t)) for t in targets}
        for t in sorted(new - self.targets):
            run_ip(["addr", "replace", f"{t}/32", "dev", HOME], self.netns, check=False)
        for t in sorted(self.targets - new):
            run_ip(["addr", "del", f"{t}/32", "dev", HOME], self.netns, check=False)
        if new != self.targets:
            log.debug("realm %s: targets %s", self.name, sorted(new))
        self.targets = new

    def set_answers(self, initiators: Iterable[str]) -> None:
        """answer_via_sa: route our LAN's packets for these initiators' private addresses
        into this realm (where charon's table 220 sends them into the initiator's SA)."""
        new = {str(IPv4Address(a)) for a in initiators} if self.answer_via_sa else set()
        for a in sorted(new - self.answers_to):
            run_ip(["route", "replace", f"{a}/32", "via", self.realm_addr, "dev", self.outer_if], check=False)
        for a in sorted(self.answers_to - new):
            run_ip(["route", "del", f"{a}/32", "dev", self.outer_if], check=False)
        self.answers_to = new

    def close(self) -> None:
        self.charon.stop()
        for pref in (RULE_PREF_LOCAL_STEER + self.index, RULE_PREF_PEER + self.index):
            run_ip(["rule", "del", "pref", str(pref)], check=False)
        run_ip(["route", "flush", "table", str(PEER_TABLE_BASE + self.index)], check=False)
        run_ip(["link", "del", self.outer_if], check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    # ---- status ------------------------------------------------------------------------
    def status(self) -> dict:
        st: dict = {"netns": self.netns, "peer_public": self.peer_public,
                    "outer_if": self.outer_if, "tunnel_if": self.tun_ifname,
                    "targets": sorted(self.targets), "charon_running": self.charon.running(),
                    "error": self.error}
        if self.charon.running():
            try:
                st["sas"] = summarize_sas(self.charon.list_sas())
            except Exception as exc:  # VICI hiccup must not kill the status loop
                st["sas_error"] = str(exc)
        proc = subprocess.run(["ip", "netns", "exec", self.netns, "nft", "-j", "list", "counter",
                               "ip", "tb_realm", "unprotected"], capture_output=True, text=True)
        try:
            import json
            c = [i["counter"] for i in json.loads(proc.stdout)["nftables"] if "counter" in i][0]
            st["unprotected_dropped"] = c["packets"]
        except (ValueError, LookupError):
            pass
        return st
