"""Reachability probes (the ``reach`` check): who reaches whom, by ICMP echo or TCP connect.

A target is a node name (its first address in the topology), NODE@ADDRESS, or an address.
``probe`` runs one probe from a node and classifies it: ``reach`` (every echo answered /
connected), ``blocked`` (echoes left the node and none came back / the connection timed
out or was refused) or ``error`` (the probe could not run: no route, a typo, no python).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from .status import Execs

TCP_PROBE = r'''
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("oserror", e.errno, e.strerror)
'''


@dataclass
class Probe:
    """One probe's outcome: ``result`` reach | blocked | error, and what showed it."""

    src: str
    target: str
    address: str
    result: str
    detail: str


def node_address(topology: Any, node: str) -> str | None:
    """The first IPv4 address of ``node`` in a low-level topology (a link declared on the
    node, else the node's end of a point-to-point link declared on its peer); None if none."""
    nd = topology.nodes.get(node) if topology is not None else None
    if nd is None:
        return None
    for link in nd.links:
        if link.address is not None:
            return str(link.address.ip)
    for other in topology.nodes.values():
        for link in other.links:
            if getattr(link, "peer", None) == node and link.peer_address is not None:
                return str(link.peer_address.ip)
    return None


def resolve(topology: Any, target: str) -> str:
    """The address a target names. Raises ValueError with the fix when it names none."""
    name, _, addr = target.partition("@")
    for a in (addr, name):
        try:
            if a:
                return str(ipaddress.IPv4Address(a))
        except ValueError:
            pass
    if addr:
        raise ValueError(f"{target!r}: {addr!r} is not an IPv4 address")
    found = node_address(topology, name)
    if found is None:
        raise ValueError(f"target {target!r}: no node {name!r} with an address in the topology; "
                         "give NODE@ADDRESS or an address")
    return found


_PING = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


def classify_ping(exit_code: int, out: str, count: int) -> tuple[str, str]:
    """(result, detail) of ``ping -c COUNT``'s output: reach when all COUNT echoes came back,
    blocked when COUNT left and none came back, error otherwise (no route, bad address)."""
    m = _PING.search(out)
    if not m:
        tail = " | ".join(out.strip().splitlines()[-2:]) or f"exit {exit_code}"
        return "error", f"no echo request left: {tail}"
    tx, rx = int(m.group(1)), int(m.group(2))
    if rx == tx == count:
        return "reach", f"{rx}/{tx} answered"
    if rx == 0 and tx == count:
        errs = re.search(r"\+(\d+) errors", out)
        return "blocked", f"0/{tx} answered" + (f" ({errs.group(1)} ICMP errors)" if errs else "")
    return "partial", f"{rx}/{tx} answered"


def classify_tcp(exit_code: int, out: str) -> tuple[str, str]:
    """(result, detail) of TCP_PROBE's output: reach when connected, blocked when nothing
    came back (timeout, ICMP host unreachable), ``refused`` when the target answered with a
    reset: a closed port is no proof of a filter, so it passes neither expectation."""
    words = out.strip().split()
    if not words:
        return "error", f"the TCP probe printed nothing (exit {exit_code})"
    if words[0] == "connected":
        return "reach", "connected"
    if words[0] == "timeout":
        return "blocked", "timeout"
    if words[0] == "refused":
        return "refused", "refused: the target answered with a reset (closed port?); not blocked"
    return "blocked" if words[0] == "oserror" and len(words) > 1 and words[1] == "113" else "error", " ".join(words)


def probe(lab: Execs, src: str, address: str, how: str = "ping", port: int | None = None, count: int = 3,
          timeout_s: float = 30) -> tuple[str, str]:
    """One probe from ``src`` to ``address``; (result, detail) as classify_ping/classify_tcp say."""
    if how == "ping":
        r = lab.exec(src, f"ping -n -c{count} -i0.3 -W1 {address}", timeout=timeout_s)
        return classify_ping(r.exit_code, r.stdout + r.stderr, count)
    r = lab.exec(src, f"python3 -c '{TCP_PROBE}' {address} {port} 2", timeout=timeout_s)
    return classify_tcp(r.exit_code, r.stdout + r.stderr)
