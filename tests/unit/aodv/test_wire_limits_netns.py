"""Issue 11 sections 3 and 4 for AODV: wire-field widths and state a peer cannot grow.

One agent ("b") in a namespace; a node without an agent ("f") speaks AODV to it from a
script: well-formed messages at the edges of their fields, then a bounded flood from
invented (spoofed) addresses. The agent must answer with values that fit, drop and count
what cannot fit, and keep every table within its configured bound while the legitimate
peer still gets its answers.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from .netns_lab import PYTHON, Lab
from .test_agent_netns import FAST, NET, addr, labs  # noqa: F401 (labs: the fixture)

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

#: the talking node's two addresses: .9 sends the route information, .10 asks for it
F1, F2 = addr(9), addr(10)


def one_agent(lab: Lab, **cfg) -> None:
    """b runs the agent, f (two addresses, no agent) is linked to it."""
    lab.add_node("b", addr(2))
    lab.add_node("f", F1)
    lab.link("f", "b")
    lab.exec("f", "ip", "addr", "add", f"{F2}/32", "dev", lab.ifname("f", "b"))
    lab.start("b", lab.config("b", **{"managed_prefixes": [NET], "timers": FAST, **cfg}))
    lab.wait_status("b", lambda s: len(s.get("interfaces", {})) == 1)


# Runs in f. argv: script (JSON list of steps), interface. A step sends one message from
# an address ("from") and, with "expect", waits up to 2 s for a RREP about that
# destination; it prints one JSON line per step: the RREP's hop count/lifetime, or null.
TALK = r"""
import json, select, socket, sys, time
from testbed.aodv.messages import RREP, RREQ, parse_message
steps, ifname = json.loads(sys.argv[1]), sys.argv[2]
socks = {}
def sock(addr):
    if addr not in socks:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        s.bind((addr, 654))
        socks[addr] = s
    return socks[addr]
for st in steps:
    cls = {"RREQ": RREQ, "RREP": RREP}[st.pop("kind")]
    src, to, expect = st.pop("from"), st.pop("to"), st.pop("expect", None)
    s = sock(src)
    s.sendto(bytes(cls(**st)), (to, 654))
    got = None
    end = time.monotonic() + 2.0
    while expect and time.monotonic() < end:
        if not select.select([s], [], [], 0.1)[0]:
            continue
        m = parse_message(s.recv(2048))
        if isinstance(m, RREP) and m.dst == expect:
            got = {"hop_count": m.hop_count, "lifetime": m.lifetime}
            break
    print(json.dumps(got), flush=True)
"""


def talk(lab: Lab, steps: list[dict]) -> list:
    out = lab.exec("f", PYTHON, "-c", TALK, json.dumps(steps), lab.ifname("f", "b"))
    return [json.loads(x) for x in out.stdout.splitlines()]


def test_hop_count_255_is_dropped_and_254_answered_as_255(labs):
    """RFC 3561 5.1/5.2: Hop Count has 8 bits; 6.5/6.7 add one before storing. A RREP or
    RREQ at 255 is dropped and counted (a route of 256 hops could never be told on); one at
    254 becomes a 255-hop route that an intermediate RREP (6.6.2) carries exactly."""
    lab = labs()
    one_agent(lab)
    u = 0x01  # RREQ flags: U (unknown seqno); TTL 1, so b answers or drops, never forwards
    res = talk(lab, [
        dict(kind="RREP", hop_count=254, dst="10.97.0.50", dst_seq=5, orig="10.97.0.77",
             lifetime=60000, **{"from": F1, "to": addr(2)}),
        dict(kind="RREP", hop_count=255, dst="10.97.0.51", dst_seq=5, orig="10.97.0.77",
             lifetime=60000, **{"from": F1, "to": addr(2)}),
        dict(kind="RREQ", hop_count=255, rreq_id=7, dst="10.97.0.52", orig="10.97.0.53",
             orig_seq=3, flags=u, **{"from": F1, "to": addr(2)}),
        # the legitimate question for each: only the 254-hop route exists to answer it
        dict(kind="RREQ", hop_count=0, rreq_id=1, dst="10.97.0.50", orig=F2, orig_seq=1,
             flags=u, expect="10.97.0.50", **{"from": F2, "to": addr(2)}),
        dict(kind="RREQ", hop_count=0, rreq_id=2, dst="10.97.0.51", orig=F2, orig_seq=2,
             flags=u, expect="10.97.0.51", **{"from": F2, "to": addr(2)}),
        dict(kind="RREQ", hop_count=0, rreq_id=3, dst="10.97.0.53", orig=F2, orig_seq=3,
             flags=u, expect="10.97.0.53", **{"from": F2, "to": addr(2)}),
    ])
    assert res[3] is not None and res[3]["hop_count"] == 255, res
    assert 0 < res[3]["lifetime"] <= 60000, res
    assert res[4] is None and res[5] is None, res
    st = lab.wait_status("b", lambda s: s["counters"].get("rreq_received", 0) >= 3)
    hops = {r["dst"]: r["hop_count"] for r in st["routes"]}
    assert hops.get("10.97.0.50") == 255, hops
    assert "10.97.0.51" not in hops and "10.97.0.53" not in hops, hops
    assert max(hops.values()) <= 255, hops
    c = st["counters"]
    assert c.get("hop_count_overflow_dropped") == 2, c
    assert c.get("internal_errors", 0) == 0, lab.log_tail("b", 60)


def test_weight_sum_at_the_top_of_its_field_is_forwarded_saturated(labs):
    """Claims 63-66: a WEIGHT extension of 2**32 - 1 plus our hop's weight does not fit the
    32-bit field; the sum is held at 2**32 - 1 and the RREQ still goes out (no internal
    error), so the most expensive path stays the most expensive."""
    lab = labs()
    lab.add_node("b", addr(2))
    lab.add_node("c", addr(3))
    lab.add_node("f", F1)
    lab.link("f", "b")
    lab.link("b", "c")
    ws = {"enabled": True, "default_weight": 5}
    for n in "bc":
        lab.start(n, lab.config(n, managed_prefixes=[NET], timers=FAST, weighted_search=ws))
    lab.wait_status("b", lambda s: addr(3) in s.get("neighbours", {}))
    send = (
        "import socket, sys\n"
        "from testbed.aodv.messages import RREQ, WeightExt\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, sys.argv[1].encode())\n"
        "s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 3)\n"
        f"s.bind(('{F1}', 654))\n"
        "m = RREQ(flags=1, rreq_id=9, dst='10.97.0.60', orig='10.97.0.61', orig_seq=1,\n"
        "         extensions=[WeightExt(weight=2**32 - 1)])\n"
        f"s.sendto(bytes(m), ('{addr(2)}', 654))\n")
    lab.exec("f", PYTHON, "-c", send, lab.ifname("f", "b"))
    st = lab.wait_status("c", lambda s: s["counters"].get("rreq_received", 0) >= 1)
    rev = {r["dst"]: r for r in st["routes"]}.get("10.97.0.61")
    assert rev is not None and rev["weight"] == 2**32 - 1, st["routes"]
    for n in "bc":
        assert lab.status(n)["counters"].get("internal_errors", 0) == 0, lab.log_tail(n, 60)


# Runs in f: a bounded flood from invented addresses, sent as raw IPv4 (any source).
# argv: interface, b's address, number of rounds, F2, b's MAC, first round's number. Each round: a RREQ from a new previous
# hop and originator (four of each) with a new RREQ ID (seen IDs), a hello from a new neighbour
# with the longest lifetime the field can say (neighbours), a RREP from a new previous hop
# towards F2 (precursors of b's route to F2), and a datagram from a new source to a new
# destination through b (b's traffic monitor and packet buffer).
FLOOD = r"""
import socket, sys
from scapy.layers.inet import IP, UDP
from testbed.aodv.messages import RREP, RREQ, hello
ifname, b, rounds, first = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[6])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
l2 = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
mac = bytes.fromhex(sys.argv[5].replace(":", ""))
def a(net, i):
    return f"10.{net}.{i // 250}.{i % 250 + 1}"
def out(src, msg, ttl=1, dport=654):
    s.sendto(bytes(IP(src=src, dst=b, ttl=ttl) / UDP(sport=654, dport=dport) / msg), (b, 0))
for i in range(first, first + rounds):
    out(a(200, i % 4), RREQ(flags=1, rreq_id=i, dst=a(201, i), orig=a(202, i % 4), orig_seq=1))
    out(a(203, i), hello(a(203, i), 1, 2**32 - 1))
    out(a(204, i), RREP(hop_count=1, dst=a(205, i), dst_seq=1, orig=sys.argv[4], lifetime=9000))
    l2.sendto(bytes(IP(src=a(206, i), dst=f"10.97.0.{128 + i % 100}", ttl=9) / UDP(dport=9)),
              (ifname, 0x0800, 0, 0, mac))
"""

BOUNDS = {"max_routes": 300, "max_neighbours": 20, "max_seen_rreq": 100, "max_precursors": 8,
          "max_tracked_addresses": 50}
LIFTED = {k: 100000 for k in BOUNDS}
#: RSS growth allowed in the second flood. Measured on 2026-11-29: 1.6 MB bounded, 2.4 MB
#: lifted (CPython keeps freed memory, so RSS hardly tells the two apart at this scale; the
#: table sizes do). A generous bound that still catches a leak per message (>= 500 B each).
MAX_GROWTH_KB = 8 * 1024


def flood(lab: Lab, rounds: int, first: int = 0) -> None:
    """The datagrams go to b's managed prefix through b (as frames to b's MAC). F2 says
    hello first (Lifetime 15 s = DELETE_PERIOD), so b's route to F2, which the RREPs'
    precursors attach to, lasts the flood even on a loaded machine."""
    talk(lab, [dict(kind="RREP", hop_count=0, dst=F2, dst_seq=1, orig=F2, lifetime=15000,
                    **{"from": F2, "to": addr(2)})])
    mac = lab.exec("b", "cat", f"/sys/class/net/{lab.ifname('b', 'f')}/address").stdout.strip()
    lab.exec("f", PYTHON, "-c", FLOOD, lab.ifname("f", "b"), addr(2), str(rounds), F2, mac,
             str(first))


def settled(lab: Lab) -> dict:
    """b's status once it has read everything (messages_received still for 1 s)."""
    last, st = -1, {}
    for _ in range(60):
        st = lab.wait_status("b", lambda s: "counters" in s)
        n = st["counters"].get("messages_received", 0)
        if n == last:
            return st
        last = n
        time.sleep(1.0)
    raise AssertionError(f"b never settled: {st.get('counters')}")


def rss_kb(lab: Lab) -> int:
    pid = lab.procs["b"].pid  # `ip netns exec` execs the agent: same process
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_flood_from_invented_addresses_stays_within_bounds(labs):
    """Issue 11 section 4: twice 1,500 rounds of RREQs, hellos, RREPs and datagrams from
    invented addresses (15,000 messages). Every table b keeps stays within its bound, each bound is counted
    when reached, memory stays flat, and the legitimate peer F2 is still answered. The same
    flood on an agent with the bounds lifted (the control) grows the tables past them, so
    the assertions can fail."""
    lab, ctrl = labs(), labs()
    # RFC default timers: RREQ IDs are remembered PATH_DISCOVERY_TIME = 5.6 s
    one_agent(lab, log_level="INFO", timers={}, **BOUNDS)
    one_agent(ctrl, log_level="INFO", timers={}, **LIFTED)
    u = 0x01
    ask = [dict(kind="RREQ", hop_count=0, rreq_id=1, dst=addr(2), orig=F2, orig_seq=1, flags=u,
                expect=addr(2), **{"from": F2, "to": addr(2)})]
    for x in (lab, ctrl):
        assert talk(x, ask)[0] is not None
    # memory: the first flood fills the tables to their bounds (and warms up the code);
    # a second one with new addresses must not grow the bounded agent further
    for x in (lab, ctrl):
        flood(x, 1500)
    settled(lab), settled(ctrl)
    rss1 = {x.suffix: rss_kb(x) for x in (lab, ctrl)}
    for x in (lab, ctrl):
        flood(x, 1500, first=1500)
    st = settled(lab)
    ct = settled(ctrl)["tables"]
    grown = {x.suffix: rss_kb(x) - rss1[x.suffix] for x in (lab, ctrl)}
    print("RSS growth in the second flood, kB:", grown)
    t, c = st["tables"], st["counters"]
    assert t["routes"] <= BOUNDS["max_routes"], t
    assert t["neighbours"] <= BOUNDS["max_neighbours"], t
    assert t["seen_rreq"] <= BOUNDS["max_seen_rreq"], t
    assert t["precursors_max"] <= BOUNDS["max_precursors"], t
    assert max(t["monitor"].values()) <= BOUNDS["max_tracked_addresses"], t
    assert t["buffer_queues"] == 0, t  # refused datagrams leave no empty queue behind
    for k in ("route_table_full_dropped", "neighbour_table_full_dropped", "rreq_seen_evicted",
              "precursors_refused", "monitor_untracked"):
        assert c.get(k, 0) > 0, (k, c)
    assert c.get("internal_errors", 0) == 0, lab.log_tail("b", 60)
    assert grown[lab.suffix] < MAX_GROWTH_KB, grown
    # the legitimate peer: its route to b (and b's to it) is still there or is made again
    # (flood routes to invented neighbours live ACTIVE_ROUTE_TIMEOUT, 3 s, then make room)
    answers = []
    for rreq_id in (2, 3, 4):
        ask[0]["rreq_id"] = rreq_id
        answers.append(talk(lab, ask)[0])
        if answers[-1] is not None:
            break
    assert answers[-1] is not None, (answers, lab.log_tail("b", 40))
    # control: without the bounds the same flood grows the same tables past them
    assert ct["routes"] > BOUNDS["max_routes"] and ct["neighbours"] > BOUNDS["max_neighbours"]
    assert ct["seen_rreq"] > BOUNDS["max_seen_rreq"], ct
    assert ct["precursors_max"] > BOUNDS["max_precursors"], ct
    assert ct["monitor"]["from_src"] > BOUNDS["max_tracked_addresses"], ct
