"""Set a sysctl in the calling thread's network namespace, also inside Docker.

Why the fallback: Docker mounts /proc/sys read-only, and a virtual HA's namespace gets
no `--sysctl` at container creation. With CAP_SYS_ADMIN a private mount namespace can
remount /proc/sys writable; a child process inherits the network namespace of the
thread that starts it, so this also works from a thread that entered a virtual HA's
namespace (testbed.mip.netns).
"""
from __future__ import annotations

import logging
import subprocess

log = logging.getLogger(__name__)


def set_sysctl(key: str, value: str) -> bool:
    path = f"/proc/sys/{key.replace('.', '/')}"
    try:
        with open(path, "w") as f:
            f.write(value)
        return True
    except OSError:
        pass
    proc = subprocess.run(["unshare", "-m", "sh", "-c",
                           f"mount -o remount,rw /proc/sys && sysctl -qw {key}={value}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        log.warning("sysctl %s=%s failed: %s", key, value, proc.stderr.strip())
        return False
    return True
