"""testbed.mip.netlink in a real network namespace: each verb touches only what it names.

Why: the MN takes any non-home address of its interface as a co-located care-of address
and flushes default routes on the way home; an address from lo (127.0.0.1, the home /32) or
a flush reaching another route would break a move. `ip` reads the result back.
"""
from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

CODE = r'''
from testbed.mip.netlink import Netlink
n = Netlink()
assert n.addresses("v0") == [("192.0.2.50", 24)], n.addresses("v0")
assert n.route_replace("10.0.0.0/24", "v0", src="10.9.0.5")
assert n.route_replace("default", "v0", via="203.0.113.1", onlink=True, src="10.9.0.5")
assert n.defaults() == [("v0", "203.0.113.1", False)], n.defaults()
assert n.route_del("10.0.0.0/24", "v0") and not n.route_del("10.0.0.0/24", "v0")
assert n.flush_default() == 1 and n.defaults() == []
assert n.proxy_replace("10.9.0.5", "v0") and n.proxy_del("10.9.0.5", "v0")
n.ipr.neigh("add", dst="192.0.2.77", ifindex=n.index("v0"), state=1, family=2)   # incomplete
n.ipr.neigh("add", dst="192.0.2.78", ifindex=n.index("v0"), lladdr="02:00:00:00:00:01", state=128, family=2)
assert n.flush_incomplete("v0") == 1
assert n.addr_replace("192.0.2.60", 24, "v0") and ("192.0.2.60", 24) in n.addresses("v0")
assert n.addr_del("192.0.2.60", 24, "v0") and n.addresses("v0") == [("192.0.2.50", 24)]
assert n.route_replace("198.51.100.64/26", "v0", src="10.9.0.5", mtu=1480)
from pyroute2.ethtool import Ethtool
assert Ethtool().get_features("v0").features["tx-checksum-ip-generic"].enable
assert n.tx_checksum_off("v0") and not Ethtool().get_features("v0").features["tx-checksum-ip-generic"].enable
assert n.errors == 0
print("ok")
'''


def test_netlink_verbs_touch_only_what_they_name():
    ns = f"tbtnl{os.getpid() % 10000}"
    sh = lambda *a: subprocess.run(["ip", "-n", ns, *a], check=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        sh("link", "set", "lo", "up")
        sh("link", "add", "v0", "type", "veth", "peer", "name", "v1")
        sh("link", "set", "v0", "up")
        sh("link", "set", "v1", "up")
        sh("addr", "add", "192.0.2.50/24", "dev", "v0")
        sh("addr", "add", "10.9.0.5/32", "dev", "lo")
        sh("route", "add", "198.51.100.0/24", "via", "192.0.2.1")
        r = subprocess.run(["ip", "netns", "exec", ns, os.sys.executable, "-c", CODE],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
        routes = subprocess.run(["ip", "-n", ns, "route"], capture_output=True, text=True).stdout
        assert "198.51.100.0/24 via 192.0.2.1" in routes   # not a default: left alone
        assert "198.51.100.64/26 dev v0 proto static scope link src 10.9.0.5 mtu 1480" in routes, routes
        neigh = subprocess.run(["ip", "-n", ns, "neigh"], capture_output=True, text=True).stdout
        assert "192.0.2.78" in neigh and "192.0.2.77" not in neigh
    finally:
        subprocess.run(["ip", "netns", "del", ns])
