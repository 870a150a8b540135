"""Counting the frames of a pcap that match a Wireshark display filter (the ``pcap`` check).

tshark applies the filter with Wireshark's own dissectors (``-Y``, two passes so that
reassembled protocols count), and prints one line per matching frame. A filter tshark
refuses is the check's failure with tshark's message, never a count of zero.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class PcapError(RuntimeError):
    """tshark is missing, refuses the filter or cannot read the file; the message says which."""


def count_frames(pcap: Path, display_filter: str, timeout_s: float = 120) -> int:
    """Frames of ``pcap`` that match ``display_filter``.

    A capture still being written may end in a cut-short frame; tshark then says so and
    the frames before it count. Raises PcapError (tshark missing, a bad filter, no file)."""
    exe = shutil.which("tshark")
    if exe is None:
        raise PcapError("tshark is not installed (apt-get install tshark; tools/setup.sh does it)")
    if not Path(pcap).is_file():
        raise PcapError(f"no capture {pcap}")
    r = subprocess.run([exe, "-n", "-2", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True, timeout=timeout_s)
    if r.returncode != 0 and "cut short in the middle of a packet" not in r.stderr:
        err = r.stderr.strip().splitlines()
        raise PcapError(f"tshark refuses filter {display_filter!r} on {Path(pcap).name}: {' | '.join(err[-3:])}")
    return sum(1 for line in r.stdout.splitlines() if line.strip())
