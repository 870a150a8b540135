"""Mirror of the agent's valid routes in the kernel's main table, through pyroute2.

Why a dedicated protocol number: the agent must only ever touch routes it installed. Every
route it writes carries `proto <kernel_proto>` (180 by default; `ip route show proto 180`),
and cleanup deletes by that number, never by prefix, so addresses, connected routes and
the engine's own routes stay untouched.
"""
from __future__ import annotations

import logging
import socket
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .route_table import Route

log = logging.getLogger("aodv.kernel")

RT_SCOPE_LINK = 253
RTNH_F_ONLINK = 4


class KernelRoutes:
    def __init__(self, proto: int) -> None:
        self.proto = proto
        self.ipr = IPRoute()
        self.errors = 0
        #: (oif, metric) of our catch-all routes to the buffer TUN: remove() leaves them
        self.catchalls: set[tuple[int, int]] = set()

    def close(self) -> None:
        self.ipr.close()

    def _ifindex(self, iface: str) -> int | None:
        try:
            return socket.if_nametoindex(iface)
        except OSError:
            return None

    def install(self, route: Route) -> bool:
        """Add or replace the kernel route for an AODV route (host or prefix)."""
        idx = self._ifindex(route.iface)
        if idx is None:
            log.debug("not installing %s: interface %s is gone", route.dst, route.iface)
            return False
        kw: dict = dict(dst=route.dst, dst_len=route.prefix_len, oif=idx, proto=self.proto)
        if route.next_hop == route.dst and route.prefix_len == 32:
            kw["scope"] = RT_SCOPE_LINK  # a neighbour: directly on the link
        else:
            kw["gateway"] = route.next_hop
            kw["flags"] = RTNH_F_ONLINK  # next hop is a neighbour even without a subnet
        try:
            self.ipr.route("replace", **kw)
            return True
        except NetlinkError as exc:
            self.errors += 1
            log.warning("kernel route %s/%d via %s dev %s failed: %s", route.dst,
                        route.prefix_len, route.next_hop, route.iface, exc)
            return False

    def remove(self, dst: str, prefix_len: int = 32) -> None:
        """Delete our route to dst, never the catch-all to the buffer TUN.

        Why not a plain `route del dst/len proto P`: a prefix route (e.g. a gateway's
        announced network that is also a managed prefix of this node) has the same dst,
        length and protocol as its catch-all, and the kernel deletes the first match; with
        the catch-all gone, datagrams would follow the dead route instead of being buffered.
        So delete exactly the entries that are not a catch-all, each with its own oif and
        metric."""
        try:
            found = [r for r in self.ipr.get_routes(family=socket.AF_INET, proto=self.proto)
                     if (r.get("dst") or "0.0.0.0") == dst and r["dst_len"] == prefix_len]
        except NetlinkError as exc:
            self.errors += 1
            log.debug("kernel route dump for %s/%d: %s", dst, prefix_len, exc)
            return
        for r in found:
            if (r.get("oif"), r.get("priority")) in self.catchalls:
                continue
            kw = dict(dst=dst, dst_len=prefix_len, proto=self.proto, scope=r["scope"], oif=r.get("oif"))
            if r.get("priority") is not None:
                kw["priority"] = r.get("priority")
            try:
                self.ipr.route("del", **kw)
            except NetlinkError as exc:
                if exc.code != 3:  # ESRCH: already gone with its link
                    self.errors += 1
                    log.debug("kernel route del %s/%d: %s", dst, prefix_len, exc)

    def add_catchall(self, prefix: str, prefix_len: int, tun: str, metric: int) -> None:
        """Low-priority route sending datagrams without an AODV route to the buffer TUN."""
        idx = self._ifindex(tun)
        if idx is None:
            raise RuntimeError(f"TUN {tun} not found")
        self.ipr.route("replace", dst=prefix, dst_len=prefix_len, oif=idx, proto=self.proto,
                       priority=metric, scope=RT_SCOPE_LINK)
        self.catchalls.add((idx, metric))

    def remove_catchall(self, prefix: str, prefix_len: int, tun: str, metric: int) -> None:
        """Withdraw a catch-all added by add_catchall (gone already: nothing to do)."""
        idx = self._ifindex(tun)
        if idx is None:
            return
        try:
            self.ipr.route("del", dst=prefix, dst_len=prefix_len, oif=idx, proto=self.proto,
                           priority=metric, scope=RT_SCOPE_LINK)
        except NetlinkError as exc:
            if exc.code != 3:
                self.errors += 1
                log.debug("kernel catch-all del %s/%d: %s", prefix, prefix_len, exc)

    def owned(self) -> list[tuple[str, int]]:
        out = []
        for r in self.ipr.get_routes(family=socket.AF_INET, proto=self.proto):
            out.append((r.get("dst") or "0.0.0.0", r["dst_len"]))
        return out

    def flush_owned(self) -> int:
        """Delete every route carrying our protocol number (start-up and shutdown)."""
        n = 0
        for r in self.ipr.get_routes(family=socket.AF_INET, proto=self.proto):
            try:
                kw = dict(dst=r.get("dst") or "0.0.0.0", dst_len=r["dst_len"],
                          proto=self.proto, scope=r["scope"], oif=r.get("oif"))
                if r.get("priority") is not None:
                    kw["priority"] = r.get("priority")
                self.ipr.route("del", **kw)
                n += 1
            except NetlinkError:
                pass
        return n


def set_sysctl(path: str, value: str) -> bool:
    """Best effort: inside Docker /proc/sys may be read-only (then the engine sets it)."""
    try:
        Path("/proc/sys", path).write_text(value)
        return True
    except OSError as exc:
        log.info("cannot set %s=%s (%s); relying on the node's settings", path, value, exc)
        return False


