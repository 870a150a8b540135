"""A long TCP session for roaming scenarios: does the same connection survive every move?

`python3 -m testbed.mip.probe server --port 5001` echoes whatever a client sends (TCP and UDP).
`python3 -m testbed.mip.probe client --dst H --port 5001 --bind 10.0.0.5 --out FILE`
connects ONCE (never reconnects: a reset is a failure to report, not to hide), sends a
16-byte record (sequence number, send time) every `--interval` seconds and records when
each echo comes back. Its status file has the echo receipt times bucketed per 100 ms
(wall clock, shared by all containers on one kernel), the largest gap between echoes and
the error that ended the session, if any - what a scenario needs for "interruption (ms)"
and the timeline picture. With `--udp` the client sends datagrams instead: their gaps
measure the data path's own outage, without TCP's retransmission back-off.

Resolution (issue 14: moves shorter than 50 ms must be measurable): the stream keeps its
schedule (send times are start + n * interval, not a sleep after each send, so Python's
jitter does not add up), and every gap between two echoes longer than `--gap-ms` is
recorded (default 5 intervals). With `--interval 0.005 --gap-ms 10` an outage of X ms
shows as a gap in [X, X + 5] ms. A UDP gap also names the sequence numbers around it
(`gap_detail`: how many datagrams of the stream were lost in it).
"""
from __future__ import annotations

import argparse
import socket
import struct
import sys
import threading
import time

from testbed.common.jsonfile import write_json_atomic as write_status

REC = struct.Struct("!Qd")


def serve(port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))

    def udp_echo() -> None:
        while True:
            data, peer = udp.recvfrom(2048)
            udp.sendto(data, peer)
    threading.Thread(target=udp_echo, daemon=True).start()

    def echo(c: socket.socket) -> None:
        with c:
            while data := c.recv(65536):
                c.sendall(data)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


class Client:
    def __init__(self, dst: str, port: int, bind: str | None, interval: float, udp: bool = False,
                 gap_s: float | None = None) -> None:
        """`interval` and `gap_s` in seconds; a gap between echoes longer than `gap_s`
        (default 5 intervals) is recorded."""
        self.dst, self.port, self.bind, self.interval, self.udp = dst, port, bind, interval, udp
        self.gap_s = gap_s if gap_s is not None else 5 * interval
        self.sent = 0
        self.echoed = 0
        self.error: str | None = None
        self.send_errors = 0
        self.local: str | None = None
        self.started = time.time()
        self.bins: dict[int, int] = {}
        self.last_echo: float | None = None
        self.max_gap = 0.0
        self.gaps: list[tuple[float, float]] = []   # (start, end) of gaps > gap_s
        self.gap_detail: list[dict] = []            # UDP: the sequence numbers around each gap
        self._last_seq: int | None = None

    def run(self) -> None:
        if self.udp:
            return self._run_udp()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.bind:
            s.bind((self.bind, 0))
        try:
            s.connect((self.dst, self.port))
        except OSError as exc:
            self.error = f"connect: {exc}"
            return
        self.local = "%s:%d" % s.getsockname()
        threading.Thread(target=self._reader, args=(s,), daemon=True).start()
        while self.error is None:
            try:
                s.sendall(REC.pack(self.sent, time.time()))
                self.sent += 1
            except OSError as exc:
                self.error = f"send: {exc}"
                break
            time.sleep(self.interval)

    def _run_udp(self) -> None:
        """Datagrams every interval, each echoed: the gaps are the data path's outage,
        free of TCP's retransmission back-off."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self.bind:
            s.bind((self.bind, 0))
        self.local = "%s:%d" % s.getsockname()
        threading.Thread(target=self._reader, args=(s,), daemon=True).start()
        due = time.monotonic()
        while True:
            try:
                s.sendto(REC.pack(self.sent, time.time()), (self.dst, self.port))
            except OSError:
                self.send_errors += 1   # e.g. no route for a moment during a move
            self.sent += 1   # the sequence number counts datagrams due, sent or not
            due += self.interval
            now = time.monotonic()
            if due < now - 10 * self.interval:   # starved (e.g. a paused container): resync
                due = now
            time.sleep(max(due - now, 0.0))

    def _reader(self, s: socket.socket) -> None:
        buf = b""
        while self.error is None:
            try:
                data = s.recv(65536)
            except OSError as exc:
                self.error = f"recv: {exc}"
                return
            if not data and not self.udp:
                self.error = "connection closed by peer"
                return
            buf += data
            now = time.time()
            seq = None
            while len(buf) >= REC.size:
                seq = REC.unpack_from(buf)[0]
                buf = buf[REC.size:]
                self.echoed += 1
                self.bins[int(now * 10)] = self.bins.get(int(now * 10), 0) + 1
            if self.last_echo is not None:
                gap = now - self.last_echo
                self.max_gap = max(self.max_gap, gap)
                if gap > self.gap_s:
                    self.gaps.append((round(self.last_echo, 4), round(now, 4)))
                    self.gaps = self.gaps[-100:]
                    if self.udp and seq is not None and self._last_seq is not None:
                        self.gap_detail.append({"start": round(self.last_echo, 4), "end": round(now, 4),
                                                "seq_before": self._last_seq, "seq_after": seq,
                                                "lost": max(seq - self._last_seq - 1, 0)})
                        self.gap_detail = self.gap_detail[-100:]
            self.last_echo = now
            if self.udp and seq is not None:
                self._last_seq = seq

    def status(self) -> dict:
        return {"proto": "udp" if self.udp else "tcp", "send_errors": self.send_errors,
                "dst": f"{self.dst}:{self.port}", "local": self.local, "started": self.started,
                "sent": self.sent, "echoed": self.echoed, "error": self.error,
                "last_echo": self.last_echo, "max_gap_ms": round(self.max_gap * 1000, 1),
                "gaps": self.gaps, "gap_ms": round(self.gap_s * 1000, 1),
                "gap_detail": self.gap_detail, "interval_ms": round(self.interval * 1000, 1), "bins_100ms": {str(k): v for k, v in sorted(self.bins.items())}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.mip.probe")
    ap.add_argument("role", choices=["server", "client"])
    ap.add_argument("--port", type=int, default=5001)
    ap.add_argument("--dst")
    ap.add_argument("--bind")
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--out", default="/run/testbed/probe.json")
    ap.add_argument("--udp", action="store_true", help="datagram stream instead of one TCP connection")
    ap.add_argument("--gap-ms", type=float, help="record gaps between echoes longer than this (default 5 intervals)")
    args = ap.parse_args(argv)
    if args.role == "server":
        serve(args.port)
        return 0
    if not args.dst:
        print("client needs --dst", file=sys.stderr)
        return 2
    c = Client(args.dst, args.port, args.bind, args.interval, udp=args.udp,
               gap_s=args.gap_ms / 1000 if args.gap_ms else None)
    threading.Thread(target=c.run, daemon=True).start()
    while True:
        write_status(args.out, c.status())
        if c.error:
            print(f"session ended: {c.error}", file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
