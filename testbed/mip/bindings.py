"""The home agent's mobility binding table and the foreign agent's visitor list.

Why two plain tables with an injected clock: every decision about lifetimes (grant,
renew, expire, deregister) is made here and can be tested without sockets or time passing.

The visitor list is keyed by (home agent address, home address): the FA is shared by home
agents whose private realms overlap (claim 18), so the home address alone is ambiguous.
Each entry also remembers the link (interface, MAC address) the registration came from,
because delivery to a visitor must be by link layer, never by ARP for its home address.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

Clock = Callable[[], float]


@dataclass
class Binding:
    home: str
    coa: str
    lifetime: int          # granted, seconds
    ident: int
    registered_at: float
    expires_at: float
    flags: int = 0
    source: str = ""       # IP source of the request (FA address or CCoA)
    renewals: int = 0

    def remaining(self, now: float) -> float:
        return max(0.0, self.expires_at - now)


class BindingTable:
    """home address -> Binding (one binding per MN: no simultaneous bindings)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.bindings: dict[str, Binding] = {}

    def update(self, home: str, coa: str, lifetime: int, ident: int, flags: int = 0,
               source: str = "") -> tuple[Binding, Binding | None]:
        """Add or renew; returns (new binding, previous binding or None)."""
        now = self.clock()
        old = self.bindings.get(home)
        b = Binding(home=home, coa=coa, lifetime=lifetime, ident=ident, registered_at=now,
                    expires_at=now + lifetime, flags=flags, source=source,
                    renewals=(old.renewals + 1) if old and old.coa == coa else 0)
        self.bindings[home] = b
        return b, old

    def remove(self, home: str) -> Binding | None:
        return self.bindings.pop(home, None)

    def get(self, home: str) -> Binding | None:
        b = self.bindings.get(home)
        if b and b.expires_at <= self.clock():
            return None
        return b

    def expire(self) -> list[Binding]:
        """Remove and return bindings whose lifetime ran out."""
        now = self.clock()
        gone = [b for b in self.bindings.values() if b.expires_at <= now]
        for b in gone:
            del self.bindings[b.home]
        return gone

    def users_of(self, coa: str) -> list[str]:
        return [h for h, b in self.bindings.items() if b.coa == coa]

    def status(self) -> dict:
        now = self.clock()
        return {h: {**asdict(b), "remaining": round(b.remaining(now), 1)}
                for h, b in self.bindings.items()}


@dataclass
class Visitor:
    home: str
    ha: str
    ifname: str
    mac: str
    src_port: int
    lifetime: int
    expires_at: float
    ident: int
    reverse_tunnel: bool
    packets_delivered: int = 0
    packets_reverse_tunnelled: int = 0


@dataclass
class Pending:
    """A request relayed to the HA and waiting for the reply."""
    home: str
    ha: str
    ifname: str
    mac: str
    src_port: int
    ident: int
    lifetime: int
    flags: int
    sent_at: float


VisitorKey = tuple[str, str]  # (home agent address, home address)


@dataclass
class VisitorList:
    clock: Clock = time.monotonic
    visitors: dict[VisitorKey, Visitor] = field(default_factory=dict)
    pending: dict[tuple[str, str, int], Pending] = field(default_factory=dict)

    def add_pending(self, p: Pending) -> None:
        self.pending[(p.ha, p.home, p.ident & 0xFFFFFFFF)] = p

    def take_pending(self, ha: str, home: str, ident: int) -> Pending | None:
        """The pending request a reply answers (low 32 bits of the identification match)."""
        return self.pending.pop((ha, home, ident & 0xFFFFFFFF), None)

    def expire_pending(self, timeout: float) -> list[Pending]:
        now = self.clock()
        gone = [k for k, p in self.pending.items() if now - p.sent_at > timeout]
        return [self.pending.pop(k) for k in gone]

    def accept(self, p: Pending, lifetime: int, reverse_tunnel: bool) -> Visitor | None:
        """Enter (or renew) the visitor for an accepted reply; lifetime 0 removes it."""
        key = (p.ha, p.home)
        if lifetime == 0:
            self.visitors.pop(key, None)
            return None
        v = Visitor(home=p.home, ha=p.ha, ifname=p.ifname, mac=p.mac, src_port=p.src_port,
                    lifetime=lifetime, expires_at=self.clock() + lifetime, ident=p.ident,
                    reverse_tunnel=reverse_tunnel)
        old = self.visitors.get(key)
        if old is not None:
            v.packets_delivered = old.packets_delivered
            v.packets_reverse_tunnelled = old.packets_reverse_tunnelled
        self.visitors[key] = v
        return v

    def get(self, ha: str, home: str) -> Visitor | None:
        v = self.visitors.get((ha, home))
        if v and v.expires_at <= self.clock():
            return None
        return v

    def by_link(self, ifname: str, mac: str, home: str) -> Visitor | None:
        """The visitor that sent a frame (interface, source MAC, source IP)."""
        now = self.clock()
        for v in self.visitors.values():
            if v.home == home and v.mac == mac and v.ifname == ifname and v.expires_at > now:
                return v
        return None

    def expire(self) -> list[Visitor]:
        now = self.clock()
        gone = [k for k, v in self.visitors.items() if v.expires_at <= now]
        return [self.visitors.pop(k) for k in gone]

    def status(self) -> list[dict]:
        now = self.clock()
        return [{**asdict(v), "remaining": round(max(0.0, v.expires_at - now), 1)}
                for v in self.visitors.values()]
