"""End to end in network namespaces: real MSM process (DIAMETER), real sink agent with
nftables, node agents and Debian's udhcpc.

    node ns (one per node) --veth--> sink ns: bridge 10.10.0.1/24 --veth--> host ns 10.10.1.2
                                     (MSM on 127.0.0.1:3868)                 (also the FA)

Checks the issue's list: a member attaches and reaches its home host, the MSM's DIAMETER
log shows it; a forged hello gets no route and its packets die at the sink (counted); a
visitor gets only the FA default route and only IP-IP to/from the FA passes; a DHCP node
(udhcpc with options 50/61/43) attaches and reaches the host.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from testbed.access.dhcp import udhcpc_args

from .netns import RECV, REPO, UDP_SEND, NetLab, needs_root, read_json, sh, wait_for

pytestmark = [pytest.mark.netns, needs_root]

T = "ac"
NODES = {  # suffix: (address or None for DHCP, identity, secret given to the node)
    "n1": ("10.10.0.5", "mn1.mwg.test", "secret-one"),
    "n2": ("10.10.0.6", "mn2.mwg.test", "not-mn2s-secret"),
    "n3": ("10.10.0.77", "guest.other.test", "guest"),
    "n4": (None, "mn3.mwg.test", "secret-three"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    wd = tmp_path_factory.mktemp("access-netns")
    lab = NetLab(T, wd)
    try:
        s = lab.ns("s", forward=True)
        h = lab.ns("h")
        sh(f"ip -n {s} link add tbt{T}br type bridge; ip -n {s} link set tbt{T}br up")
        sh(f"ip -n {s} addr add 10.10.0.1/24 dev tbt{T}br")
        lab.veth(s, f"tbt{T}s1", h, f"tbt{T}h0")
        sh(f"ip -n {s} addr add 10.10.1.1/24 dev tbt{T}s1; ip -n {h} addr add 10.10.1.2/24 dev tbt{T}h0")
        sh(f"ip -n {h} route add 10.10.0.0/24 via 10.10.1.1")
        ns = {}
        for suf, (addr, _i, _s) in NODES.items():
            n = lab.ns(suf)
            lab.veth(n, f"tbt{T}{suf}e", s, f"tbt{T}{suf}p")
            sh(f"ip -n {s} link set tbt{T}{suf}p master tbt{T}br")
            if addr:
                sh(f"ip -n {n} addr add {addr}/24 dev tbt{T}{suf}e")
            ns[suf] = n
        msm_cfg = {
            "db_path": str(wd / "msm.db"), "ca_dir": str(wd / "ca"), "key_type": "ec",
            "http_address": "127.0.0.1", "https_port": 0, "dns_enabled": False,
            "status_file": str(wd / "msm.json"),
            "seed": {"mvpns": [{"name": "A", "realm": "10.10.0.0/16", "sg_public": "203.0.113.1"}],
                     "users": [{"fqdn": "mn1.mwg.test", "mvpn": "A", "private_address": "10.10.0.5"},
                               {"fqdn": "mn2.mwg.test", "mvpn": "A", "private_address": "10.10.0.6"},
                               {"fqdn": "mn3.mwg.test", "mvpn": "A", "private_address": "10.10.0.8"}]},
            "diameter": {"enabled": True, "address": "127.0.0.1", "port": 3868,
                         "exchange_log": str(wd / "msm-diameter.jsonl"),
                         "secrets": {"mn1.mwg.test": "secret-one", "mn2.mwg.test": "secret-two",
                                     "mn3.mwg.test": "secret-three"},
                         "gateways": {"A": "10.10.1.1"}},
        }
        lab.python(s, "testbed.msm", msm_cfg, "msm")
        wait_for(lambda: read_json(wd / "msm.json").get("diameter"), what="MSM DIAMETER up")
        sink_cfg = {
            "role": "sink", "address": "10.10.0.1", "identity": "msr1.mwg.test",
            "msm": {"address": "127.0.0.1", "port": 3868, "timeout": 2},
            "visitors": {"enabled": True, "fa_address": "10.10.1.2"},
            "nft_table": f"tbt{T}access",
            "dhcp": {"enabled": True, "interface": f"tbt{T}br"},
            "status_file": str(wd / "sink.json"), "log_level": "DEBUG",
        }
        lab.python(s, "testbed.access", sink_cfg, "sink")
        wait_for(lambda: read_json(wd / "sink.json")["diameter"]["peer"], what="sink status")
        yield lab, wd, ns, s, h
    finally:
        lab.close()


def start_node(lab, wd, n, suf, method="secret"):
    addr, ident, secret = NODES[suf]
    cfg = {"role": "node", "address": addr, "identity": ident, "interface": f"tbt{T}{suf}e",
           "method": method, "secret": secret, "hello_interval_ms": 300,
           "status_file": str(wd / f"{suf}.json")}
    lab.python(n, "testbed.access", cfg, f"node-{suf}")


def udp_reach(lab, src_ns, src, dst_ns, dst, n=10) -> list:
    recv = subprocess.Popen(["ip", "netns", "exec", dst_ns, sys.executable, "-c", RECV, "9999", "2.0"],
                            stdout=subprocess.PIPE, text=True)
    assert recv.stdout.readline().strip() == "ready"
    lab.run(src_ns, UDP_SEND, dst, "9999", src, str(n))
    out = recv.stdout.read()
    recv.wait(5)
    return json.loads(out.strip().splitlines()[-1])["udp"]


def test_member_attaches_and_reaches_home_host(world):
    lab, wd, ns, s, h = world
    start_node(lab, wd, ns["n1"], "n1")
    st = wait_for(lambda: (d := read_json(wd / "n1.json"))["attached"] and d, what="n1 attached")
    assert st["verdict"] == "member"
    assert ["0.0.0.0/0", "10.10.1.1", 10] in st["routes"] and ["10.10.0.0/16", "0.0.0.0", 1] in st["routes"]
    routes = sh(f"ip -n {ns['n1']} route").stdout
    assert "default via 10.10.0.1" in routes and "10.10.0.0/16 via 10.10.0.1" in routes
    got = udp_reach(lab, ns["n1"], "10.10.0.5", h, "10.10.1.2")
    assert len(got) == 10
    auth = [json.loads(x) for x in open(wd / "msm-diameter.jsonl") if '"event": "auth"' in x]
    assert any(a["identity"] == "mn1.mwg.test" and a["result_code"] == 2001 for a in auth)
    print("attach_ms secret", st["attach_ms"])


def test_forged_hello_gets_no_route_and_is_dropped(world):
    lab, wd, ns, s, h = world
    start_node(lab, wd, ns["n2"], "n2")
    wait_for(lambda: read_json(wd / "sink.json")["nodes"].get("10.10.0.6", {}).get("verdict") == "refused",
             what="n2 refused")
    time.sleep(0.5)
    assert read_json(wd / "n2.json")["attached"] is False
    sink = read_json(wd / "sink.json")
    assert sink["counters"]["refused_rejected_by_msm"] >= 1
    assert "bad authenticator" in lab.log("sink.log")
    # even with a hand-made route the sink's filter drops its packets
    sh(f"ip -n {ns['n2']} route add 10.10.1.0/24 via 10.10.0.1")
    assert udp_reach(lab, ns["n2"], "10.10.0.6", h, "10.10.1.2", n=5) == []
    counters = sh(f"ip netns exec {s} nft list chain ip tbt{T}access in_10_10_0_6").stdout
    assert "packets 0 " not in counters


IPIP_SEND = r"""
import sys
from scapy.all import IP, UDP, Raw, send, conf
conf.verb = 0
outer, fa, inner_src, inner_dst = sys.argv[1:5]
send(IP(src=outer, dst=fa, proto=4) / IP(src=inner_src, dst=inner_dst) / UDP(dport=7777) / Raw(b"tbt"), count=3)
"""


def test_visitor_only_tunnels_to_fa(world):
    lab, wd, ns, s, h = world
    start_node(lab, wd, ns["n3"], "n3")
    st = wait_for(lambda: (d := read_json(wd / "n3.json"))["attached"] and d, what="n3 answered")
    assert st["verdict"] == "visitor" and st["routes"] == [["0.0.0.0/0", "10.10.1.2", 1]]
    # IP-IP: inner source = home address (in its home M-VPN), outer = visited address (claim 48)
    recv = subprocess.Popen(["ip", "netns", "exec", h, sys.executable, "-c", RECV, "9999", "3.0"],
                            stdout=subprocess.PIPE, text=True)
    assert recv.stdout.readline().strip() == "ready"
    r = lab.run(ns["n3"], IPIP_SEND, "10.10.0.77", "10.10.1.2", "10.20.0.9", "10.20.0.1")
    assert r.returncode == 0, r.stderr
    lab.run(ns["n3"], UDP_SEND, "10.10.1.2", "9999", "10.10.0.77", "5")  # untunnelled
    got = json.loads(recv.stdout.read().strip().splitlines()[-1])
    recv.wait(5)
    assert ["10.10.0.77", "10.20.0.9", "10.20.0.1"] in got["ipip"]
    assert got["udp"] == []


def test_dhcp_node_attaches_with_udhcpc(world):
    if shutil.which("udhcpc") is None:
        pytest.skip("udhcpc (busybox) not installed")
    lab, wd, ns, s, h = world
    _a, ident, secret = NODES["n4"]
    env_file = wd / "udhcpc.env"
    args = udhcpc_args(ident, "10.10.0.8", secret, f"tbt{T}n4e", str(REPO / "testbed/access/udhcpc.script"))
    t0 = time.monotonic()
    r = subprocess.run(["ip", "netns", "exec", ns["n4"], "env", f"TB_DHCP_STATE={env_file}"] + args,
                       capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert env["event"] == "bound" and env["ip"] == "10.10.0.8"
    assert "0.0.0.0/0 10.10.0.1" in env["staticroutes"]
    assert env["router"] == "10.10.0.1"  # option 3 too (RFC 3442), the sink as in the /0 route
    routes = sh(f"ip -n {ns['n4']} route").stdout
    assert "default via 10.10.0.1" in routes
    got = udp_reach(lab, ns["n4"], "10.10.0.8", h, "10.10.1.2")
    assert len(got) == 10
    d = read_json(wd / "sink.json")["dhcp"]
    assert d["counters"]["attached"] == 1 and d["counters"]["ack"] >= 1
    print("udhcpc run s", round(elapsed, 3), "sink dhcp attach_ms", d["attach_ms"])
