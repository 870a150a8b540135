"""The UDP probe's resolution (issue 14): an outage shorter than 50 ms shows as a gap.

A real echo server on loopback that stops answering for OUTAGE_S; the probe's stream every
5 ms must record one gap of about that length with the lost sequence numbers, and the old
setting (10 ms stream, gaps over 5 intervals only) must miss the same outage.
"""
from __future__ import annotations

import socket
import threading
import time

from testbed.mip.probe import Client

OUTAGE_S = 0.025


def _echo_with_outage(stop: threading.Event) -> tuple[int, threading.Event]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.05)
    mute = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(2048)
            except OSError:
                continue
            if not mute.is_set():
                s.sendto(data, peer)
        s.close()
    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1], mute


def _run(interval: float, gap_s: float | None) -> tuple[Client, float, float]:
    """The client's status after a run with one outage; (client, outage start, outage end)."""
    stop = threading.Event()
    port, mute = _echo_with_outage(stop)
    c = Client("127.0.0.1", port, None, interval, udp=True, gap_s=gap_s)
    threading.Thread(target=c.run, daemon=True).start()
    time.sleep(0.3)
    mute.set()
    t0 = time.time()
    time.sleep(OUTAGE_S)
    mute.clear()
    t1 = time.time()
    time.sleep(0.3)
    stop.set()
    return c, t0, t1


def _over(gaps, t0: float, t1: float) -> list[tuple[float, float]]:
    """The recorded gaps that span the outage."""
    return [(a, b) for a, b in gaps if a <= t0 + 0.002 and b >= t1 - 0.002]


def test_fine_stream_measures_a_25ms_outage():
    c, t0, t1 = _run(0.005, 0.010)
    st = c.status()
    over = _over(st["gaps"], t0, t1)
    assert len(over) == 1, (st["gaps"], t0, t1)
    gap_ms = (over[0][1] - over[0][0]) * 1000
    # the outage plus at most one interval, and some slack for a loaded machine
    assert (t1 - t0) * 1000 - 1 <= gap_ms <= (t1 - t0) * 1000 + 25, gap_ms
    detail = [d for d in st["gap_detail"] if (d["start"], d["end"]) == over[0]]
    assert detail and detail[0]["lost"] >= 3 and detail[0]["seq_after"] > detail[0]["seq_before"]


def test_old_setting_misses_the_same_outage():
    # 10 ms stream, gaps over 5 intervals (50 ms) only: a 25 ms outage leaves no record
    c, t0, t1 = _run(0.010, None)
    assert _over(c.status()["gaps"], t0, t1) == []
