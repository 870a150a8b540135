"""Routes, proxy-ARP entries and neighbour flushes through rtnetlink (pyroute2), not `ip`.

Why (issue 14): every `ip` call is a fork+exec of 2-5 ms in a node; a move of the mobile
node changed five to seven routes that way, all on the path between carrier-up and the
first packet on the new link. One netlink socket per agent does the same in well under a
millisecond per change. Errors are logged and counted, never raised: a route that is
already gone (ESRCH) or already there is the normal case during a move.
"""
from __future__ import annotations

import logging
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

RTNH_F_ONLINK = 4
RT_SCOPE_NOWHERE = 255   # in a delete: match any scope, as `ip route del` does
NUD_INCOMPLETE = 0x01
NTF_PROXY = 0x08


class Netlink:
    """One rtnetlink socket with the few verbs the Mobile IP agents need."""

    def __init__(self) -> None:
        self.ipr = IPRoute()
        self.errors = 0

    def close(self) -> None:
        self.ipr.close()

    @staticmethod
    def index(ifname: str) -> int | None:
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            return None

    def _call(self, what: str, fn, *args, **kw) -> bool:
        try:
            fn(*args, **kw)
            return True
        except NetlinkError as exc:
            if exc.code not in (3, 17):   # ESRCH: already gone; EEXIST: already there
                self.errors += 1
            log.debug("%s: %s", what, exc)
            return False

    def link_up(self, dev: str, mtu: int | None = None) -> bool:
        """`ip link set DEV [mtu MTU] up` (e.g. a tunnel TUN just made)."""
        idx = self.index(dev)
        if idx is None:
            return False
        kw: dict = {"index": idx, "state": "up"}
        if mtu:
            kw["mtu"] = mtu
        return self._call(f"link {dev} up", self.ipr.link, "set", **kw)

    def route_replace(self, dst: str, dev: str, via: str | None = None, src: str | None = None,
                      onlink: bool = False, mtu: int | None = None) -> bool:
        """`ip route replace DST [via VIA] dev DEV [onlink] [src SRC] [mtu MTU]`; DST
        "a.b.c.d/len" or "default"; MTU in bytes (the route's, below the device's)."""
        oif = self.index(dev)
        if oif is None:
            log.debug("route %s: no interface %s", dst, dev)
            return False
        kw: dict = {"dst": dst if dst != "default" else "0.0.0.0/0", "oif": oif}
        if via:
            kw["gateway"] = via
            if onlink:
                kw["flags"] = RTNH_F_ONLINK
        else:
            kw["scope"] = 253   # link
        if src:
            kw["prefsrc"] = src
        if mtu:
            kw["metrics"] = {"mtu": mtu}
        return self._call(f"route replace {dst} dev {dev}", self.ipr.route, "replace", **kw)

    def route_del(self, dst: str, dev: str | None = None) -> bool:
        """`ip route del DST [dev DEV]` (the first match, like `ip`: any scope, any protocol)."""
        kw: dict = {"dst": dst if dst != "default" else "0.0.0.0/0", "scope": RT_SCOPE_NOWHERE, "proto": 0}
        if dev:
            oif = self.index(dev)
            if oif is None:
                return False
            kw["oif"] = oif
        return self._call(f"route del {dst}", self.ipr.route, "del", **kw)

    def _defaults(self) -> list:
        # filtered here on what the kernel returned: a flush must never reach a non-default route
        return [r for r in self.ipr.get_routes(family=socket.AF_INET, table=254)
                if r["dst_len"] == 0 and r.get_attr("RTA_TABLE", r["table"]) == 254]

    def flush_default(self) -> int:
        """Delete every IPv4 default route in the main table; returns how many went."""
        n = 0
        for r in self._defaults():
            kw = {"dst": "0.0.0.0/0", "table": 254, "priority": r.get_attr("RTA_PRIORITY") or 0,
                  "scope": RT_SCOPE_NOWHERE, "proto": 0}
            oif = r.get_attr("RTA_OIF")
            if oif:
                kw["oif"] = oif
            n += self._call("route del default", self.ipr.route, "del", **kw)
        return n

    def defaults(self) -> list[tuple[str | None, str | None, bool]]:
        """(device, gateway, linkdown) of each IPv4 default route in the main table."""
        out = []
        names = {l["index"]: l.get_attr("IFLA_IFNAME") for l in self.ipr.get_links()}
        for r in self._defaults():
            out.append((names.get(r.get_attr("RTA_OIF")), r.get_attr("RTA_GATEWAY"), bool(r["flags"] & 16)))
        return out

    def addresses(self, dev: str) -> list[tuple[str, int]]:
        """(address, prefix length) of each IPv4 address on `dev`."""
        idx = self.index(dev)
        if idx is None:
            return []
        # filtered here too, so that only this interface's addresses can ever count as a CCoA
        return [(a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in self.ipr.get_addr(family=socket.AF_INET, index=idx) if a["index"] == idx]

    def tx_checksum_off(self, dev: str) -> bool:
        """`ethtool -K DEV tx-checksum-ip-generic off`: the kernel completes the TCP/UDP
        checksum of every packet sent out of DEV instead of leaving it to an offload.

        Why (issue 14 §3): a kernel or tc-BPF tunnel keeps a packet's partial checksum (a
        veth offload) inside the outer IP-IP header; a userspace endpoint on the other side
        (the FA's raw socket, a userspace HA) forwards the inner packet as it is, and the
        mobile node drops it (UdpInCsumErrors). Completed before encapsulation, the inner
        packet is valid wherever it is decapsulated. Returns False (logged) on failure.
        """
        from pyroute2.ethtool import Ethtool
        try:
            et = Ethtool()
            try:
                feats = et.get_features(dev)
                feats.features["tx-checksum-ip-generic"].enable = False
                et.set_features(dev, feats)
            finally:
                et.close()
            return True
        except Exception as exc:   # pyroute2 raises several kinds for a missing device or feature
            self.errors += 1
            log.warning("tx checksum offload off on %s: %s", dev, exc)
            return False

    def addr_replace(self, addr: str, prefixlen: int, dev: str) -> bool:
        """`ip addr replace ADDR/PREFIXLEN dev DEV` (e.g. a care-of address from DHCP)."""
        return self._addr("replace", addr, prefixlen, dev)

    def addr_del(self, addr: str, prefixlen: int, dev: str) -> bool:
        """`ip addr del ADDR/PREFIXLEN dev DEV`."""
        return self._addr("del", addr, prefixlen, dev)

    def _addr(self, verb: str, addr: str, prefixlen: int, dev: str) -> bool:
        idx = self.index(dev)
        if idx is None:
            return False
        return self._call(f"addr {verb} {addr}/{prefixlen} on {dev}", self.ipr.addr, verb, index=idx,
                          address=addr, prefixlen=prefixlen)

    def proxy_replace(self, addr: str, dev: str) -> bool:
        """`ip neigh replace proxy ADDR dev DEV` (answer ARP for ADDR on DEV)."""
        idx = self.index(dev)
        if idx is None:
            return False
        return self._call(f"proxy {addr} on {dev}", self.ipr.neigh, "replace", dst=addr, ifindex=idx,
                          flags=NTF_PROXY, family=socket.AF_INET)

    def proxy_del(self, addr: str, dev: str) -> bool:
        idx = self.index(dev)
        if idx is None:
            return False
        return self._call(f"del proxy {addr} on {dev}", self.ipr.neigh, "del", dst=addr, ifindex=idx,
                          flags=NTF_PROXY, family=socket.AF_INET)

    def flush_incomplete(self, dev: str) -> int:
        """`ip neigh flush dev DEV nud incomplete`: returns how many entries went."""
        idx = self.index(dev)
        if idx is None:
            return 0
        n = 0
        for nb in self.ipr.get_neighbours(family=socket.AF_INET, ifindex=idx):
            if nb["ifindex"] == idx and nb["state"] & NUD_INCOMPLETE:
                n += self._call("neigh del", self.ipr.neigh, "del", dst=nb.get_attr("NDA_DST"), ifindex=idx,
                                family=socket.AF_INET)
        return n
