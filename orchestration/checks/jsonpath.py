"""A small JSON path for status files: ``a.b[0].c``, ``rows[initiator_private=10.0.0.5].packets``,
``rows[*].installed``, ``realms.A.sas`` (dots inside a key: ``"tunnels['198.51.100.2']"``).

Segments: ``name`` (a key), ``[N]`` (list index, negative from the end), ``[*]`` (every
element: the result becomes a list), ``[key=value]`` (the first element whose ``key``, as
text, equals ``value``), ``['key']`` (a key with dots or brackets in it). A path that does
not resolve yields MISSING, never an exception.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

MISSING = object()
_SEG = re.compile(r"""\.?([^.\[\]]+)|\[\s*(-?\d+)\s*\]|\[\s*\*\s*\]|\[\s*([^=\]'"]+?)\s*=\s*([^\]]*?)\s*\]|\[\s*['"]([^'"]+)['"]\s*\]""")


@lru_cache(maxsize=512)
def parse_path(path: str) -> tuple[tuple[str, Any], ...]:
    """``path`` as segments (("key", k) | ("index", n) | ("all", None) | ("select", (k, v))).

    Raises ValueError naming the position that is not a segment."""
    out: list[tuple[str, Any]] = []
    pos = 0
    path = path.strip()
    if not path:
        raise ValueError("an empty JSON path; give e.g. filter.rows[0].packets")
    while pos < len(path):
        m = _SEG.match(path, pos)
        if not m or m.end() == pos:
            raise ValueError(f"JSON path {path!r}: cannot read {path[pos:]!r} (segments: key, [N], [*], [key=value], ['key'])")
        if m.group(1) is not None:
            out.append(("key", m.group(1)))
        elif m.group(2) is not None:
            out.append(("index", int(m.group(2))))
        elif m.group(3) is not None:
            out.append(("select", (m.group(3), m.group(4).strip("'\""))))
        elif m.group(5) is not None:
            out.append(("key", m.group(5)))
        else:
            out.append(("all", None))
        pos = m.end()
    return tuple(out)


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _step(doc: Any, seg: tuple[str, Any]) -> Any:
    kind, arg = seg
    if kind == "key":
        return doc.get(arg, MISSING) if isinstance(doc, dict) else MISSING
    if kind == "index":
        return doc[arg] if isinstance(doc, list) and -len(doc) <= arg < len(doc) else MISSING
    if kind == "select":
        k, want = arg
        if isinstance(doc, list):
            for el in doc:
                if isinstance(el, dict) and k in el and _text(el[k]) == want:
                    return el
        return MISSING
    return MISSING


def lookup(doc: Any, path: str) -> Any:
    """The value at ``path`` in ``doc`` (a parsed JSON document), or MISSING. After a
    ``[*]`` the rest of the path applies to every element and the result is the list of
    the values found (elements where it does not resolve are left out)."""
    return _walk(doc, parse_path(path))


def parent_exists(doc: Any, path: str) -> bool:
    """True when everything of ``path`` but its last step resolves in ``doc``: a value can
    only be judged absent where its container is there (a misspelt key is no absence)."""
    segs = parse_path(path)
    return len(segs) <= 1 or _walk(doc, segs[:-1]) is not MISSING


def _walk(doc: Any, segs: tuple[tuple[str, Any], ...]) -> Any:
    for i, seg in enumerate(segs):
        if seg[0] == "all":
            items = list(doc.values()) if isinstance(doc, dict) else doc if isinstance(doc, list) else None
            if items is None:
                return MISSING
            found = [_walk(el, segs[i + 1:]) for el in items]
            return [v for v in found if v is not MISSING]
        doc = _step(doc, seg)
        if doc is MISSING:
            return MISSING
    return doc
