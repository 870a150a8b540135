"""Named network namespaces of a lab, as seen from the host.

Every name starts with ``<lab>.``: the switch namespace that holds the lab's segment
bridges (``<lab>.switch``) and one entry per node (``<lab>.node.<name>``, a symlink to the
node's ``/proc/<pid>/ns/net``, as Mininet and containernet do) so that host-side netlink
and tools (``ip -n``, ``tcpdump``) can reach a node's interfaces without entering it.

The bridges live in a namespace of their own, never in the host's: dockerd turns on
``bridge-nf-call-iptables`` and sets the host's FORWARD policy to DROP, which would
silently drop bridged lab traffic; and nothing bridged there can reach the host's links.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pyroute2 import netns as _netns

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into {what}: {os.strerror(err)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the calling thread in the named namespace, then return it to
    where it was; sockets made inside stay bound to that namespace (setns(2) moves only
    the calling thread). It costs two syscalls where pyroute2's ``IPRoute(netns=...)``
    forks a helper process per namespace (~14 ms each, most of the wiring of a 100-node
    lab before this). Raises OSError (ENOENT, EINVAL) when the name is not a namespace."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        there = os.open(NETNS_DIR / name, os.O_RDONLY)
    except FileNotFoundError:
        os.close(home)
        raise OSError(2, f"no network namespace {name} in {NETNS_DIR}") from None
    try:
        _setns(there, name)
        try:
            yield
        finally:
            _setns(home, "the caller's namespace")
    finally:
        os.close(there)
        os.close(home)


def switch_ns(lab: str) -> str:
    """Name of the lab's switch namespace, where segment bridges live: ``<lab>.switch``."""
    return f"{lab}.switch"


def node_ns(lab: str, node: str) -> str:
    """Name under /run/netns of a node's network namespace: ``<lab>.node.<node>``."""
    return f"{lab}.node.{node}"


def create_switch(lab: str) -> str:
    """Create the lab's switch namespace if missing and return its name. Raises OSError."""
    name = switch_ns(lab)
    if not (NETNS_DIR / name).exists():
        _netns.create(name)
    return name


def attach_node(lab: str, node: str, pid: int) -> str:
    """Name a node's namespace (by its pid) so host-side tools can find it."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    name = node_ns(lab, node)
    link = NETNS_DIR / name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(f"/proc/{pid}/ns/net")
    return name


def lab_entries(lab: str) -> list[str]:
    """Namespace names of one lab (only exact ``<lab>.`` prefixes: lab names contain no dots)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{lab}."))


def labs_with_entries() -> set[str]:
    """Names of labs that have a switch or node namespace entry under /run/netns (for
    cleanup after a crash); other namespaces on the machine are not looked at."""
    if not NETNS_DIR.is_dir():
        return set()
    return {p.name.split(".", 1)[0] for p in NETNS_DIR.iterdir()
            if p.name.endswith(".switch") or ".node." in p.name}


def remove_lab(lab: str) -> list[str]:
    """Remove the lab's namespace names; deleting the switch namespace deletes its bridges
    and the switch ends of every veth with them."""
    gone = []
    for name in lab_entries(lab):
        path = NETNS_DIR / name
        if path.is_symlink():
            path.unlink()
        else:
            try:
                _netns.remove(name)
            except OSError:
                # A mount that is already gone leaves only the file.
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        gone.append(name)
    return gone
