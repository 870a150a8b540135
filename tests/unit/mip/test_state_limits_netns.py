"""Issue 11 section 4 for Mobile IP: a foreign agent's pending registrations and a mobile
node's heard agents cannot be grown without bound by anyone on the visited link.

    fa eth0 203.0.113.1 ─┐
    x  eth0 203.0.113.50 ┼ brV   (x: the flooder, no agent)
    mn eth0 (10.0.0.5)  ─┘
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .nslab import REPO, NsLab, needs_root, read_json, wait_for

pytestmark = [pytest.mark.netns, needs_root]

# Runs in x. argv: count, first home address index. Registration requests for a home
# agent that never answers (so each stays pending at the FA), each for another home
# address, with the care-of address the FA advertises.
FLOOD_RRQ = r"""
import socket, sys, time
from testbed.mip import messages as m
from testbed.mip.security import ntp_now
n, first = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(first, first + n):
    home = f"10.{40 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"
    s.sendto(m.build_request(flags=m.F_T, lifetime=60, home=home, ha="198.51.100.99",
                             coa="203.0.113.1", ident=ntp_now() + i, spi=300, key=b"guess"),
             ("203.0.113.1", 434))
    time.sleep(0.0005)  # the FA reads from a packet socket: a little pacing, fewer drops
"""

# Runs in x. argv: count. Agent advertisements from as many invented sources (raw IPv4
# with ICMP type 9 and the mobility extension), broadcast on the visited link.
FLOOD_ADV = r"""
import socket, sys
from scapy.layers.inet import IP
from testbed.mip import messages as m
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
for i in range(int(sys.argv[1])):
    src = f"203.0.{113 + i // 250 % 2}.{i % 250 + 2}" if i < 500 else f"198.18.{i // 250}.{i % 250 + 1}"
    icmp = m.build_advertisement(router=src, seq=i, reg_lifetime=60, flags=0x90, coas=[src])
    s.sendto(bytes(IP(src=src, dst="255.255.255.255", proto=1, ttl=1) / icmp),
             ("255.255.255.255", 0))
"""


@pytest.fixture
def link(tmp_path):
    lab = NsLab("q", tmp_path)
    try:
        lab.bridge("brV")
        fa, x, mn = lab.ns("fa"), lab.ns("x"), lab.ns("mn")
        lab.plug(fa, "eth0", "brV", "tbtqfa", "203.0.113.1/24")
        lab.plug(x, "eth0", "brV", "tbtqx", "203.0.113.50/24")
        lab.plug(mn, "eth0", "brV", "tbtqmn", "10.0.0.5/24")
        yield lab, {"fa": fa, "x": x, "mn": mn}
    finally:
        lab.close()


def run_in(ns: str, script: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
                   check=True, timeout=120, cwd=str(REPO))


def settled(status, key: str, at_least: int) -> dict:
    """The agent's status once counter `key` passed at_least and stood still for 1 s."""
    wait_for(lambda: read_json(status)["counters"].get(key, 0) >= at_least, timeout=30,
             what=f"{key} >= {at_least}")
    last = -1
    while True:
        s = read_json(status)
        if s["counters"].get(key, 0) == last:
            return s
        last = s["counters"].get(key, 0)
        time.sleep(1.0)


def fa_config(max_pending: int) -> dict:
    return {"address": "203.0.113.1", "interface": "eth0", "adv_interval": 0.5,
            "max_lifetime": 60, "pending_timeout": 30, "max_pending": max_pending}


def test_fa_pending_registrations_are_capped_with_code_66(link):
    """2,000 requests for a silent home agent: the FA keeps at most max_pending (200) of
    them and denies the rest it reads with 66 "insufficient resources" (RFC 5944 3.7.2), counted.
    The control FA (cap 100,000) keeps all 2,000 pending, so the check can fail."""
    lab, ns = link
    st = lab.agent(ns["fa"], "fa", fa_config(200), "fa")
    wait_for(lambda: "counters" in read_json(st), timeout=10, what="FA up")
    run_in(ns["x"], FLOOD_RRQ, "2000", "0")
    s = settled(st, "requests", 1000)  # (a packet socket may drop some of the flood)
    c = s["counters"]
    assert s["pending"] <= 200, s["pending"]
    assert c.get("denied_fa_insufficient_resources", 0) == c["requests"] - 200, c
    lab.named["fa"].terminate()
    lab.named["fa"].wait(5)
    st2 = lab.agent(ns["fa"], "fa", fa_config(100_000), "fa2")
    wait_for(lambda: "counters" in read_json(st2), timeout=10, what="control FA up")
    run_in(ns["x"], FLOOD_RRQ, "2000", "2000")
    s2 = settled(st2, "requests", 1000)
    assert s2["pending"] == s2["counters"]["requests"] > 200


def test_mn_heard_agents_are_capped(link):
    """1,000 agent advertisements from invented routers: the MN remembers at most
    max_agents (16) and counts the advertisements it ignored; the real FA (heard before
    the flood) is still among them. The control MN (cap 100,000) remembers all."""
    lab, ns = link
    lab.agent(ns["fa"], "fa", fa_config(1024), "fa")
    mn_cfg = {"home_address": "10.0.0.5", "home_prefix": "10.0.0.0/24",
              "home_gateway": "10.0.0.1", "home_agent": "198.51.100.11",
              "security": {"spi": 300, "key": "k"}, "interface": "eth0",
              "agent_timeout": 30, "tunnel_mode": "userspace"}
    mn = lab.agent(ns["mn"], "mn", {**mn_cfg, "max_agents": 16}, "mn")
    wait_for(lambda: "203.0.113.1" in read_json(mn).get("agents_heard", {}), timeout=15,
             what="MN heard the FA")
    lab.named["fa"].terminate()  # its own advertisements would keep the counter moving
    lab.named["fa"].wait(5)
    run_in(ns["x"], FLOOD_ADV, "1000")
    s = settled(mn, "advertisements_heard", 200)
    assert len(s["agents_heard"]) <= 16 and "203.0.113.1" in s["agents_heard"]
    assert s["counters"].get("advertisements_ignored_full", 0) > 0, s["counters"]
    lab.named["mn"].terminate()
    lab.named["mn"].wait(5)
    ctrl = lab.agent(ns["mn"], "mn", {**mn_cfg, "max_agents": 100_000}, "mn2")
    wait_for(lambda: "agents_heard" in read_json(ctrl), timeout=15, what="control MN up")
    run_in(ns["x"], FLOOD_ADV, "1000")
    wait_for(lambda: len(read_json(ctrl).get("agents_heard", {})) > 16, timeout=30,
             what="control MN remembers more than the cap")
