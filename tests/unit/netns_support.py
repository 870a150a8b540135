"""Host-namespace test worlds shared by the agents' netns tests: namespaces, veths,
agent processes and the cleanup of exactly what one test made.

Every name starts with ``tbt`` and everything created is recorded, so ``close()`` never
removes anything by pattern. (Importable as ``netns_support``: pytest puts tests/unit on
sys.path because it has no ``__init__.py``.)
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
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]


def needs(*tools: str, tun: bool = False) -> pytest.MarkDecorator:
    """Skip unless root with these binaries (and /dev/net/tun when ``tun``)."""
    ok = os.geteuid() == 0 and all(shutil.which(t) for t in tools) and (not tun or os.path.exists("/dev/net/tun"))
    return pytest.mark.skipif(not ok, reason=f"needs root, {', '.join(tools)}" + (" and /dev/net/tun" if tun else ""))


def require_tunnel_mode(mode: str) -> None:
    """Skip a test world whose IP-IP `mode` this machine cannot run, but fail under CI=true:
    CI machines are of the kind that runs every mode but kernel ipip (ENVIRONMENT.md)."""
    from testbed.tunnel.ipip import choose_mode
    from testbed.tunnel.modes import TunnelModeError

    try:
        choose_mode(mode, "127.0.0.1")
    except TunnelModeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"IP-IP mode {mode} not available on this CI machine: {exc}")
        pytest.skip(f"IP-IP mode {mode} not available here: {exc}")


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{cmd}: {proc.stderr.strip()}")
    return proc


class NetLab:
    """Namespaces and processes of one test; ``close()`` undoes everything it made.

    ``unique`` adds a pid-derived part to the tag so two runs of the suite at once (CI and
    a developer) cannot meet. ``via_nsenter`` starts processes with nsenter rather than
    ``ip netns exec``: the latter gives each process a mount namespace of its own, and
    namespaces an agent creates with ``ip netns add`` would not be visible outside it.
    """

    forward_default = False

    def __init__(self, tag: str, workdir: Path, unique: bool = False, via_nsenter: bool = False) -> None:
        self.tag = f"{tag}{os.getpid() % 4096:03x}" if unique else tag
        self.workdir = Path(workdir)
        self.via_nsenter = via_nsenter
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    @property
    def prefix(self) -> str:
        return f"tbt{self.tag}"

    def ns(self, suffix: str, forward: bool | None = None) -> str:
        name = f"{self.prefix}{suffix}"
        sh(f"ip netns del {name}", check=False)
        sh(f"ip netns add {name}")
        self.namespaces.append(name)
        sh(f"ip -n {name} link set lo up")
        fwd = self.forward_default if forward is None else forward
        sh(f"ip netns exec {name} sysctl -qw net.ipv4.ip_forward={int(fwd)}")
        return name

    def veth(self, a_ns: str, a_if: str, b_ns: str, b_if: str) -> None:
        assert len(a_if) <= 15 and len(b_if) <= 15
        sh(f"ip link add {a_if} netns {a_ns} type veth peer name {b_if} netns {b_ns}")
        sh(f"ip -n {a_ns} link set {a_if} up; ip -n {b_ns} link set {b_if} up")

    def _enter(self, ns: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}"] if self.via_nsenter else ["ip", "netns", "exec", ns]

    def spawn(self, ns: str, args: list[str], log: str, env: dict | None = None) -> subprocess.Popen:
        out = open(self.workdir / log, "wb")
        e = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        p = subprocess.Popen(self._enter(ns) + args, stdout=out, stderr=subprocess.STDOUT,
                             cwd=REPO, env=e, start_new_session=True)
        self.procs.append(p)
        return p

    def python(self, ns: str, module: str, config: dict, name: str) -> subprocess.Popen:
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(config))
        return self.spawn(ns, [sys.executable, "-m", module, "--config", str(path)], f"{name}.log")

    def run(self, ns: str, code: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(self._enter(ns) + [sys.executable, "-c", code, *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(REPO)})

    def log(self, name: str) -> str:
        p = self.workdir / name
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self) -> None:
        # Each process leads its own session: signal the group, so its children go too.
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(2)
        for name in reversed(self.namespaces):
            sh(f"ip netns del {name}", check=False)


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
