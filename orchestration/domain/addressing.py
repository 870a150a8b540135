"""Addresses the lab file leaves out, taken from each subnet in order, never twice.

One :class:`Pool` per subnet (a realm, the emulated Internet, an access network): the
addresses written in the file are reserved first, so a derived address never collides
with a given one; then ``take()`` hands out the lowest free host address and ``last()``
the highest (routers by convention). Realms of different M-VPNs have separate pools,
since they may overlap (claim 1).
"""
from __future__ import annotations

import ipaddress
from typing import Iterable


class PoolExhausted(ValueError):
    """No free host address is left in a subnet."""


class Pool:
    """Free host addresses of one IPv4 subnet (network and broadcast excluded)."""

    def __init__(self, subnet: ipaddress.IPv4Network, reserved: Iterable[ipaddress.IPv4Address] = ()):
        self.subnet = subnet
        self.used: set[ipaddress.IPv4Address] = {a for a in reserved if a in subnet}

    def reserve(self, addr: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
        """Mark ``addr`` used and return it (no check that it lies in the subnet or was free;
        ``take`` and ``last`` call it with a free host address).
        """
        self.used.add(addr)
        return addr

    def take(self) -> ipaddress.IPv4Address:
        """The lowest free host address. Raises PoolExhausted."""
        for a in self.subnet.hosts():
            if a not in self.used:
                return self.reserve(a)
        raise PoolExhausted(f"no free address left in {self.subnet}; use a larger subnet")

    def last(self) -> ipaddress.IPv4Address:
        """The highest free host address (routers). Raises PoolExhausted."""
        hosts = list(self.subnet.hosts())
        for a in reversed(hosts):
            if a not in self.used:
                return self.reserve(a)
        raise PoolExhausted(f"no free address left in {self.subnet}; use a larger subnet")

    def iface(self, addr: ipaddress.IPv4Address) -> ipaddress.IPv4Interface:
        """``addr`` with this subnet's prefix length, e.g. 10.0.0.5/24."""
        return ipaddress.IPv4Interface(f"{addr}/{self.subnet.prefixlen}")


def link_subnets(avoid: Iterable[ipaddress.IPv4Network], count: int,
                 within: ipaddress.IPv4Network = ipaddress.IPv4Network("172.16.0.0/12")) -> list[ipaddress.IPv4Network]:
    """``count`` /30 subnets for point-to-point links (backbone NAPT <-> SG), none
    overlapping ``avoid`` (the realms, the operator HA's 172.31.255.0/24). Raises PoolExhausted."""
    bad = list(avoid) + [ipaddress.IPv4Network("172.31.255.0/24")]
    out: list[ipaddress.IPv4Network] = []
    for block in within.subnets(new_prefix=24):
        if any(block.overlaps(b) for b in bad):
            continue
        out.append(next(block.subnets(new_prefix=30)))
        if len(out) == count:
            return out
    raise PoolExhausted(f"cannot find {count} link subnets in {within} outside the realms")
