"""Destination sequence numbers (RFC 3561 section 6.1).

Why a module of its own: every freshness decision in the agent (accept a route, answer a
RREQ as intermediate, the handover's "seqno plus one") goes through these few rules, and
rollover must be handled the same way everywhere: compare as signed 32-bit difference.
"""
from __future__ import annotations

MASK = 0xFFFFFFFF
UNKNOWN = 0  # "unknown sequence number" (RREQ U flag; never a valid own seqno)


def diff(a: int, b: int) -> int:
    """Signed 32-bit difference a - b: > 0 means a is fresher than b (rollover-safe)."""
    d = (a - b) & MASK
    return d - (1 << 32) if d & 0x80000000 else d


def newer(a: int, b: int) -> bool:
    """True if a is strictly fresher than b."""
    return diff(a, b) > 0


def newer_or_equal(a: int, b: int) -> bool:
    return diff(a, b) >= 0


def fresher(a: int, b: int) -> int:
    """The fresher of two seqnos."""
    return a if diff(a, b) >= 0 else b


def increment(a: int) -> int:
    """Next seqno; wraps 0xFFFFFFFF to 1 because 0 means unknown."""
    n = (a + 1) & MASK
    return n if n != UNKNOWN else 1
