"""Reading one counter of a node: a number in an agent's status file, a named nftables
counter, or a kernel SNMP counter of /proc/net/snmp (the ``counter`` check's sources).

Each reader returns an int, or None when the counter is not there (yet): an agent that has
not written its status, a filter row not installed, a table not loaded.
"""
from __future__ import annotations

import json
from typing import Any

from .jsonpath import MISSING, lookup
from .status import Execs, read_json


def status_counter(lab: Execs, node: str, path_in_node: str, json_path: str) -> int | None:
    """The number at ``json_path`` in the JSON file ``path_in_node`` on ``node``; a list
    (after ``[*]``) is summed. None when missing or not a number."""
    doc = read_json(lab, node, path_in_node)
    v = MISSING if doc is None else lookup(doc, json_path)
    return _as_int(v)


def _as_int(v: Any) -> int | None:
    if isinstance(v, list):
        vals = [_as_int(x) for x in v]
        return None if not vals or any(x is None for x in vals) else sum(x for x in vals if x is not None)
    if isinstance(v, bool) or v is MISSING or v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def nft_counter(lab: Execs, node: str, spec: str, field: str = "packets") -> int | None:
    """``field`` (packets or bytes) of the named counter ``spec`` ('FAMILY TABLE NAME')
    as ``nft -j list counter`` reports it on ``node``; None if there is no such counter."""
    family, table, name = spec.split()
    r = lab.exec(node, f"nft -j list counter {family} {table} {name}", timeout=15)
    if not r.ok:
        return None
    return parse_nft_counter(r.stdout, field)


def parse_nft_counter(text: str, field: str = "packets") -> int | None:
    """``field`` of the first counter object in ``nft -j`` output; None if there is none."""
    try:
        items = json.loads(text).get("nftables", [])
    except (ValueError, AttributeError):
        return None
    for it in items:
        if isinstance(it, dict) and isinstance(it.get("counter"), dict):
            return _as_int(it["counter"].get(field, MISSING))
    return None


def parse_snmp(text: str, key: str) -> int | None:
    """``key`` ('Icmp.InEchos') in the text of /proc/net/snmp: each protocol has a header
    line and a value line; None when the protocol or name is not there."""
    proto, _, name = key.partition(".")
    lines = [line.split() for line in text.splitlines() if line.startswith(proto + ":")]
    if len(lines) < 2 or name not in lines[0]:
        return None
    i = lines[0].index(name)
    return _as_int(lines[1][i]) if i < len(lines[1]) else None


def snmp_counter(lab: Execs, node: str, key: str) -> int | None:
    """A kernel counter of ``node``'s network namespace, e.g. Icmp.InEchos (echo requests
    received) or Ip.ForwDatagrams."""
    r = lab.exec(node, "cat /proc/net/snmp", timeout=15)
    return parse_snmp(r.stdout, key) if r.ok else None
