"""The AODV route table (RFC 3561 sections 2, 6.1, 6.2).

Why not just the kernel table: AODV needs state the kernel has no place for (destination
seqno and its validity, precursors, per-route lifetime, invalid-but-remembered routes for
DELETE_PERIOD). The kernel only ever holds the *valid* subset; kernel.py mirrors it.

Times are time.monotonic() seconds.
"""
from __future__ import annotations

import dataclasses
import enum
import ipaddress
import time
from typing import Iterator

from . import seqnum


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

    def add_precursor(self, addr: str, limit: int) -> bool:
        """RFC 3561 6.2: remember a neighbour to tell when this route breaks, at most limit
        of them (precursors are neighbours; a longer list is a flood). False if refused."""
        if addr in self.precursors or len(self.precursors) < limit:
            self.precursors.add(addr)
            return True
        return False

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
    """Routes by destination address; one entry per (dst, prefix_len) keyed by dst."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

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
        self._routes[route.dst] = route
        return route

    def remove(self, dst: str) -> Route | None:
        return self._routes.pop(dst, None)

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
