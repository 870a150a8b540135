"""A lab whose nodes are network namespaces of the host (real ping, nft, tshark, python):
what the check kinds need of orchestration.lab.Lab (exec, spawn, put_file), without Docker."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from netns_support import NetLab, needs  # noqa: F401 - re-exported for the tests

from orchestration.backend import ExecResult


class NsLab:
    """Nodes ``a`` and ``b`` in two namespaces joined by a veth: a 10.9.0.1/24, b 10.9.0.2/24."""

    A, B = "10.9.0.1", "10.9.0.2"

    def __init__(self, tmp: Path) -> None:
        self.net = NetLab("ck", tmp, unique=True)
        self.workdir = tmp
        self.nodes = {"a": self.net.ns("a"), "b": self.net.ns("b")}
        self.net.veth(self.nodes["a"], "eth0", self.nodes["b"], "eth0")
        for n, addr in (("a", self.A), ("b", self.B)):
            self.exec(n, f"ip addr add {addr}/24 dev eth0", check=True)
        self.topology = None

    def exec(self, node: str, cmd: str, timeout: float | None = None, check: bool = False) -> ExecResult:
        p = subprocess.run(["ip", "netns", "exec", self.nodes[node], "sh", "-c", cmd], capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"{node}: {cmd}: {p.stderr}")
        return ExecResult(p.returncode, p.stdout, p.stderr)

    def spawn(self, node: str, cmd: str, log: str | None = None) -> None:
        self.net.spawn(self.nodes[node], ["sh", "-c", cmd], log or "spawn.log")

    def put_file(self, node: str, path: str, content: str | bytes, mode: int = 0o644) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        p.chmod(mode)

    def close(self) -> None:
        self.net.close()


@pytest.fixture
def nslab(tmp_path: Path):
    lab = NsLab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()
