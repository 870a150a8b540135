"""The AODV route table (RFC 3561 sections 2, 6.1, 6.2): the only writer of route state.

Why not just the kernel table: AODV needs state the kernel has no place for (destination
seqno and its validity, precursors, per-route lifetime, invalid-but-remembered routes for
DELETE_PERIOD). The kernel only ever holds the *valid* subset; `RouteTable` mirrors it
through kernel.py on every change of validity or path (as AODV-UU's routing_table.c does
through k_route.c). Everything else reads `Route` objects and changes them only through
the table's methods.

Times are time.monotonic() seconds (`expires`, `now`); lifetimes passed in are seconds
(`lifetime_s`), the wire's milliseconds are converted in messages.py.
"""
from __future__ import annotations

import dataclasses
import enum
import ipaddress
import time
from collections import Counter
from typing import TYPE_CHECKING, Iterator

from . import seqnum

if TYPE_CHECKING:
    from .kernel import KernelRoutes


class RouteState(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"


@dataclasses.dataclass
class Route:
    dst: str
    next_hop: str
    iface: str
    hop_count: int
    seq: int = 0
    valid_seq: bool = False
    expires: float = 0.0
    state: RouteState = RouteState.VALID
    prefix_len: int = 32
    precursors: set[str] = dataclasses.field(default_factory=set)
    created: float = dataclasses.field(default_factory=time.monotonic)
    last_used: float = 0.0
    #: weight sum from this route's destination (as RREQ originator) to us (claims 65-66)
    weight: int | None = None

    @property
    def valid(self) -> bool:
        return self.state is RouteState.VALID

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.dst}/{self.prefix_len}", strict=False)

    def remaining(self, now: float | None = None) -> float:
        return self.expires - (time.monotonic() if now is None else now)

    def as_dict(self, now: float) -> dict:
        return {
            "dst": self.dst,
            "prefix_len": self.prefix_len,
            "next_hop": self.next_hop,
            "iface": self.iface,
            "hop_count": self.hop_count,
            "seq": self.seq,
            "valid_seq": self.valid_seq,
            "state": self.state.value,
            "lifetime_remaining_s": round(self.expires - now, 3),
            "precursors": sorted(self.precursors),
            "weight": self.weight,
        }


def should_update(existing: Route | None, seq: int, valid_seq: bool, hop_count: int) -> bool:
    """RFC 3561 6.2: replace an entry only with fresher or equally fresh but shorter info.

    hop_count is the new route's hop count (already incremented by the caller).
    """
    if existing is None:
        return True
    if not valid_seq:
        # Information without a seqno (e.g. the route to the previous hop, RFC 6.5) may
        # fill a gap or shorten a route, and keeps the seqno we already know.
        return (not existing.valid) or (not existing.valid_seq) or hop_count <= existing.hop_count
    if not existing.valid_seq:
        return True
    if seqnum.newer(seq, existing.seq):
        return True
    if seq == existing.seq:
        return (not existing.valid) or hop_count < existing.hop_count
    return False


class RouteTable:
    """Routes by destination address; one entry per (dst, prefix_len) keyed by dst.

    The only writer of `Route` state and of the kernel's copy of it: valid routes are
    installed with `kernel` (a KernelRoutes, attached once the agent has opened it; None
    in unit tests: no mirror). `counters` receives routes_installed, routes_expired and
    precursors_refused.
    """

    def __init__(self, counters: Counter[str] | None = None, max_precursors: int = 64) -> None:
        self._routes: dict[str, Route] = {}
        self.kernel: KernelRoutes | None = None
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.max_precursors = max_precursors

    def __iter__(self) -> Iterator[Route]:
        return iter(list(self._routes.values()))

    def __len__(self) -> int:
        return len(self._routes)

    def get(self, dst: str) -> Route | None:
        return self._routes.get(dst)

    def valid(self, dst: str) -> Route | None:
        r = self._routes.get(dst)
        return r if r is not None and r.valid else None

    def put(self, route: Route) -> Route:
        """Insert a route as it is, without mirroring it (tests, restoring a table)."""
        self._routes[route.dst] = route
        return route

    def remove(self, dst: str) -> Route | None:
        return self._routes.pop(dst, None)

    # ------------------------------------------------------------------ writers
    def update(self, dst: str, next_hop: str, iface: str, hop_count: int, seq: int,
               valid_seq: bool, lifetime_s: float, now: float, prefix_len: int = 32,
               keep_longer: bool = True) -> tuple[Route, bool]:
        """Create or overwrite a valid route (RFC 3561 6.2) and mirror it into the kernel.

        The caller has decided that the information wins (`should_update`). A seqno is
        taken only if `valid_seq`; without one the known seqno stays (RFC 6.5 route to the
        previous hop). With `keep_longer` an unchanged path keeps a longer remaining
        lifetime. Returns (route, changed): changed means the route is new, was invalid, or
        its next hop, interface or prefix moved (the kernel was told; the caller flushes
        what waited for it).
        """
        r = self._routes.get(dst)
        expires = now + lifetime_s
        if r is None:
            r = self.put(Route(dst=dst, next_hop=next_hop, iface=iface, hop_count=hop_count,
                               seq=seq, valid_seq=valid_seq, expires=expires,
                               prefix_len=prefix_len))
            changed = True
        else:
            changed = (not r.valid or r.next_hop != next_hop or r.iface != iface
                       or r.prefix_len != prefix_len)
            if keep_longer and r.valid and r.next_hop == next_hop:
                expires = max(expires, r.expires)
            r.next_hop, r.iface, r.hop_count, r.prefix_len = next_hop, iface, hop_count, prefix_len
            if valid_seq:
                r.seq, r.valid_seq = seq, True
            r.expires = expires
            r.state = RouteState.VALID
        if changed:
            self.mirror(r)
        return r, changed

    def mirror(self, r: Route) -> bool:
        """(Re)install a valid route into the kernel; True if the kernel took it."""
        if self.kernel is not None and self.kernel.install(r):
            self.counters["routes_installed"] += 1
            return True
        return False

    def invalidate(self, r: Route, now: float, delete_period_s: float,
                   bump_seq: bool = True) -> bool:
        """RFC 3561 6.11: mark a valid route invalid, keep it DELETE_PERIOD, take it out of
        the kernel; with `bump_seq` a known seqno goes up by one. False if already invalid."""
        if not r.valid:
            return False
        r.state = RouteState.INVALID
        if bump_seq and r.valid_seq:
            r.seq = seqnum.increment(r.seq)
        r.expires = now + delete_period_s
        if self.kernel is not None:
            self.kernel.remove(r.dst, r.prefix_len)
        return True

    def extend(self, r: Route, until: float) -> None:
        """RFC 3561 6.2: a used or confirmed route lives at least until `until` (monotonic s);
        a longer remaining lifetime is kept."""
        r.expires = max(r.expires, until)

    def learn_seq(self, r: Route, seq: int) -> None:
        """Take `seq` as the route's destination seqno (RFC 6.11 RERR, claim 32 binding)."""
        r.seq, r.valid_seq = seq, True

    def set_weight(self, r: Route, weight: int | None) -> None:
        """Claims 65-66: weight sum from the route's destination (a RREQ originator) to us."""
        r.weight = weight

    def touch(self, r: Route, now: float) -> None:
        """Datagrams used the route at `now` (active peers, refresh of claim 69)."""
        r.last_used = now

    def add_precursor(self, r: Route, addr: str) -> bool:
        """RFC 3561 6.2: remember a neighbour to tell when this route breaks, at most
        max_precursors of them (precursors are neighbours; a longer list is a flood).
        False (and counted as precursors_refused) if refused."""
        if addr in r.precursors or len(r.precursors) < self.max_precursors:
            r.precursors.add(addr)
            return True
        self.counters["precursors_refused"] += 1
        return False

    def clear_precursors(self, r: Route) -> None:
        """The precursors were told (RERR sent, RFC 6.11): forget them."""
        r.precursors.clear()

    def expire(self, now: float, delete_period_s: float) -> list[Route]:
        """RFC 3561 6.11: valid routes past their lifetime become invalid (counted as
        routes_expired), invalid ones past DELETE_PERIOD are deleted. Returns the routes
        just invalidated."""
        gone = []
        for r in self.expired(now):
            if r.valid:
                self.counters["routes_expired"] += 1
                self.invalidate(r, now, delete_period_s, bump_seq=False)
                gone.append(r)
            else:
                self.remove(r.dst)
        return gone

    # ------------------------------------------------------------------ readers
    def make_room(self, keys: list[str], limit: int) -> bool:
        """True if routes for all keys fit within limit entries (issue 11 section 4).

        Keys already present need no room. Invalid routes (kept only for DELETE_PERIOD,
        RFC 3561 6.11) are given up first, earliest expiry first; valid routes never are.
        """
        new = {k for k in keys if k not in self._routes}
        excess = len(self._routes) + len(new) - limit
        if excess <= 0:
            return True
        stale = sorted((r for r in self._routes.values() if not r.valid), key=lambda r: r.expires)
        for r in stale[:excess]:
            del self._routes[r.dst]
        return len(self._routes) + len(new) <= limit

    def lookup(self, addr: str, only_valid: bool = True) -> Route | None:
        """Longest-prefix match over host and prefix routes (prefix RREPs, RFC 5.2)."""
        r = self._routes.get(addr)
        if r is not None and r.prefix_len == 32 and (r.valid or not only_valid):
            return r
        ip = ipaddress.IPv4Address(addr)
        best: Route | None = None
        for cand in self._routes.values():
            if cand.prefix_len == 32 or (only_valid and not cand.valid):
                continue
            if ip in cand.network and (best is None or cand.prefix_len > best.prefix_len):
                best = cand
        return best

    def via(self, next_hop: str) -> list[Route]:
        """Valid routes whose next hop is next_hop (what a broken link takes down)."""
        return [r for r in self._routes.values() if r.valid and r.next_hop == next_hop]

    def on_iface(self, iface: str) -> list[Route]:
        return [r for r in self._routes.values() if r.valid and r.iface == iface]

    def expired(self, now: float) -> list[Route]:
        return [r for r in self._routes.values() if r.expires <= now]
