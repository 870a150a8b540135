"""Leakage with equal addresses: who answers a ping to 10.0.0.10?

Every M-VPN has a host at 10.0.0.10. A ping from a2 (M-VPN A) must be answered by a1 and
must never reach b1 or c1; the kernel's ICMP InEchos counters of all three tell which
host saw the requests, so the check cannot pass by accident of a lost reply.
"""
from __future__ import annotations

import re

from orchestration.checks.counter import snmp_counter

COUNT = 5


def in_echos(ctx, node: str) -> int:
    n = snmp_counter(ctx.lab, node, "Icmp.InEchos")
    if n is None:
        raise RuntimeError(f"{node}: no Icmp InEchos in /proc/net/snmp")
    return n


def run(ctx) -> None:
    for sender, own, others in (("a2", "a1", ("b1", "c1")), ("b2", "b1", ("a1", "c1")), ("c2", "c1", ("a1", "b1"))):
        before = {n: in_echos(ctx, n) for n in (own, *others)}
        r = ctx.lab.exec(sender, f"ping -c{COUNT} -i0.2 -W1 10.0.0.10")
        got = int(m.group(1)) if (m := re.search(r"(\d+) received", r.stdout)) else 0
        after = {n: in_echos(ctx, n) for n in (own, *others)}
        delta = {n: after[n] - before[n] for n in after}
        ctx.check(f"{sender}'s pings to 10.0.0.10 reach only {own}",
                  got == COUNT and delta[own] == COUNT and all(delta[o] == 0 for o in others),
                  f"replies {got}/{COUNT}; echo requests seen: " + ", ".join(f"{n} {d}" for n, d in delta.items()))
    ctx.metric("nodes", len(ctx.lab.nodes))
