"""The AODV agent's native access hook (testbed/aodv/access_hook.py) with the real sink:
hellos on the AODV port itself are judged by the access plane before the agent makes
the sender a neighbour.

    N1 (member, node agent on UDP 654) ---\\
                                          S (testbed.access.msr: AODV agent + sink, MSM)
    N2 (wrong secret, UDP 654)        ---/
"""
from __future__ import annotations

import time

import pytest

from .netns import NetLab, needs_root, read_json, sh, wait_for

pytestmark = [pytest.mark.netns, needs_root]

T = "hk"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    wd = tmp_path_factory.mktemp("hook-netns")
    lab = NetLab(T, wd)
    try:
        s = lab.ns("s", forward=True)
        sh(f"ip netns exec {s} sysctl -qw net.ipv4.conf.all.rp_filter=0")
        nodes = {}
        for suf, addr in (("a", "10.10.0.5"), ("b", "10.10.0.6"), ("c", "10.10.0.7")):
            n = lab.ns(suf)
            lab.veth(n, f"tbt{T}{suf}s", s, f"tbt{T}s{suf}")
            sh(f"ip -n {n} addr add {addr}/32 dev tbt{T}{suf}s")
            sh(f"ip -n {s} addr add 10.10.0.1/32 dev tbt{T}s{suf}")
            nodes[suf] = n
        lab.python(s, "testbed.msm", {
            "db_path": str(wd / "msm.db"), "ca_dir": str(wd / "ca"), "key_type": "ec",
            "http_address": "127.0.0.1", "https_port": 0, "dns_enabled": False,
            "status_file": str(wd / "msm.json"),
            "seed": {"mvpns": [{"name": "A", "realm": "10.10.0.0/16", "sg_public": "203.0.113.1"}],
                     "users": [{"fqdn": "mn1.mwg.test", "mvpn": "A", "private_address": "10.10.0.5"},
                               {"fqdn": "mn2.mwg.test", "mvpn": "A", "private_address": "10.10.0.6"}]},
            "diameter": {"enabled": True, "address": "127.0.0.1", "port": 3868, "exchange_log": None,
                         "secrets": {"mn1.mwg.test": "one", "mn2.mwg.test": "two"}}}, "msm")
        wait_for(lambda: read_json(wd / "msm.json").get("diameter"), what="MSM up")
        lab.python(s, "testbed.access.msr", {
            "aodv": {"address": "10.10.0.1", "managed_prefixes": ["10.10.0.0/16"],
                     "timers": {"hello_interval_ms": 500}, "tun_name": f"tbt{T}tun",
                     "status_file": str(wd / "aodv.json"), "status_interval_ms": 200},
            "access": {"address": "10.10.0.1", "port": 654, "identity": "msr1.mwg.test",
                       "msm": {"address": "127.0.0.1", "port": 3868}, "nft_table": f"tbt{T}access",
                       # c's link is an access interface: plain hellos there need a verdict too
                       "interfaces": [f"tbt{T}sc"],
                       "status_file": str(wd / "msr.json"), "log_level": "DEBUG"}}, "msr")
        wait_for(lambda: read_json(wd / "aodv.json").get("access"), what="agent with hook")
        yield lab, wd, nodes
    finally:
        lab.close()


def node(lab, wd, n, suf, addr, ident, secret):
    lab.python(n, "testbed.access", {
        "role": "node", "address": addr, "identity": ident, "interface": f"tbt{T}{suf}s",
        "method": "secret", "secret": secret, "hello_interval_ms": 300, "install_routes": False,
        "max_hellos": 8, "status_file": str(wd / f"{suf}.json")}, f"node-{suf}")


def test_hello_on_aodv_port_judged_by_access_plane(world):
    lab, wd, nodes = world
    node(lab, wd, nodes["a"], "a", "10.10.0.5", "mn1.mwg.test", "one")
    node(lab, wd, nodes["b"], "b", "10.10.0.6", "mn2.mwg.test", "guess")
    st = wait_for(lambda: (d := read_json(wd / "a.json"))["attached"] and d, what="a attached")
    assert st["sink"] == "10.10.0.1" and st["verdict"] == "member"
    assert ["10.10.0.0/16", "0.0.0.0", 1] in st["routes"]
    aodv = wait_for(lambda: (d := read_json(wd / "aodv.json"))["counters"].get("access_refuse") and d,
                    what="refusal counted by the agent")
    assert aodv["counters"].get("access_pending", 0) >= 1  # first hello: MSM being asked
    assert "10.10.0.6" not in aodv["neighbours"]
    sink = aodv["access"]["sink"]
    assert sink["nodes"]["10.10.0.5"]["verdict"] == "member"
    assert sink["nodes"]["10.10.0.6"]["verdict"] == "refused"
    assert sink["counters"]["refused_rejected_by_msm"] >= 1
    time.sleep(0.1)


def test_plain_hello_on_an_access_interface_is_refused(world):
    """Leaving the access extension out must not be a way around authentication."""
    lab, wd, nodes = world
    send = ("import socket, time\n"
            "from testbed.aodv.messages import hello\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
            f"s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'tbt{T}cs')\n"
            "s.bind(('10.10.0.7', 654))\n"
            "for seq in range(1, 7):\n"
            "    s.sendto(bytes(hello('10.10.0.7', seq, 1500)), ('255.255.255.255', 654)); time.sleep(0.3)\n")
    r = lab.run(nodes["c"], send)
    assert r.returncode == 0, r.stderr
    aodv = wait_for(lambda: (d := read_json(wd / "aodv.json"))["access"]["sink"]["nodes"].get("10.10.0.7") and d,
                    what="plain hello judged")
    assert aodv["access"]["sink"]["nodes"]["10.10.0.7"]["verdict"] == "refused"
    assert "10.10.0.7" not in aodv["neighbours"]
