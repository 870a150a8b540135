"""One namespace + charon per target SG inside the mobile node, and reply steering by realm.

Why: the MN's tunnels are unidirectional (claims 7-9, 12): b sends to a over its own SA to
SG-A. When b talks to a (10.0.0.5 in A) and c (10.0.0.5 in C) at the same time, it needs
two outbound SAs with the same traffic selector 10.0.0.7 -> 10.0.0.5 towards different
SGs, which one charon with kernel-libipsec (one ipsec0, one route per selector) cannot hold.
So each target SG gets what the SG gives each peer realm: its own namespace and charon.

    MN main namespace                                 namespace via-<M> (target SG of M-VPN M)
    eth0 own/24 ── LAN ── own SG                      lo: own/32 (libipsec needs it local)
    tv<i> 169.254.<i>.2/30 ───────── veth ─────────── uplink 169.254.<i>.1/30, default via .2
    table 300+i: default via 169.254.<i>.1           charon: to-<M>, local_ts own/32,
    rule fwmark <SG public> -> table 300+i                    remote_ts = M's members, ipsec0
    route <unique target>/32 via 169.254.<i>.1        (table 220 routes targets into ipsec0)
    masquerade 169.254/16 out of eth0 (IKE/ESP leave as own:4500)

Which realm a packet came from: the SG delivering into our M-VPN writes the peer realm in
the Ethernet source, 02:<peer SG public>:00 (testbed/sg/realm_mark.py). New connections get
that as `ct mark` (= the peer SG's public address); our replies carry it as packet mark and
the fwmark rule sends them into that SG's namespace, over that SG's SA. Connections we open
ourselves to an address that exists in several realms go to the first target SG (lowest
public address) unless the application sets SO_MARK = that SG's address (`ping -m`).
"""
from __future__ import annotations

import logging
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Iterable, Mapping

from testbed.sg.realm import _sysctl
from testbed.sg.realm_mark import realm_mac, realm_mark
from testbed.common.strongswan import (ESP_PROPOSALS, IKE_PROPOSALS, Charon, Credentials, StrongswanError,
                                   render_initiator_swanctl, summarize_sas, write_swanctl_dir)

log = logging.getLogger(__name__)

TABLE_BASE = 300
RULE_PREF_BASE = 300
NFT_TABLE = "tb_mn"
CHILD = "wg"
UPLINK = "uplink"  # the namespace end of the veth to the main namespace
# Inner MTU of a tunnel: ESP-in-UDP (AES-GCM: ~66 bytes) must fit the SGs' IP-IP MTU (1480).
# Set on our routes into the namespace (not on the veth, which carries the ESP packets too)
# so that TCP's MSS is right from the start: path-MTU discovery cannot work here, because an
# ICMP "fragmentation needed" from ipsec0 would be addressed to our own address, which is
# local in the namespace too, and never reach the sending socket.
TUNNEL_MTU = 1400


def ip(args: list[str], netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "-n", netns] if netns else ["ip"]) + args
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


class TargetTunnel:
    """The tunnel to one target SG: namespace, veth, routes, charon, connection to-<name>."""

    def __init__(self, name: str, index: int, sg_public: str, *, own_address: str, own_sg_public: str,
                 creds: Credentials, workdir: Path, netns: str, debug: int = 1,
                 proposals: str = IKE_PROPOSALS, esp_proposals: str = ESP_PROPOSALS) -> None:
        self.name = name
        self.index = index
        self.sg_public = str(IPv4Address(sg_public))
        self.own = own_address
        self.own_sg_public = own_sg_public
        self.creds = creds
        self.workdir = Path(workdir)
        self.netns = netns
        self.veth = f"tv{index}"
        self.targets: list[str] = []
        self.charon = Charon(name, self.workdir, netns=netns, debug=debug)
        self.established_at: float | None = None
        self.setup_ms: float | None = None
        self.error: str | None = None
        self.initiations = 0
        self.proposals, self.esp_proposals = proposals, esp_proposals

    @property
    def ns_addr(self) -> str:
        return f"169.254.{self.index}.1"

    @property
    def main_addr(self) -> str:
        return f"169.254.{self.index}.2"

    @property
    def table(self) -> int:
        return TABLE_BASE + self.index

    @property
    def mark(self) -> int:
        return realm_mark(self.sg_public)

    def build(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)  # stale, ours by name
        ip(["link", "del", self.veth], check=False)
        ip(["netns", "add", self.netns])
        ip(["link", "set", "lo", "up"], self.netns)
        for key, val in (("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                         ("net.ipv4.conf.default.rp_filter", "0"),
                         ("net.ipv4.conf.all.accept_local", "1"), ("net.ipv4.conf.default.accept_local", "1")):
            _sysctl(self.netns, key, val)
        ip(["link", "add", self.veth, "type", "veth", "peer", "name", UPLINK, "netns", self.netns])
        ip(["addr", "add", f"{self.main_addr}/30", "dev", self.veth])
        ip(["link", "set", self.veth, "up"])
        _sysctl(None, f"net.ipv4.conf.{self.veth}.rp_filter", "0")
        ip(["addr", "add", f"{self.ns_addr}/30", "dev", UPLINK], self.netns)
        ip(["addr", "add", f"{self.own}/32", "dev", "lo"], self.netns)
        ip(["link", "set", UPLINK, "up"], self.netns)
        ip(["route", "replace", "default", "via", self.main_addr, "dev", UPLINK, "src", self.ns_addr], self.netns)
        ip(["route", "replace", "default", "via", self.ns_addr, "dev", self.veth, "src", self.own,
            "mtu", str(TUNNEL_MTU), "table", str(self.table)])
        ip(["rule", "del", "pref", str(RULE_PREF_BASE + self.index)], check=False)
        ip(["rule", "add", "pref", str(RULE_PREF_BASE + self.index), "fwmark", f"{self.mark:#x}",
            "lookup", str(self.table)])

    def start_charon(self) -> None:
        self.charon.start()

    def set_targets(self, targets: Iterable[str]) -> None:
        new = sorted({str(IPv4Address(t)) for t in targets}, key=lambda a: IPv4Address(a))
        if new == self.targets and self.charon.running():
            return
        conf = write_swanctl_dir(self.workdir / "swanctl",
                                 render_initiator_swanctl({self.name: (self.sg_public, new)},
                                                          self.own_sg_public, local_ts=[self.own],
                                                          proposals=self.proposals,
                                                          esp_proposals=self.esp_proposals),
                                 self.creds)
        self.charon.load_swanctl(conf)
        if self.targets and new != self.targets and self.is_up():
            # the CHILD_SA's traffic selectors are fixed: renegotiate for the new member set
            self.terminate()
        self.targets = new

    def is_up(self) -> bool:
        try:
            return any(ch.get("state") == "INSTALLED" for sa in summarize_sas(self.charon.list_sas())
                       if sa["state"] == "ESTABLISHED" for ch in sa["children"])
        except Exception:
            return False

    def up(self, timeout_s: float) -> bool:
        import time
        self.initiations += 1
        t0 = time.monotonic()
        try:
            self.charon.initiate(CHILD, f"to-{self.name}", int(timeout_s * 1000))
        except StrongswanError as exc:
            self.error = str(exc)[:300]
            log.info("tunnel to %s (%s): %s", self.name, self.sg_public, self.error)
            return False
        self.setup_ms = round((time.monotonic() - t0) * 1000, 1)
        self.established_at = time.time()
        self.error = None
        log.info("tunnel to %s (%s) up in %.0f ms, targets %s", self.name, self.sg_public,
                 self.setup_ms, self.targets)
        return True

    def terminate(self) -> None:
        try:
            self.charon.terminate(f"to-{self.name}")
        except StrongswanError as exc:
            log.debug("terminate to-%s: %s", self.name, exc)

    def close(self) -> None:
        self.terminate()
        self.charon.stop()
        ip(["rule", "del", "pref", str(RULE_PREF_BASE + self.index)], check=False)
        ip(["route", "flush", "table", str(self.table)], check=False)
        ip(["link", "del", self.veth], check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    def status(self) -> dict:
        st = {"sg_public": self.sg_public, "netns": self.netns, "targets": self.targets,
              "mark": f"{self.mark:#010x}", "realm_mac": realm_mac(self.sg_public),
              "setup_ms": self.setup_ms, "initiations": self.initiations, "error": self.error,
              "charon_running": self.charon.running()}
        if self.charon.running():
            try:
                st["sas"] = summarize_sas(self.charon.list_sas())
            except Exception as exc:
                st["sas_error"] = str(exc)
        return st


def apply_main_rules(lan_if: str, own: str, tunnels: Mapping[str, TargetTunnel]) -> None:
    """Main-namespace nft (realm MAC -> ct mark -> reply mark; NAPT of the namespaces' IKE/ESP)
    and the /32 routes of our targets (first target SG wins where addresses collide)."""
    elems = ", ".join(f"{realm_mac(t.sg_public)} : {t.mark:#010x}" for t in tunnels.values())
    tag = (f'iifname "{lan_if}" ct state new ct mark set ether saddr map {{ {elems} }}'
           if elems else "")
    text = f"""
table ip {NFT_TABLE} {{}}
delete table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
    chain pre {{
        type filter hook prerouting priority -150; policy accept;
        {tag}
    }}
    chain out {{
        type route hook output priority -150; policy accept;
        ct mark != 0 meta mark set ct mark
    }}
    chain post {{
        type nat hook postrouting priority 100; policy accept;
        oifname "{lan_if}" ip saddr 169.254.0.0/16 masquerade
    }}
}}
"""
    proc = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nft {NFT_TABLE}: {proc.stderr.strip()}")
    want: dict[str, TargetTunnel] = {}
    for t in sorted(tunnels.values(), key=lambda t: IPv4Address(t.sg_public)):
        for addr in t.targets:
            want.setdefault(addr, t)
    have = ip(["-j", "route", "show", "proto", "static", "table", "main"], check=False).stdout
    import json
    try:
        current = {r["dst"]: r.get("dev") for r in json.loads(have or "[]") if r.get("dev", "").startswith("tv")}
    except ValueError:
        current = {}
    for addr, t in want.items():
        ip(["route", "replace", f"{addr}/32", "via", t.ns_addr, "dev", t.veth, "src", own, "mtu", str(TUNNEL_MTU),
            "proto", "static"])
    for addr in set(current) - set(want):
        ip(["route", "del", f"{addr}/32", "proto", "static"], check=False)


def remove_main_rules() -> None:
    subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], capture_output=True)
