"""Set a sysctl in the calling thread's network namespace, also inside Docker.

Why the fallback: Docker mounts /proc/sys read-only, and a virtual HA's namespace gets
no `--sysctl` at container creation. With CAP_SYS_ADMIN a private mount namespace can
remount /proc/sys writable. One helper process per agent holds such a namespace for the
agent's lifetime (`unshare -m`, remount, then it sleeps); the agent writes through
`/proc/<helper>/root/proc/sys/...`. The path leads into the helper's mount namespace,
while /proc/sys/net still answers for the network namespace of the thread that opens
the file, so this also works from a thread that entered a virtual HA's namespace
(testbed.mip.netns).

Why a helper that stays (issue 14): a process per write (`unshare`, `sh`, `sysctl`)
cost ~40 ms on a busy machine, and the MN writes arp_ignore on every move between
registration reply and new routes; through the helper a write is one open() and write().
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import signal
import subprocess
import threading

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
_lock = threading.Lock()
_helper: subprocess.Popen | None = None


def _die_with_parent() -> None:   # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _stop_helper() -> None:
    if _helper is not None and _helper.poll() is None:
        _helper.kill()


def writable_root() -> str | None:
    """`/proc/PID/root` of the helper whose mount namespace has /proc/sys writable
    (started on first use, again if it died); None if it cannot be made (no CAP_SYS_ADMIN)."""
    global _helper
    with _lock:
        if _helper is not None and _helper.poll() is None:
            return f"/proc/{_helper.pid}/root"
        try:
            _helper = subprocess.Popen(["unshare", "-m", "sh", "-c",
                                        "mount -o remount,rw /proc/sys && echo ok && exec sleep infinity"],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       preexec_fn=_die_with_parent)
        except OSError as exc:
            log.debug("sysctl helper: %s", exc)
            _helper = None
            return None
        assert _helper.stdout is not None
        if _helper.stdout.readline().strip() != b"ok":
            _helper.wait()
            _helper = None
            return None
        atexit.register(_stop_helper)
        return f"/proc/{_helper.pid}/root"


def set_sysctl(key: str, value: str) -> bool:
    """Write `value` to sysctl `key` ("net.ipv4.conf.eth0.arp_ignore") for the calling
    thread's network namespace: directly, else through the helper, else a one-off
    `unshare -m` process. Returns False (logged) when every way fails."""
    rel = f"proc/sys/{key.replace('.', '/')}"
    for root in ("", None):
        if root is None:
            root = writable_root()
            if root is None:
                break
        try:
            with open(f"{root}/{rel}", "w") as f:
                f.write(value)
            return True
        except OSError:
            continue
    proc = subprocess.run(["unshare", "-m", "sh", "-c",
                           f"mount -o remount,rw /proc/sys && sysctl -qw {key}={value}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        log.warning("sysctl %s=%s failed: %s", key, value, proc.stderr.strip())
        return False
    return True
