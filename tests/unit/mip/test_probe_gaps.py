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


def _run(interval: float, gap_s: float | None) -> Client:
    stop = threading.Event()
    port, mute = _echo_with_outage(stop)
    c = Client("127.0.0.1", port, None, interval, udp=True, gap_s=gap_s)
    threading.Thread(target=c.run, daemon=True).start()
    time.sleep(0.3)
    mute.set()
    time.sleep(OUTAGE_S)
    mute.clear()
    time.sleep(0.3)
    stop.set()
    return c


def test_fine_stream_measures_a_25ms_outage():
    c = _run(0.005, 0.010)
    st = c.status()
    long_gaps = [(b - a) * 1000 for a, b in st["gaps"] if (b - a) * 1000 > 15]
    assert len(long_gaps) == 1, st["gaps"]
    # the gap covers the outage and at most one interval more (+ scheduling slack of a loaded box)
    assert OUTAGE_S * 1000 - 1 <= long_gaps[0] <= OUTAGE_S * 1000 + 20
    detail = [d for d in st["gap_detail"] if (d["end"] - d["start"]) * 1000 > 15]
    assert detail and detail[0]["lost"] >= 4 and detail[0]["seq_after"] > detail[0]["seq_before"]


def test_old_setting_misses_the_same_outage():
    # 10 ms stream, gaps over 5 intervals (50 ms) only: a 25 ms outage leaves no record
    c = _run(0.010, None)
    assert [g for g in c.status()["gaps"] if (g[1] - g[0]) * 1000 > 15] == []
