"""Which neighbours get a RREQ: plain broadcast, or the weighted choice of claims 63-66.

Kept apart from the agent so the selection rule can be unit-tested on its own.
A hop's weight is set administratively on the router that sends over it. The RREQ carries
(in a WEIGHT extension) the sum of weights from its originator to the receiver; a router
offers the request only to the candidate neighbours whose summed weight from the
originator (sum so far + weight of the hop to them) is lowest: the `fanout` lowest ones
and every neighbour tied with the last of them.
"""
from __future__ import annotations

from .messages import saturating_add


def hop_weight(weights: dict[str, int], default: int, neighbour: str) -> int:
    return weights.get(neighbour, default)


def select_candidates(
    neighbours: list[str],
    weights: dict[str, int],
    default_weight: int,
    sum_so_far: int,
    exclude: set[str],
    fanout: int,
    destination: str | None = None,
) -> list[tuple[str, int]]:
    """Return [(neighbour, summed weight at that neighbour)] to unicast the RREQ to.

    Sums are held at 2**32 - 1, the width of the WEIGHT extension's field: a peer that
    sends the largest weight makes the path the most expensive, never unsendable.

    If the requested destination is itself a neighbour, only it is chosen: the request
    cannot do better than reaching its target.
    """
    cands = sorted(
        (saturating_add(sum_so_far, hop_weight(weights, default_weight, n)), n)
        for n in neighbours if n not in exclude
    )
    if destination is not None:
        for s, n in cands:
            if n == destination:
                return [(n, s)]
    if not cands:
        return []
    chosen = cands[:fanout]
    last = chosen[-1][0]
    chosen += [c for c in cands[fanout:] if c[0] == last]
    return [(n, s) for s, n in chosen]
