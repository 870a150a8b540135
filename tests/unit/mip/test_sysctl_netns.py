"""testbed.mip.sysctl where /proc/sys is read-only (as Docker mounts it).

The agent writes through its helper's mount namespace: the direct write fails, the write
through `writable_root()` lands in the caller's own network namespace, and the helper is
one process for all writes (the old way forked `unshare`, `sh` and `sysctl` per write).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount and network namespaces")]

REPO = Path(__file__).resolve().parents[3]
CODE = r'''
import os, sys
from testbed.mip import sysctl
key = "/proc/sys/net/ipv4/conf/lo/arp_ignore"
try:
    open(key, "w").write("1")
    sys.exit("direct write worked: /proc/sys is not read-only here")
except OSError:
    pass
root = sysctl.writable_root()
assert root and root != "/proc/self/root", root
open(root + key, "w").write("2")
assert open(key).read().strip() == "2"           # our namespace's value, through the helper
pid = sysctl._helper.pid
for v in ("1", "2", "1"):
    assert sysctl.set_sysctl("net.ipv4.conf.lo.arp_ignore", v)
assert open(key).read().strip() == "1" and sysctl._helper.pid == pid   # one helper for all
print("ok")
'''


def test_sysctl_through_the_helper_on_a_read_only_proc_sys(tmp_path):
    code = tmp_path / "probe.py"
    code.write_text(CODE)
    outer = open("/proc/sys/net/ipv4/conf/lo/arp_ignore").read().strip()
    r = subprocess.run(["unshare", "-mn", "sh", "-c",
                        "mount --bind /proc/sys /proc/sys && mount -o remount,ro,bind /proc/sys && "
                        f"exec {sys.executable} {code}"],
                       capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr[-2000:]
    assert open("/proc/sys/net/ipv4/conf/lo/arp_ignore").read().strip() == outer   # the host's is untouched
