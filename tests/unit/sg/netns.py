"""Small host-side helpers for the SG netns tests: namespaces, veths, processes, cleanup.

Every name starts with `tbt` and everything created is recorded, so cleanup removes exactly
what this test made (never by pattern).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from netns_support import REPO, NetLab, needs, read_json, sh, wait_for  # noqa: F401

needs_root = needs("ip", tun=True)


class Lab(NetLab):
    """The SG tests' world: unique per run, forwarding on, processes entered with nsenter
    (the SG agent's per-realm namespaces must be usable from outside)."""

    forward_default = True

    def __init__(self, tag: str, workdir: Path) -> None:
        super().__init__(tag, workdir, unique=True, via_nsenter=True)


PING = r"""
import os, socket, struct, sys, time
dst, src, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.bind((src, 0)); s.settimeout(1.0)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack(f"!{len(b)//2}H", b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
ident, ok = os.getpid() & 0xffff, 0
for seq in range(count):
    body = b"tbt-ping-payload" * 4
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + body), ident, seq) + body
    s.sendto(pkt, (dst, 0))
    end = time.time() + 1.0
    while time.time() < end:
        try:
            data = s.recv(2048)
        except socket.timeout:
            break
        ihl = (data[0] & 15) * 4
        t, _c, _s, i, q = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if t == 0 and i == ident and q == seq:
            ok += 1
            break
print(ok)
"""


def ping(ns: str, dst: str, src: str, count: int = 3) -> int:
    """ICMP echo from `src` to `dst` inside `ns` (no ping binary needed); replies received."""
    proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PING, dst, src, str(count)],
                          capture_output=True, text=True, timeout=count * 2 + 10)
    return int(proc.stdout.strip() or 0)


UDP_SEND = r"""
import socket, sys, time
dst, port, src, msg, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode(), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0))
if int(sys.argv[6]):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(sys.argv[6]))
for i in range(n):
    s.sendto(msg, (dst, port)); time.sleep(0.005)
"""


def udp_send(ns: str, dst: str, port: int, src: str, msg: str, n: int = 20, mark: int = 0) -> None:
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", UDP_SEND, dst, str(port), src, msg,
                    str(n), str(mark)], check=True, timeout=30)


UDP_SINK = r"""
import json, socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
counts = {}
while True:
    data, (addr, _p) = s.recvfrom(4096)
    key = f"{addr}|{data.decode(errors='replace')}"
    counts[key] = counts.get(key, 0) + 1
    with open(out + ".tmp", "w") as f:
        json.dump(counts, f)
    import os; os.replace(out + ".tmp", out)
"""


def udp_sink(lab: Lab, ns: str, port: int, out: Path) -> subprocess.Popen:
    """A UDP receiver in `ns` writing {"src|payload": count} to `out` (JSON)."""
    return lab.spawn(ns, [sys.executable, "-c", UDP_SINK, str(port), str(out)], f"sink-{ns}-{port}.log")


def sink_counts(out: Path) -> dict:
    try:
        return json.loads(Path(out).read_text())
    except (OSError, ValueError):
        return {}
