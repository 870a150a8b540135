"""Operator home agent: the dispatcher and backbone in front of the virtual HAs (claims 16-19).

Shape inside one node (one process):

    Internet -- backbone_interface [backbone namespace = shared backbone virtual router]
                    | route PUB_A/32 -> vb-a      | route PUB_C/32 -> vb-c
                 [netns of virtual HA a]        [netns of virtual HA c]
                 PUB_A on lo, M-VPN A's LAN     PUB_C on lo, M-VPN C's LAN (same realm!)

The dispatcher gives every datagram to the virtual HA that owns its (tunnel) destination
address: IP-IP from a care-of address and registrations on UDP 434 are both addressed
to the virtual HA's own public address, and the backbone's forwarding table has exactly
one /32 per virtual HA pointing into that HA's namespace (claim 17). Using the kernel's
forwarding lookup as the dispatcher keeps the data plane out of Python; the per-HA
veth counters in the status show what was dispatched where. The backbone answers ARP for
the virtual HAs' addresses on the public interface (proxy ARP) and is the common way out
to the Internet for all of them (claim 19): each namespace's default route leads to it.
Private realms never enter the backbone: it routes public addresses only.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess

from testbed.mip.config import HomeAgentConfig, OperatorConfig
from testbed.mip.sysctl import set_sysctl
from testbed.common.tun import run_ip

log = logging.getLogger(__name__)


def _sh(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc


class Dispatcher:
    def __init__(self, op: OperatorConfig, has: list[HomeAgentConfig]) -> None:
        self.op = op
        self.has = has
        self.links: dict[str, dict] = {}
        subnets = list(op.link_prefix.subnets(new_prefix=30))
        if len(subnets) < len(has):
            raise ValueError(f"operator.link_prefix: {op.link_prefix} has too few /30s for {len(has)} HAs")
        for i, ha in enumerate(has):
            hosts = list(subnets[i].hosts())
            self.links[ha.name] = {"backbone_if": f"vb-{ha.name}", "ha_if": f"vh-{ha.name}",
                                   "backbone_addr": str(hosts[0]), "ha_addr": str(hosts[1]),
                                   "prefixlen": 30, "public": str(ha.address), "netns": ha.netns}

    def setup(self) -> None:
        """Create namespaces, veths, addresses and routes; idempotent (restart-safe)."""
        set_sysctl("net.ipv4.ip_forward", "1")
        # Linux delays proxy ARP answers by up to 0.8 s (proxy_delay): the first packet
        # to a virtual HA would wait that long, and it shows in every registration time.
        set_sysctl(f"net.ipv4.neigh.{self.op.backbone_interface}.proxy_delay", "0")
        for ha in self.has:
            ln = self.links[ha.name]
            ns = ha.netns
            assert ns
            if not os.path.exists(f"/run/netns/{ns}"):
                _sh(["ip", "netns", "add", ns])
            _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            if _sh(["ip", "link", "show", ln["backbone_if"]], check=False).returncode != 0:
                _sh(["ip", "link", "add", ln["backbone_if"], "type", "veth", "peer", "name",
                     ln["ha_if"], "netns", ns])
            _sh(["ip", "addr", "replace", f"{ln['backbone_addr']}/30", "dev", ln["backbone_if"]])
            _sh(["ip", "link", "set", ln["backbone_if"], "up"])
            _sh(["ip", "-n", ns, "addr", "replace", f"{ln['ha_addr']}/30", "dev", ln["ha_if"]])
            _sh(["ip", "-n", ns, "link", "set", ln["ha_if"], "up"])
            _sh(["ip", "-n", ns, "addr", "replace", f"{ha.address}/32", "dev", "lo"])
            for ifname, addr in ha.interfaces.items():
                if _sh(["ip", "link", "show", ifname], check=False).returncode == 0:
                    _sh(["ip", "link", "set", ifname, "netns", ns])
                _sh(["ip", "-n", ns, "addr", "replace", str(addr), "dev", ifname])
                _sh(["ip", "-n", ns, "link", "set", ifname, "up"])
            _sh(["ip", "-n", ns, "route", "replace", "default", "via", ln["backbone_addr"]])
            for r in ha.routes:
                _sh(["ip", "-n", ns, "route", "replace"] + r.split())
            # the dispatch entry: this virtual HA's public address leads into its namespace
            _sh(["ip", "route", "replace", f"{ha.address}/32", "via", ln["ha_addr"], "dev", ln["backbone_if"]])
            run_ip(["neigh", "replace", "proxy", str(ha.address), "dev", self.op.backbone_interface], check=False)
            log.info("virtual HA %s: %s dispatched into netns %s over %s", ha.name, ha.address, ns,
                     ln["backbone_if"])
        self._setup_backbone()

    def backbone_rules(self) -> str:
        """nftables of the shared backbone (claims 19, 22).

        - forward: from a virtual HA only its own public address may leave (IP-IP, replies);
          a private realm address never reaches the Internet (counted, dropped).
        - NAPT: realm traffic to a backbone service address is source-NATed to the virtual
          HA's public address, so a service such as the MSM portal sees (HA address, port),
          unique per M-VPN although both realms have a 10.0.0.5.
        - the conntrack mark remembers the virtual HA, and the replies are routed back by
          that mark (table 100+i): after de-NAT their destination is a private address that
          only the virtual HA's namespace can route.
        """
        services = ", ".join(str(a) for a in self.op.services)
        fwd, nat, mark, out = [], [], [], []
        for i, ha in enumerate(self.has):
            ln = self.links[ha.name]
            vb = ln["backbone_if"]
            fwd.append(f'iifname "{vb}" ip saddr != {ha.address} counter name "leak_{ha.name}" drop')
            if services:
                nat.append(f'iifname "{vb}" ip daddr {{ {services} }} ip saddr != {ha.address} snat to {ha.address}')
                mark.append(f'iifname "{vb}" ct mark set {0x100 + i}')
        if services:
            out.append("ct mark 0x100-0x1ff meta mark set ct mark")
        counters = "\n".join(f'    counter leak_{ha.name} {{ }}' for ha in self.has)
        return f"""table ip mip_backbone
delete table ip mip_backbone
table ip mip_backbone {{
{counters}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        {chr(10).join('        ' + r for r in fwd).strip()}
    }}
    chain napt {{
        type nat hook input priority 100; policy accept;
        {chr(10).join('        ' + r for r in nat).strip()}
    }}
    chain mark_in {{
        type filter hook input priority -150; policy accept;
        {chr(10).join('        ' + r for r in mark).strip()}
    }}
    chain reply_out {{
        type route hook output priority -150; policy accept;
        {chr(10).join('        ' + r for r in out).strip()}
    }}
}}
"""

    def _setup_backbone(self) -> None:
        for svc in self.op.services:
            _sh(["ip", "addr", "replace", f"{svc}/32", "dev", "lo"])
            run_ip(["neigh", "replace", "proxy", str(svc), "dev", self.op.backbone_interface], check=False)
        proc = subprocess.run(["nft", "-f", "-"], input=self.backbone_rules(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"nft (backbone rules): {proc.stderr.strip()}")
        for i, ha in enumerate(self.has):
            ln = self.links[ha.name]
            table = str(100 + i)
            _sh(["ip", "route", "replace", "default", "via", ln["ha_addr"], "dev", ln["backbone_if"], "table", table])
            _sh(["ip", "rule", "del", "pref", table], check=False)   # restart-safe
            _sh(["ip", "rule", "add", "fwmark", hex(0x100 + i), "lookup", table, "pref", table])

    def counters(self) -> dict:
        proc = _sh(["nft", "-j", "list", "counters", "table", "ip", "mip_backbone"], check=False)
        out = {}
        try:
            for item in json.loads(proc.stdout)["nftables"]:
                c = item.get("counter")
                if c:
                    out[c["name"]] = c["packets"]
        except (ValueError, KeyError, TypeError):
            pass
        return out

    def status(self) -> dict:
        out = {}
        for name, ln in self.links.items():
            proc = _sh(["ip", "-s", "-j", "link", "show", "dev", ln["backbone_if"]], check=False)
            try:
                st = json.loads(proc.stdout)[0]["stats64"]
                counts = {"dispatched_packets": st["tx"]["packets"], "dispatched_bytes": st["tx"]["bytes"],
                          "from_ha_packets": st["rx"]["packets"]}
            except (ValueError, LookupError, TypeError):
                counts = {}
            out[ln["public"]] = {"virtual_ha": name, "netns": ln["netns"], "via": ln["backbone_if"], **counts}
        leaks = self.counters()
        for ln in self.links.values():
            out[ln["public"]]["private_source_dropped"] = leaks.get(f"leak_{out[ln['public']]['virtual_ha']}", 0)
        return out

