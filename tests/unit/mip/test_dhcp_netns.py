"""testbed.mip.dhcp against a real DHCP server (busybox udhcpd) in network namespaces.

The MN's in-agent client gets the co-located care-of address, mask and router of the
visited network (claim 23) in one DISCOVER/OFFER/REQUEST/ACK exchange; without a server
it gives up after its tries and has no lease (the check fails when nothing answers).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
              pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (udhcpd)")]

CLIENT = r'''
import select, sys, time
from testbed.mip.dhcp import DhcpClient
c = DhcpClient("v1", retransmit_s=0.3, tries=2)
t0 = time.monotonic()
c.start(t0)
lease = None
while time.monotonic() - t0 < 3 and lease is None and c.state != "idle":
    r, _, _ = select.select([c], [], [], 0.05)
    if r:
        lease = c.readable(time.monotonic())
    c.tick(time.monotonic())
ms = (time.monotonic() - t0) * 1000
print(lease and f"{lease.address}/{lease.prefixlen} {lease.router} {lease.server} {lease.lease_s}", round(ms, 1),
      dict(c.counters))
'''


@pytest.fixture
def link(tmp_path):
    tag = os.getpid() % 10000
    srv, cli = f"tbtds{tag}", f"tbtdc{tag}"
    for ns in (srv, cli):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "link", "add", "v0", "netns", srv, "type", "veth", "peer", "name", "v1", "netns", cli],
                       check=True)
        for ns, dev in ((srv, "v0"), (cli, "v1")):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        subprocess.run(["ip", "-n", srv, "addr", "add", "192.0.2.1/24", "dev", "v0"], check=True)
        yield srv, cli, tmp_path
    finally:
        for ns in (srv, cli):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _client(cli: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[3])}
    r = subprocess.run(["ip", "netns", "exec", cli, sys.executable, "-c", CLIENT], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_lease_from_udhcpd(link):
    srv, cli, tmp = link
    conf = tmp / "udhcpd.conf"
    conf.write_text(f"start 192.0.2.50\nend 192.0.2.50\ninterface v0\noption subnet 255.255.255.0\n"
                    f"option router 192.0.2.1\noption lease 600\nlease_file {tmp}/leases\npidfile {tmp}/pid\n")
    (tmp / "leases").touch()
    server = subprocess.Popen(["ip", "netns", "exec", srv, "busybox", "udhcpd", "-f", "-a", "0", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = _client(cli)
    finally:
        server.terminate()
        server.wait(5)
    assert out.startswith("192.0.2.50/24 192.0.2.1 192.0.2.1 600 "), out
    print("lease in", out.split()[4], "ms")


def test_no_server_no_lease(link):
    _srv, cli, _tmp = link
    out = _client(cli)
    assert out.startswith("None ") and "'gave_up': 1" in out and "'discovers': 2" in out, out
