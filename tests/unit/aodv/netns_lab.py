"""A tiny lab of host network namespaces joined by veths, with AODV agents as subprocesses.

Every namespace and interface name starts with "tbt" + the lab's suffix; cleanup deletes
exactly what this lab created (namespaces it added, processes it started).
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PYTHON = str(REPO / ".venv" / "bin" / "python")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Lab:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.nodes: dict[str, str] = {}  # node -> netns
        self.addr: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix=f"tbt{suffix}"))
        self.logs: dict[str, Path] = {}

    def ns(self, node: str) -> str:
        return self.nodes[node]

    def add_node(self, node: str, addr: str) -> None:
        ns = f"tbt{self.suffix}{node}"
        sh("ip", "netns", "add", ns)
        self.nodes[node] = ns
        self.addr[node] = addr
        self.exec(node, "ip", "link", "set", "lo", "up")
        for k in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                  "net.ipv4.conf.default.rp_filter=0"):
            self.exec(node, "sysctl", "-qw", k)

    def ifname(self, a: str, b: str) -> str:
        return f"tbt{self.suffix}{a}{b}"[:15]

    def link(self, a: str, b: str) -> None:
        ia, ib = self.ifname(a, b), self.ifname(b, a)
        sh("ip", "link", "add", ia, "netns", self.ns(a), "type", "veth", "peer", "name", ib,
           "netns", self.ns(b))
        for node, ifc in ((a, ia), (b, ib)):
            self.exec(node, "ip", "addr", "add", f"{self.addr[node]}/32", "dev", ifc)
            self.exec(node, "ip", "link", "set", ifc, "up")

    def bridge(self, switch: str, br: str) -> None:
        """A bridge inside the lab's own switch namespace (never in the host's)."""
        self.exec(switch, "ip", "link", "add", br, "type", "bridge")
        self.exec(switch, "ip", "link", "set", br, "up")

    def port(self, node: str, switch: str, br: str) -> None:
        """Attach a node to a segment: a veth from the node into the switch's bridge."""
        ifn, peer = self.ifname(node, switch), self.ifname(switch, node)
        sh("ip", "link", "add", ifn, "netns", self.ns(node), "type", "veth", "peer", "name",
           peer, "netns", self.ns(switch))
        self.exec(node, "ip", "addr", "add", f"{self.addr[node]}/32", "dev", ifn)
        self.exec(node, "ip", "link", "set", ifn, "up")
        self.exec(switch, "ip", "link", "set", peer, "master", br)
        self.exec(switch, "ip", "link", "set", peer, "up")

    def move_port(self, node: str, switch: str, br: str) -> None:
        """Re-attach a node to another segment; its interface stays as it is."""
        self.exec(switch, "ip", "link", "set", self.ifname(switch, node), "master", br)

    def unlink(self, a: str, b: str) -> None:
        self.exec(a, "ip", "link", "del", self.ifname(a, b), check=False)

    def exec(self, node: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns(node), *cmd, check=check)

    def config(self, node: str, **kw) -> dict:
        cfg = {"address": self.addr[node], "status_file": str(self.tmp / f"{node}.json"),
               "status_interval_ms": 200, "log_level": "DEBUG"}
        cfg.update(kw)
        return cfg

    def start(self, node: str, cfg: dict) -> None:
        path = self.tmp / f"{node}.cfg.json"
        path.write_text(json.dumps(cfg))
        log = self.tmp / f"{node}.log"
        self.logs[node] = log
        self.procs[node] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(node), PYTHON, "-m", "testbed.aodv", "--config",
             str(path)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(log, "w"))

    def status(self, node: str) -> dict:
        try:
            return json.loads((self.tmp / f"{node}.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_status(self, node: str, pred, timeout: float = 15.0) -> dict:
        end = time.monotonic() + timeout
        st: dict = {}
        while time.monotonic() < end:
            st = self.status(node)
            if st and pred(st):
                return st
            time.sleep(0.05)
        raise AssertionError(f"{node}: condition not met in {timeout}s; status: "
                             f"{json.dumps(st)[:3000]}\nlog tail:\n{self.log_tail(node)}")

    def log_tail(self, node: str, n: int = 40) -> str:
        try:
            return "\n".join(self.logs[node].read_text().splitlines()[-n:])
        except (OSError, KeyError):
            return ""

    def ping(self, node: str, dst: str, count: int = 1, wait: float = 1.0,
             interval: float = 0.2) -> subprocess.CompletedProcess:
        return self.exec(node, "ping", "-n", "-c", str(count), "-i", str(interval), "-W",
                         str(wait), dst, check=False)

    def stop(self, node: str) -> None:
        p = self.procs.pop(node, None)
        if p is None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def cleanup(self) -> None:
        for p in self.procs.values():  # signal all first: they shut down in parallel
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for node in list(self.procs):
            self.stop(node)
        for ns in self.nodes.values():
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_agents(self, timeout: float = 30.0) -> None:
        for node in self.procs:
            self.wait_status(node, lambda s: "counters" in s, timeout)
