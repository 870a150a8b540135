"""Run a thread inside another network namespace (for virtual home agents).

Why threads: setns(2) changes the namespace of the calling thread only. An operator home
agent hosts one virtual HA per M-VPN in one process (claim 16); each virtual HA's thread
enters its namespace once, and every socket, TUN device and `ip` child it creates from
then on belongs to that namespace, so overlapping realms never meet. Python 3.11 has no
os.setns, hence ctypes.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Callable

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name_or_path: str) -> None:
    """Move the calling thread into the named (`/run/netns/NAME`) or given namespace."""
    path = name_or_path if name_or_path.startswith("/") else f"/run/netns/{name_or_path}"
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def thread_in_netns(netns: str | None, target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread that enters `netns` (None: stay here) and then runs `target`."""
    def run() -> None:
        if netns:
            enter_netns(netns)
        target()
    return threading.Thread(target=run, name=name, daemon=True)


def call_in_netns(netns: str | None, fn: Callable[[], object]) -> object:
    """Run `fn` in a short-lived thread inside `netns` and return its result."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            if netns:
                enter_netns(netns)
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("result")
