"""A scenario's pcaps as evidence: what Wireshark's own dissectors make of them.

Every protocol of the testbed runs on its registered port (AODV UDP 654, RFC 3561 section
10; Mobile IP UDP 434, RFC 5944 section 3.3; DIAMETER TCP/SCTP 3868, RFC 6733 section 2.1;
DHCP UDP 67/68; IKE UDP 500/4500, RFC 7296 section 2), so tshark decodes them without
being told a port. ``decode`` reads a pcap with tshark and says which protocols it found
and which frames it marked malformed (``_ws.malformed``: a dissector ran past the data or
found a field it could not take) or flagged with an error-level expert mark
(``_ws.expert.severity`` >= PI_ERROR, e.g. DHCP's "End option missing", which is not
malformed). ``count`` answers a display-filter question (e.g. AODV on UDP 654).
"""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# tshark's name of each protocol (its filter name), as the scenarios list them.
TSHARK_NAMES = {"aodv": "aodv", "mip": "mip", "diameter": "diameter", "dhcp": "dhcp", "isakmp": "isakmp"}
# Each protocol's registered port(s), as a display filter (sources in the module docstring).
REGISTERED_PORTS = {"aodv": "udp.port == 654", "mip": "udp.port == 434",
                    "diameter": "tcp.port == 3868 || sctp.port == 3868",
                    "dhcp": "udp.port == 67 || udp.port == 68",
                    "isakmp": "udp.port == 500 || udp.port == 4500"}
# Wireshark's expert severities (epan/proto.h): PI_CHAT 0x00200000, PI_NOTE 0x00400000,
# PI_WARN 0x00600000, PI_ERROR 0x00800000.
PI_ERROR = 0x00800000


class EvidenceError(RuntimeError):
    """tshark is missing or cannot read the pcap; the message says which and how to fix it."""


@dataclass
class Decoded:
    """What tshark made of one pcap: ``frames`` in total, frames per protocol (by tshark's
    filter name, e.g. ``aodv``), the malformed ones as "frame N: protocols | info" and
    those with an error-level expert mark as "frame N: protocols | expert messages"."""

    path: Path
    frames: int = 0
    protocols: Counter[str] = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def tshark(args: list[str], timeout_s: float) -> str:
    """tshark's stdout for ``args`` (numeric addresses, default dissectors and ports).

    Raises EvidenceError if tshark is not installed or fails."""
    exe = shutil.which("tshark")
    if exe is None:
        raise EvidenceError("tshark is not installed (apt-get install tshark; tools/setup.sh does it)")
    r = subprocess.run([exe, "-n", *args], capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0:
        raise EvidenceError(f"tshark {' '.join(args)}: {r.stderr.strip()[-300:]}")
    return r.stdout


def decode(pcap: Path, timeout_s: float = 120) -> Decoded:
    """Run tshark over ``pcap`` (two-pass, default dissectors and ports only).

    Raises EvidenceError if tshark is not installed or fails on the file."""
    text = tshark(["-2", "-r", str(pcap), "-T", "fields", "-E", "separator=\t", "-E", "aggregator=|",
                   "-e", "frame.number", "-e", "frame.protocols", "-e", "_ws.malformed",
                   "-e", "_ws.expert.severity", "-e", "_ws.expert.message", "-e", "_ws.col.Info"], timeout_s)
    out = Decoded(Path(pcap))
    for line in text.splitlines():
        num, protos, bad, sev, msgs, info = (line.split("\t") + [""] * 6)[:6]
        out.frames += 1
        layers = protos.split(":")
        for p in set(layers):
            out.protocols[p] += 1
        if bad or "_ws.malformed" in layers or "malformed" in layers:
            out.malformed.append(f"frame {num}: {protos} | {info}")
        if any(s.strip().isdigit() and int(s) >= PI_ERROR for s in sev.split("|")):
            out.errors.append(f"frame {num}: {protos} | {msgs}")
    return out


def count(pcap: Path, display_filter: str, timeout_s: float = 120) -> int:
    """Frames of ``pcap`` matching a Wireshark display filter (e.g. ``aodv && udp.port == 654``).

    Raises EvidenceError if tshark is missing, cannot read the file or refuses the filter."""
    return len(tshark(["-2", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
                      timeout_s).splitlines())


def judge(decoded: list[Decoded], expected: list[str]) -> list[tuple[str, bool, str]]:
    """Checks from decoded pcaps: no frame is malformed, none carries an error-level expert
    mark, and each ``expected`` protocol (keys of TSHARK_NAMES) was decoded in at least one
    of them. Returns (name, passed, detail)."""
    checks = []
    frames = sum(d.frames for d in decoded)
    for what, attr in (("a malformed frame", "malformed"), ("an error-level expert mark", "errors")):
        bad = [f"{d.path.name}: {m}" for d in decoded for m in getattr(d, attr)]
        checks.append((f"tshark decodes the {len(decoded)} pcaps without {what}",
                       bool(decoded) and not bad,
                       "; ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "") if bad
                       else f"{frames} frames"))
    for name in expected:
        proto = TSHARK_NAMES[name]
        n = sum(d.protocols.get(proto, 0) for d in decoded)
        checks.append((f"tshark's own dissector decodes {name} in the pcaps (registered port)", n > 0,
                       f"{n} frames" + ("" if n else "; decoded: " + ", ".join(sorted(
                           {p for d in decoded for p in d.protocols} - {"eth", "ethertype", "ip", "frame"})))))
    return checks


def port_census(pcaps: list[Path], name: str) -> tuple[int, int]:
    """(frames decoded as protocol ``name``, those of them on its registered port) over
    ``pcaps``; ``name`` is a key of TSHARK_NAMES. Raises EvidenceError like ``count``."""
    proto = TSHARK_NAMES[name]
    return (sum(count(p, proto) for p in pcaps),
            sum(count(p, f"{proto} && ({REGISTERED_PORTS[name]})") for p in pcaps))
