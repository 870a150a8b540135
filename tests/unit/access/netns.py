"""Namespaces, veths and processes for the access netns tests; cleanup removes only what
this test made (names start with `tbt`)."""
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

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="needs root, iproute2 and nft")


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{cmd}: {p.stderr.strip()}")
    return p


class NetLab:
    def __init__(self, tag: str, workdir: Path) -> None:
        self.tag, self.workdir = tag, workdir
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def ns(self, suffix: str, forward: bool = False) -> str:
        name = f"tbt{self.tag}{suffix}"
        sh(f"ip netns del {name}", check=False)
        sh(f"ip netns add {name}")
        self.namespaces.append(name)
        sh(f"ip -n {name} link set lo up")
        sh(f"ip netns exec {name} sysctl -qw net.ipv4.ip_forward={int(forward)}")
        return name

    def veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
        sh(f"ip link add {a_if} netns {a_ns} type veth peer name {b_if} netns {b_ns}")
        sh(f"ip -n {a_ns} link set {a_if} up; ip -n {b_ns} link set {b_if} up")

    def spawn(self, ns: str, args: list[str], log: str, env: dict | None = None) -> subprocess.Popen:
        out = open(self.workdir / log, "wb")
        e = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        p = subprocess.Popen(["ip", "netns", "exec", ns] + args, stdout=out, stderr=subprocess.STDOUT,
                             cwd=REPO, env=e, start_new_session=True)
        self.procs.append(p)
        return p

    def python(self, ns: str, module: str, config: dict, name: str) -> subprocess.Popen:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(config))
        return self.spawn(ns, [sys.executable, "-m", module, "--config", str(path)], f"{name}.log")

    def run(self, ns: str, code: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(REPO)})

    def log(self, name: str) -> str:
        p = self.workdir / name
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(2)
        for name in reversed(self.namespaces):
            sh(f"ip netns del {name}", check=False)


def wait_for(pred, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
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


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


#: send n UDP datagrams from src to dst:port
UDP_SEND = r"""
import socket, sys, time
dst, port, src, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, 0))
for i in range(n):
    try:
        s.sendto(f"tbt-{i}".encode(), (dst, port))
    except OSError as e:
        print("send error", e)
    time.sleep(0.01)
"""

#: count UDP datagrams (port) and IP-IP packets for `secs` seconds, print JSON
RECV = r"""
import json, select, socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
print("ready", flush=True)
got = {"udp": [], "ipip": []}
end = time.time() + secs
while time.time() < end:
    rd, _, _ = select.select([u, r], [], [], 0.05)
    for s in rd:
        data, (a, _p) = s.recvfrom(4096)
        if s is u:
            got["udp"].append([a, data.decode(errors="replace")])
        else:
            ihl = (data[0] & 15) * 4
            inner = data[ihl:]
            got["ipip"].append([a, socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20])])
print(json.dumps(got), flush=True)
"""
