"""Comparisons of the check kinds: one operator, an actual value, an expected value.

``compare(actual, op, expected)`` is the one place that decides ``==, !=, >=, <=, >, <,
in, not in, contains, exists, absent`` for status, pcap and counter checks; the detail
string it returns names what was found, so a failed check says why.
"""
from __future__ import annotations

import json
from typing import Any

from .jsonpath import MISSING

NUMERIC = (">=", "<=", ">", "<")


def show(v: Any) -> str:
    """A value as a short JSON-ish text for a check's detail (MISSING: 'nothing')."""
    if v is MISSING:
        return "nothing"
    t = json.dumps(v, default=str)
    return t if len(t) <= 120 else t[:117] + "..."


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b  # true is not 1 in a status file
    if a == b:
        return True
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return isinstance(a, str) != isinstance(b, str) and str(a) == str(b)


def compare(actual: Any, op: str, expected: Any = None) -> tuple[bool, str]:
    """Decide ``actual OP expected``; returns (passed, detail). ``actual`` may be
    jsonpath.MISSING (the value is not there): only ``absent`` and ``!=`` pass then.
    Numbers compare as numbers (``"3"`` >= 2 holds); a non-number under a numeric
    operator fails with a detail saying so. Raises ValueError for an unknown operator."""
    got = f"found {show(actual)}"
    if op == "exists":
        return actual is not MISSING, got
    if op == "absent":
        return actual is MISSING, got
    if actual is MISSING:
        return op == "!=", f"found nothing at the path (expected {op} {show(expected)})"
    if op == "==":
        return _equal(actual, expected), f"{got}, expected == {show(expected)}"
    if op == "!=":
        return not _equal(actual, expected), f"{got}, expected != {show(expected)}"
    if op in ("in", "not in"):
        inside = any(_equal(actual, e) for e in expected)
        return inside == (op == "in"), f"{got}, expected {op} {show(expected)}"
    if op == "contains":
        if isinstance(actual, (list, tuple)):
            ok = any(_equal(a, expected) for a in actual)
        elif isinstance(actual, dict):
            ok = str(expected) in actual
        else:
            ok = str(expected) in str(actual)
        return ok, f"{got}, expected it to contain {show(expected)}"
    if op in NUMERIC:
        a, b = _number(actual), _number(expected)
        if a is None or b is None:
            return False, f"{got}, not a number to compare {op} {show(expected)}"
        ok = {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]
        return ok, f"{got}, expected {op} {show(expected)}"
    raise ValueError(f"unknown operator {op!r}")
