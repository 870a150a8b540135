"""Host-side helpers for the Mobile IP netns tests: namespaces, bridges, veths, processes.

Every namespace this creates starts with `tbt`, and everything is recorded so `close()`
removes exactly what the test made, also after a failure.
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


class NsLab:
    def __init__(self, tag: str, workdir: Path) -> None:
        self.tag = tag
        self.workdir = workdir
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.named: dict[str, subprocess.Popen] = {}
        self.switch = ""

    def ns(self, suffix: str, forward: bool = True) -> str:
        # the pid keeps two test runs on one machine (e.g. two work trees) out of each
        # other's namespaces: ns() deletes a namespace of the same name first
        name = f"tbt{self.tag}{os.getpid() % 100000}{suffix}"
        sh(f"ip netns del {name}", check=False)
        sh(f"ip netns add {name}")
        self.namespaces.append(name)
        sh(f"ip -n {name} link set lo up")
        sh(f"ip netns exec {name} sysctl -qw net.ipv4.ip_forward={int(forward)} "
           "net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")
        return name

    def adopt(self, name: str) -> None:
        """Namespaces an agent creates itself (virtual HAs): removed by close() too."""
        self.namespaces.append(name)

    def bridge(self, br: str) -> None:
        if not self.switch:
            self.switch = self.ns("sw", forward=False)
        sh(f"ip -n {self.switch} link add {br} type bridge; ip -n {self.switch} link set {br} up")

    def plug(self, ns: str, ifname: str, br: str, port: str, address: str | None = None) -> None:
        """veth ns:ifname <-> switch:port, port enslaved to bridge br."""
        assert len(port) <= 15 and len(ifname) <= 15
        sh(f"ip link add {ifname} netns {ns} type veth peer name {port} netns {self.switch}")
        sh(f"ip -n {self.switch} link set {port} master {br} up; ip -n {ns} link set {ifname} up")
        if address:
            sh(f"ip -n {ns} addr add {address} dev {ifname}")

    def move(self, port: str, br: str, flap: bool = False) -> None:
        """Re-plug a switch port; with flap the node's interface loses carrier meanwhile."""
        sw = self.switch
        if flap:
            sh(f"ip -n {sw} link set {port} down")
        sh(f"ip -n {sw} link set {port} nomaster; ip -n {sw} link set {port} master {br}")
        if flap:
            sh(f"ip -n {sw} link set {port} up")

    def spawn(self, ns: str, args: list[str], log: str) -> subprocess.Popen:
        out = open(self.workdir / log, "wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}"] + args, stdout=out,
                             stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def agent(self, ns: str, role: str, config: dict, name: str) -> Path:
        cfg = self.workdir / f"{name}.json"
        status = self.workdir / f"{name}.status"
        cfg.write_text(json.dumps({**config, "status_file": str(status), "log_level": "DEBUG"}))
        self.named[name] = self.spawn(ns, [sys.executable, "-m", "testbed.mip", role, "--config", str(cfg)],
                                      f"{name}.log")
        return status

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
        except (OSError, ValueError, KeyError, TypeError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def ping(ns: str, dst: str, count: int = 3, wait: float = 1.0) -> int:
    """Replies received by `ping` in ns (iputils is on the host)."""
    proc = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2",
                           "-W", str(wait), dst], capture_output=True, text=True, timeout=count * 2 + 10)
    for line in proc.stdout.splitlines():
        if "received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


UDP_SINK = r"""
import json, os, socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
counts = {}
while True:
    data, (addr, _p) = s.recvfrom(4096)
    key = f"{addr}|{data.decode(errors='replace')}"
    counts[key] = counts.get(key, 0) + 1
    with open(out + ".tmp", "w") as f:
        json.dump(counts, f)
    os.replace(out + ".tmp", out)
"""

UDP_SEND = r"""
import socket, sys, time
dst, port, msg, n = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(msg, (dst, port)); time.sleep(0.01)
"""


def udp_sink(lab: NsLab, ns: str, port: int, out: Path) -> None:
    lab.spawn(ns, [sys.executable, "-c", UDP_SINK, str(port), str(out)], f"sink-{ns}.log")


def udp_send(ns: str, dst: str, port: int, msg: str, n: int = 20) -> None:
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", UDP_SEND, dst, str(port), msg, str(n)],
                   check=True, timeout=30)


def counts(out: Path) -> dict:
    try:
        return json.loads(Path(out).read_text())
    except (OSError, ValueError):
        return {}
