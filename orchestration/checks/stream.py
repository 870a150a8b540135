"""A numbered UDP stream between two nodes, and what its receiver log says about loss,
gaps and delays (the ``continuity`` check; the AODV scenarios' handover measurements).

Node side (STREAM_PY, put into the node as STREAM): ``send DST PORT RATE SECONDS OUT
[STOPFILE]`` sends 64-byte datagrams carrying (seq, wall-clock send time) on a fixed
schedule; ``recv PORT SECONDS OUT [STOPFILE]`` logs every datagram as [seq, sent,
received]. Either ends after SECONDS or as soon as STOPFILE exists, and writes OUT then.
Containers share the host's clock, so one-way delays are real.
"""
from __future__ import annotations

import math
import shlex
import time
from typing import Any

from .status import Execs, read_json, wait_until

STREAM = "/usr/local/bin/tb_stream.py"
RUN_DIR = "/tmp"  # where the stream's results and stop files are, in the nodes

STREAM_PY = r'''
import json, os, socket, struct, sys, time
mode = sys.argv[1]
if mode == "send":
    dst, port, rate, secs, out = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    stop = sys.argv[7] if len(sys.argv) > 7 else None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.time(); n = 0; errors = 0
    while True:
        due = t0 + n / rate
        if due > t0 + secs or (stop and n % 10 == 0 and os.path.exists(stop)):
            break
        d = due - time.time()
        if d > 0:
            time.sleep(d)
        try:
            s.sendto(struct.pack("!Id", n, time.time()).ljust(64, b"x"), (dst, port))
        except OSError:
            errors += 1
        n += 1
    json.dump({"t0": t0, "rate": rate, "sent": n, "errors": errors}, open(out, "w"))
else:
    port, secs, out = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    stop = sys.argv[5] if len(sys.argv) > 5 else None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port)); s.settimeout(0.2)
    end = time.time() + secs; recs = []
    while time.time() < end and not (stop and os.path.exists(stop)):
        try:
            b = s.recv(2048)
        except socket.timeout:
            continue
        if len(b) >= 12:
            seq, sent = struct.unpack("!Id", b[:12])
            recs.append([seq, sent, time.time()])
    json.dump(recs, open(out, "w"))
'''


def install_stream(lab: Any, nodes: list[str]) -> None:
    """Put the stream program into each node (at STREAM)."""
    for n in nodes:
        lab.put_file(n, STREAM, STREAM_PY, mode=0o755)


def start_stream(lab: Any, src: str, dst_node: str, dst: str, port: int, rate: float, seconds: float, tag: str,
                 stop_file: str | None = None) -> None:
    """Start the receiver on ``dst_node`` (port ``port``) and, 0.5 s later, the sender on
    ``src`` to ``dst`` at ``rate`` datagrams/s for ``seconds``, or until stop_stream
    (``stop_file``.send in the sender, ``stop_file``.recv in the receiver: two names, so
    nodes that share a file system stop one after the other too).
    Results: RUN_DIR/send-<tag>.json, RUN_DIR/recv-<tag>.json."""
    send_stop = f" {shlex.quote(stop_file + '.send')}" if stop_file else ""
    recv_stop = f" {shlex.quote(stop_file + '.recv')}" if stop_file else ""
    lab.exec(dst_node, f"rm -f {RUN_DIR}/recv-{tag}.json {recv_stop}")
    lab.exec(src, f"rm -f {RUN_DIR}/send-{tag}.json {send_stop}")
    lab.spawn(dst_node, f"python3 {STREAM} recv {port} {seconds + 3} {RUN_DIR}/recv-{tag}.json{recv_stop}",
              log=f"stream-{tag}.log")
    time.sleep(0.5)
    lab.spawn(src, f"python3 {STREAM} send {dst} {port} {rate} {seconds} {RUN_DIR}/send-{tag}.json{send_stop}",
              log=f"stream-{tag}.log")


def stop_stream(lab: Execs, src: str, dst_node: str, stop_file: str, drain_s: float = 1.0) -> None:
    """End a stream started with ``stop_file``: the sender first, the receiver ``drain_s``
    later (datagrams in flight still count)."""
    lab.exec(src, f"touch {shlex.quote(stop_file + '.send')}")
    time.sleep(drain_s)
    lab.exec(dst_node, f"touch {shlex.quote(stop_file + '.recv')}")


def stream_result(lab: Execs, src: str, dst_node: str, tag: str, timeout: float = 30) -> tuple[dict, list[list[float]]]:
    """(sender summary, receiver records) once both have written them. Raises RuntimeError
    naming which side wrote nothing within ``timeout`` s."""
    def written(node: str, path: str) -> list[Any]:  # [] (no arrival) is a result; [doc] so it is true
        doc = read_json(lab, node, path)
        return [] if doc is None else [doc]

    got_sent = wait_until(lambda: written(src, f"{RUN_DIR}/send-{tag}.json"), timeout, 0.5)
    got_recs = wait_until(lambda: written(dst_node, f"{RUN_DIR}/recv-{tag}.json"), timeout, 0.5)
    sent, recs = (got_sent or [None])[0], (got_recs or [None])[0]
    if sent is None or recs is None:
        raise RuntimeError(f"stream {tag}: no result (sender {sent is not None}, receiver {recs is not None})")
    return sent, recs


def window(sent: dict, recs: list, start: float, end: float) -> dict:
    """Loss and interruption for the datagrams scheduled in [start, end) (wall clock, s).

    lost: scheduled there and never received. interruption_ms: the longest time the receiver
    got nothing of this window's datagrams, from the last one before the hole to the first
    after it (covers buffered-and-late datagrams too: delay counts as interruption)."""
    t0, rate = sent["t0"], sent["rate"]
    first = max(0, math.ceil((start - t0) * rate))
    last = min(sent["sent"], math.ceil((end - t0) * rate))  # exclusive
    want = set(range(first, last))
    got = sorted((r for r in recs if r[0] in want), key=lambda r: r[2])
    lost = len(want) - len({r[0] for r in got})
    # the receiver's view: arrival times, plus the window edges' nominal schedule
    times = [t0 + first / rate] + [r[2] for r in got] + [t0 + (last - 1) / rate]
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    late = sum(1 for r in got if r[2] - r[1] > 0.05)
    return {"sent": len(want), "lost": lost, "interruption_ms": round(gap * 1000, 1), "late_over_50ms": late,
            "max_delay_ms": round(max((r[2] - r[1] for r in got), default=0.0) * 1000, 1)}


def gaps(sent: dict, recs: list, threshold: float) -> list[dict]:
    """Every silence at the receiver longer than `threshold` s, from the first datagram's
    arrival (the first discovery, with the datagram buffered, is not a gap in a session)
    to the end of the stream's schedule."""
    t0, n, rate = sent["t0"], sent["sent"], sent["rate"]
    arr = sorted(r[2] for r in recs)
    if not arr:
        return [{"at_s": 0.0, "ms": round((n / rate) * 1000, 1)}]
    times = arr + [max(arr[-1], t0 + (n - 1) / rate)]
    return [{"at_s": round(a - t0, 2), "ms": round((b - a) * 1000, 1)}
            for a, b in zip(times, times[1:]) if b - a > threshold]


def session(sent: dict, recs: list) -> dict:
    """The stream as one session, from its first arrival (set-up time, e.g. a route
    discovery with the first datagrams buffered, is not a gap) to the end of the sender's
    schedule: ``{sent, received, lost, max_gap_ms, first_arrival_s}``. max_gap_ms is the
    longest silence at the receiver between arrivals (or from the last arrival to the last
    send); lost counts datagrams sent after the first one that arrived and never arrived
    themselves. No arrival at all: received 0 and max_gap_ms the whole stream."""
    if not recs:
        return {"sent": sent["sent"], "received": 0, "lost": sent["sent"],
                "max_gap_ms": round(sent["sent"] / sent["rate"] * 1000, 1), "first_arrival_s": None}
    t0, rate, n = sent["t0"], sent["rate"], sent["sent"]
    first_seq = min(r[0] for r in recs)
    w = window(sent, recs, t0 + first_seq / rate, t0 + n / rate)
    arrivals = sorted(r[2] for r in recs)
    times = arrivals + [max(arrivals[-1], t0 + (n - 1) / rate)]  # a silent tail up to the last send is a gap
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    return {"sent": w["sent"], "received": len({r[0] for r in recs}), "lost": w["lost"], "max_gap_ms": round(gap * 1000, 1),
            "first_arrival_s": round(arrivals[0] - t0, 3)}


__all__ = ["STREAM", "STREAM_PY", "install_stream", "start_stream", "stop_stream", "stream_result", "window", "gaps",
           "session"]
