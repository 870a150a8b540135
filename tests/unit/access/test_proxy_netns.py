"""Routing proxy (claims 57-62) in namespaces: a DHCP node (Debian's udhcpc) behind an MSR
running the AODV agent + access sink, two AODV hops from its destination.

    N (udhcpc, no AODV) --- S (MSR: AODV + sink + DHCP, MSM on 127.0.0.1) --- R --- D
                                                                   (AODV)    (AODV)
N's first datagrams to D hit S without a route: S buffers them, discovers D, delivers
them all; D's answers find N because S answers RREQs for N's address (proxy).
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

pytestmark = [pytest.mark.netns, needs_root,
              pytest.mark.skipif(shutil.which("udhcpc") is None, reason="needs udhcpc")]

T = "px"
AODV_TIMERS = {"hello_interval_ms": 500, "active_route_timeout_ms": 6000}


def aodv_cfg(addr, wd, name):
    return {"address": addr, "managed_prefixes": ["10.10.0.0/16"], "timers": AODV_TIMERS,
            "status_file": str(wd / f"aodv-{name}.json"), "status_interval_ms": 200,
            "tun_name": f"tbt{T}{name}tun", "log_level": "DEBUG"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    wd = tmp_path_factory.mktemp("proxy-netns")
    lab = NetLab(T, wd)
    try:
        n, s, r, d = (lab.ns(x, forward=(x != "n")) for x in ("n", "s", "r", "d"))
        for ns_ in (s, r, d):
            sh(f"ip netns exec {ns_} sysctl -qw net.ipv4.conf.all.rp_filter=0")
        lab.veth(n, f"tbt{T}ns", s, f"tbt{T}sn")
        lab.veth(s, f"tbt{T}sr", r, f"tbt{T}rs")
        lab.veth(r, f"tbt{T}rd", d, f"tbt{T}dr")
        sh(f"ip -n {s} addr add 10.10.0.1/32 dev tbt{T}sn; ip -n {s} addr add 10.10.0.1/32 dev tbt{T}sr")
        sh(f"ip -n {r} addr add 10.10.0.2/32 dev tbt{T}rs; ip -n {r} addr add 10.10.0.2/32 dev tbt{T}rd")
        sh(f"ip -n {d} addr add 10.10.0.3/32 dev tbt{T}dr")
        msm_cfg = {
            "db_path": str(wd / "msm.db"), "ca_dir": str(wd / "ca"), "key_type": "ec",
            "http_address": "127.0.0.1", "https_port": 0, "dns_enabled": False,
            "status_file": str(wd / "msm.json"),
            "seed": {"mvpns": [{"name": "A", "realm": "10.10.0.0/16", "sg_public": "203.0.113.1"}],
                     "users": [{"fqdn": "mn3.mwg.test", "mvpn": "A", "private_address": "10.10.0.8"}]},
            "diameter": {"enabled": True, "address": "127.0.0.1", "port": 3868,
                         "exchange_log": str(wd / "msm-diameter.jsonl"),
                         "secrets": {"mn3.mwg.test": "secret-three"}},
        }
        lab.python(s, "testbed.msm", msm_cfg, "msm")
        wait_for(lambda: read_json(wd / "msm.json").get("diameter"), what="MSM DIAMETER up")
        msr_cfg = {"aodv": aodv_cfg("10.10.0.1", wd, "s"),
                   "access": {"address": "10.10.0.1", "port": 655, "identity": "msr1.mwg.test",
                              "msm": {"address": "127.0.0.1", "port": 3868},
                              "nft_table": f"tbt{T}access",
                              "dhcp": {"enabled": True, "interface": f"tbt{T}sn"},
                              "status_file": str(wd / "msr.json"), "log_level": "DEBUG"}}
        lab.python(s, "testbed.access.msr", msr_cfg, "msr")
        lab.python(r, "testbed.aodv", aodv_cfg("10.10.0.2", wd, "r"), "aodv-r")
        lab.python(d, "testbed.aodv", aodv_cfg("10.10.0.3", wd, "d"), "aodv-d")
        wait_for(lambda: read_json(wd / "msr.json")["aodv"], what="MSR up")
        wait_for(lambda: read_json(wd / "aodv-d.json"), what="D up")
        time.sleep(1.2)  # hellos: S-R and R-D neighbours
        yield lab, wd, {"n": n, "s": s, "r": r, "d": d}
    finally:
        lab.close()


def test_dhcp_node_first_datagrams_arrive_after_proxy_discovery(world):
    lab, wd, ns = world
    env_file = wd / "udhcpc.env"
    args = udhcpc_args("mn3.mwg.test", "10.10.0.8", "secret-three", f"tbt{T}ns",
                       str(REPO / "testbed/access/udhcpc.script"))
    r = subprocess.run(["ip", "netns", "exec", ns["n"], "env", f"TB_DHCP_STATE={env_file}"] + args,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr + lab.log("msr.log")[-3000:]
    wait_for(lambda: "10.10.0.8" in read_json(wd / "msr.json")["proxied"], what="proxied")
    # S has no route to D yet: the first datagrams start the proxy's discovery
    assert "10.10.0.3" not in sh(f"ip -n {ns['s']} route show proto 180").stdout
    before = read_json(wd / "msr.json")["aodv"]["counters"].get("rreq_sent", 0)
    recv = subprocess.Popen(["ip", "netns", "exec", ns["d"], sys.executable, "-c", RECV, "9999", "3.0"],
                            stdout=subprocess.PIPE, text=True)
    assert recv.stdout.readline().strip() == "ready"
    lab.run(ns["n"], UDP_SEND, "10.10.0.3", "9999", "10.10.0.8", "20")
    got = json.loads(recv.stdout.read().strip().splitlines()[-1])["udp"]
    recv.wait(5)
    st = read_json(wd / "msr.json")
    assert len(got) == 20, (got, st["aodv"], lab.log("msr.log")[-3000:])
    # none lost (re-injected buffered datagrams may race the first directly routed ones)
    assert sorted(m for _a, m in got) == sorted(f"tbt-{i}" for i in range(20))
    assert st["aodv"]["counters"].get("rreq_sent", 0) > before
    assert st["aodv"]["buffered"] >= 1
    # the way back: D discovers N's address, which S answers as N's proxy
    back = subprocess.Popen(["ip", "netns", "exec", ns["n"], sys.executable, "-c", RECV, "9998", "3.0"],
                            stdout=subprocess.PIPE, text=True)
    assert back.stdout.readline().strip() == "ready"
    lab.run(ns["d"], UDP_SEND.replace("9999", "9998"), "10.10.0.8", "9998", "10.10.0.3", "10")
    got_back = json.loads(back.stdout.read().strip().splitlines()[-1])["udp"]
    back.wait(5)
    assert len(got_back) == 10, lab.log("aodv-d.log")[-2000:]
