"""The interface between the lab and whatever runs its nodes.

The lab (``lab.py``) speaks only to this interface; Docker is one implementation
(``docker_backend.py``). A second one (Kubernetes, plain namespaces) is a new file that
implements these methods, not a change to the lab. What a backend must give the lab is a
network namespace per node (as a process id), because links are wired from the host side
with netlink, the same way for every backend.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class NodeSpec:
    """Everything a backend needs to start one node."""

    lab: str
    name: str
    role: str
    image: str
    sysctls: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    # host path -> (path in node, read-only)
    mounts: dict[str, tuple[str, bool]] = field(default_factory=dict)


@dataclass
class ExecResult:
    """What a command run in a node gave: ``exit_code`` (None-free int; 124-style codes from
    ``timeout`` pass through), ``stdout`` and ``stderr`` as text (undecodable bytes replaced)."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.exit_code == 0


class BackendError(RuntimeError):
    """The backend could not do what was asked; the message says what to check."""


class Backend(abc.ABC):
    """Starts, inspects and removes the nodes of labs. All methods are safe to call from threads."""

    name: str = "abstract"

    @abc.abstractmethod
    def ensure_ready(self) -> None:
        """Raise BackendError with a fix when the backend cannot run nodes."""

    @abc.abstractmethod
    def start_node(self, spec: NodeSpec) -> int:
        """Create and start a node; return the pid of a process in its network namespace."""

    @abc.abstractmethod
    def node_pid(self, lab: str, node: str) -> int | None:
        """The pid of a running node's process, or None if it is not running."""

    @abc.abstractmethod
    def exec(self, lab: str, node: str, cmd: list[str], detach: bool = False,
             env: dict[str, str] | None = None, stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run a command inside a node."""

    @abc.abstractmethod
    def put_file(self, lab: str, node: str, path: str, content: bytes, mode: int = 0o644) -> None:
        """Write a file inside a node."""

    @abc.abstractmethod
    def logs(self, lab: str, node: str) -> str:
        """The node's main process output."""

    @abc.abstractmethod
    def restart_node(self, lab: str, node: str) -> int:
        """Restart a node's main process; return the new pid (its links are gone and must be rewired)."""

    @abc.abstractmethod
    def remove_node(self, lab: str, node: str) -> None:
        """Stop and remove one node; no error if it is already gone."""

    @abc.abstractmethod
    def list_nodes(self, lab: str | None = None) -> dict[str, list[str]]:
        """Nodes that exist, by lab (all labs when ``lab`` is None)."""

    @abc.abstractmethod
    def remove_lab(self, lab: str) -> list[str]:
        """Remove every node of the lab; return their names."""

    def shell(self, lab: str, node: str, command: str, timeout: float | None = None) -> ExecResult:
        """Run a shell command line inside a node."""
        return self.exec(lab, node, ["sh", "-c", command], timeout=timeout)


def repo_root() -> Path:
    """The working tree the testbed runs from (agents are bind-mounted from it into nodes)."""
    return Path(__file__).resolve().parent.parent
