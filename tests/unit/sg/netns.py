"""Small host-side helpers for the SG netns tests: namespaces, veths, processes, cleanup.

Every name starts with `tbt` and everything created is recorded, so cleanup removes exactly
what this test made (never by pattern).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def have_root() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and os.path.exists("/dev/net/tun")


needs_root = pytest.mark.skipif(not have_root(), reason="needs root, iproute2 and /dev/net/tun")


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{cmd}: {proc.stderr.strip()}")
    return proc


class Lab:
    """Namespaces and processes of one test; `close()` undoes everything it made."""

    def __init__(self, tag: str, workdir: Path) -> None:
        # the pid part keeps two concurrent runs of the suite (CI and a developer) apart
        self.tag = f"{tag}{os.getpid() % 4096:03x}"
        self.workdir = workdir
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    @property
    def prefix(self) -> str:
        return f"tbt{self.tag}"

    def ns(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        sh(f"ip netns del {name}", check=False)
        sh(f"ip netns add {name}")
        self.namespaces.append(name)
        sh(f"ip -n {name} link set lo up")
        sh(f"ip netns exec {name} sysctl -qw net.ipv4.ip_forward=1")
        return name

    def veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
        assert len(a_if) <= 15 and len(b_if) <= 15
        sh(f"ip link add {a_if} netns {a_ns} type veth peer name {b_if} netns {b_ns}")
        sh(f"ip -n {a_ns} link set {a_if} up; ip -n {b_ns} link set {b_if} up")

    def spawn(self, ns: str, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.workdir / log, "wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        # nsenter, not `ip netns exec`: the latter gives the process a mount namespace of
        # its own, and namespaces the SG agent creates with `ip netns add` would then not be
        # usable from outside (the per-realm namespaces must be).
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}"] + args, stdout=out,
                             stderr=subprocess.STDOUT,
                             cwd=REPO, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def python(self, ns: str, module: str, config: dict, name: str) -> subprocess.Popen:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(config))
        return self.spawn(ns, [sys.executable, "-m", module, "--config", str(path)], f"{name}.log")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(2)
        for name in reversed(self.namespaces):
            sh(f"ip netns del {name}", check=False)


def wait_for(pred, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


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
