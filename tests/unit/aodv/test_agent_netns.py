"""The agent for real: host network namespaces joined by veths, agents as subprocesses.

Addresses are /32 on every link (as in a MANET), so only AODV's routes connect the nodes.
"""
from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from .netns_lab import PYTHON, REPO, Lab

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

NET = "10.97.0.0/24"
FAST = {"node_traversal_time_ms": 10, "net_diameter": 6, "rreq_retries": 1}


_counter = iter(range(10**6))


def _suffix() -> str:
    return format((os.getpid() * 7 + next(_counter)) % 4096, "03x")


@pytest.fixture
def lab(request):
    lab = Lab(_suffix())
    yield lab
    _finish(request, [lab])


@pytest.fixture
def labs(request):
    """Factory: several labs in one test (variants run side by side, in the same run)."""
    made: list[Lab] = []

    def make() -> Lab:
        made.append(Lab(_suffix()))
        return made[-1]

    yield make
    _finish(request, made)


def _finish(request, labs: list[Lab]) -> None:
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for lab in labs:
            for n in lab.nodes:
                print(f"----- log of {lab.suffix}/{n}\n{lab.log_tail(n, 60)}")
    for lab in labs:
        lab.cleanup()


def addr(i: int) -> str:
    return f"10.97.0.{i}"


def chain(lab: Lab, names: str, **cfg) -> None:
    for i, n in enumerate(names, start=1):
        lab.add_node(n, addr(i))
    for a, b in zip(names, names[1:]):
        lab.link(a, b)
    for n in names:
        c = {"managed_prefixes": [NET], **cfg}
        lab.start(n, lab.config(n, **c))
    lab.wait_agents()


def counters(lab: Lab, n: str) -> dict:
    return lab.status(n).get("counters", {})


def ping_loss(out: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def test_chain_discovery_buffers_first_packet_and_reaches_prefix(lab):
    """4-hop chain: the very first ping is buffered during discovery and still answered;
    the far end answers for a whole prefix (RREP prefix size) like a gateway."""
    names = "abcd"
    for i, n in enumerate(names, start=1):
        lab.add_node(n, addr(i))
    for a, b in zip(names, names[1:]):
        lab.link(a, b)
    # host h (no AODV) behind the gateway d
    lab.add_node("h", "198.51.100.7")
    lab.link("d", "h")
    lab.exec("h", "ip", "route", "add", "default", "via", addr(4), "dev", lab.ifname("h", "d"),
             "onlink")
    lab.exec("d", "ip", "route", "add", "198.51.100.7/32", "dev", lab.ifname("d", "h"))
    for n in names:
        extra = {"announced_prefixes": ["198.51.100.0/24"]} if n == "d" else {}
        lab.start(n, lab.config(n, managed_prefixes=[NET, "198.51.100.0/24"], **extra))
    lab.wait_agents()
    r = lab.ping("a", addr(4), count=1, wait=3)
    assert "1 received" in r.stdout, r.stdout
    st = lab.wait_status("a", lambda s: s["route_installs"])
    inst = [i for i in st["route_installs"] if i["dst"] == addr(4)][0]
    assert inst["hop_count"] == 3 and inst["next_hop"] == addr(2)
    assert st["counters"]["buffered"] >= 1 and st["counters"]["reinjected"] >= 1
    routes = lab.exec("a", "ip", "route", "show", "proto", "180").stdout
    assert f"{addr(4)} via {addr(2)}" in routes and f"{NET} dev aodv0" in routes
    lab.wait_status("b", lambda s: s["counters"].get("rreq_forwarded", 0) >= 1)
    # gateway prefix
    r = lab.ping("a", "198.51.100.7", count=1, wait=3)
    assert "1 received" in r.stdout, r.stdout
    routes = lab.exec("b", "ip", "route", "show", "proto", "180").stdout
    assert f"198.51.100.0/24 via {addr(3)}" in routes, routes
    # malformed and truncated AODV messages: dropped, counted, agent keeps working
    send = ("import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for p in (b'', b'\\x01\\x00', b'\\x02'+bytes(5), b'\\x03\\x00\\x00\\x09', "
            f"b'\\x01'+bytes(23)+b'\\x81\\x09', b'\\xff'*40, "
            f"b'\\x02\\x00\\x00\\x00'+bytes(4)+bytes(12)):\n"
            f"    s.sendto(p, ('{addr(2)}', 654))\n")
    lab.exec("a", "python3", "-c", send)
    # the last one is well formed but names 0.0.0.0: refused too, no route to it
    lab.wait_status("b", lambda s: s["counters"].get("malformed_dropped", 0) >= 6)
    assert "0.0.0.0" not in lab.exec("b", "ip", "route", "show", "proto", "180").stdout
    assert lab.procs["b"].poll() is None
    assert "1 received" in lab.ping("a", addr(4), count=1, wait=2).stdout


def test_link_break_sends_rerr_and_unreachable_after_failed_discovery(lab):
    chain(lab, "abc", timers=FAST)
    assert "1 received" in lab.ping("a", addr(3), count=1, wait=3).stdout
    lab.wait_status("a", lambda s: any(r["dst"] == addr(3) and r["state"] == "valid"
                                       for r in s["routes"]))
    lab.unlink("b", "c")
    st = lab.wait_status("a", lambda s: s["counters"].get("rerr_received", 0) >= 1)
    route = [r for r in st["routes"] if r["dst"] == addr(3)][0]
    assert route["state"] == "invalid"
    lab.wait_status("b", lambda s: s["counters"].get("rerr_sent", 0) >= 1)
    assert addr(3) not in lab.exec("a", "ip", "route", "show", "proto", "180").stdout
    # no route any more: buffered, discovery fails, ICMP host unreachable to the sender
    r = lab.ping("a", addr(3), count=1, wait=3)
    assert "0 received" in r.stdout
    st = lab.wait_status("a", lambda s: s["counters"].get("icmp_unreachable_sent", 0) >= 1)
    assert st["counters"]["discoveries_failed"] >= 1
    assert "Unreachable" in r.stdout, r.stdout
    # SIGTERM: the agent removes exactly its own routes and its TUN
    lab.exec("a", "ip", "route", "add", "192.0.2.0/24", "dev", lab.ifname("a", "b"))
    lab.stop("a")
    assert lab.exec("a", "ip", "route", "show", "proto", "180").stdout.strip() == ""
    assert "192.0.2.0/24" in lab.exec("a", "ip", "route").stdout
    assert "aodv0" not in lab.exec("a", "ip", "link").stdout


def setup_handover(lab: Lab, enabled: bool, segments: bool) -> None:
    """Chain r1-r2-r3; the MN is attached to r3, by its own veth or on r3's segment."""
    for n, a in (("1", addr(1)), ("2", addr(2)), ("3", addr(3)), ("m", addr(50))):
        lab.add_node(n, a)
    lab.link("1", "2")
    lab.link("2", "3")
    if segments:
        lab.add_node("s", addr(254))  # switch namespace, no agent
        lab.bridge("s", "br2")
        lab.bridge("s", "br3")
        lab.port("2", "s", "br2")
        lab.port("3", "s", "br3")
        lab.port("m", "s", "br3")
    else:
        lab.link("m", "3")
    for n in "123":
        lab.start(n, lab.config(n, managed_prefixes=[NET], handover={"enabled": enabled}))
    lab.start("m", lab.config("m", role="mn", managed_prefixes=[NET],
                              handover={"enabled": enabled}))


def test_handover_with_and_without_extension(labs):
    """Three labs side by side; the MN pings r1 at 100/s and moves from r3 to r2:
    ext-veth: its veth is deleted and re-created towards r2 (extension on);
    ext-seg / plain-seg: its port moves to r2's segment, its interface stays."""
    ext_veth, ext_seg, plain_seg = labs(), labs(), labs()
    setup_handover(ext_veth, True, segments=False)
    setup_handover(ext_seg, True, segments=True)
    setup_handover(plain_seg, False, segments=True)
    every = (ext_veth, ext_seg, plain_seg)
    for lab in every:
        lab.wait_agents()
    for lab in (ext_veth, ext_seg):
        lab.wait_status("m", lambda s: s["handover"]["sink"] == addr(3))
    for lab in every:
        assert "1 received" in lab.ping("m", addr(1), count=1, wait=3).stdout
    pings = [subprocess.Popen(["ip", "netns", "exec", lab.ns("m"), "ping", "-n", "-i", "0.01",
                               "-c", "300", "-W", "1", addr(1)], stdout=subprocess.PIPE,
                              text=True) for lab in every]
    time.sleep(0.7)
    ext_veth.unlink("m", "3")
    ext_veth.link("m", "2")
    ext_seg.move_port("m", "s", "br2")
    plain_seg.move_port("m", "s", "br2")
    lost = []
    for p in pings:
        sent, got = ping_loss(p.communicate(timeout=30)[0])
        lost.append(sent - got)
    for lab in (ext_veth, ext_seg):
        # claims 27-36 visible in the agents' state
        st = lab.wait_status("m", lambda s: s["handover"]["sink"] == addr(2))
        done = [e for e in st["events"] if e["kind"] == "handover_done"]
        assert done and done[-1]["old_sink"] == addr(3) and addr(1) in done[-1]["migrated"]
        assert counters(lab, "2")["handover_bind_sent"] == 1
        assert counters(lab, "3")["handover_ack_sent"] == 1
        # claim 33: the old sink now routes to the MN via the new sink (seqno S+1)
        r3 = [r for r in lab.status("3")["routes"] if r["dst"] == addr(50)][0]
        assert r3["next_hop"] == addr(2) and r3["seq"] == done[-1]["seq"]
        # claim 29 path: the new sink had a route with the registered seqno: no LOCATE
        assert counters(lab, "2").get("discoveries_started", 0) == 0
    # plain AODV: no handover machinery; the MN found the loss by missing hellos
    pst = plain_seg.status("m")
    assert pst["counters"].get("handover_completed", 0) == 0
    assert any(i["dst"] == addr(1) and i["next_hop"] == addr(2) for i in pst["route_installs"])
    print(f"handover, pings lost of 300 at 100/s: extension (veth re-created) {lost[0]}, "
          f"extension (segment move) {lost[1]}, plain AODV (segment move) {lost[2]}")
    assert lost[0] <= 10
    assert lost[1] < lost[2]


def setup_mesh(lab: Lab, weighted: bool) -> list[str]:
    """s reaches t over a 6-node mesh; weights make s->b->d->t the cheap path."""
    names = {"s": 1, "a": 2, "b": 3, "c": 4, "d": 5, "t": 7}
    for n, i in names.items():
        lab.add_node(n, addr(i))
    edges = ["sa", "sb", "sc", "ab", "bc", "ad", "bd", "cd", "dt", "ct"]
    for e in edges:
        lab.link(e[0], e[1])
    heavy = {addr(names["a"]): 5, addr(names["c"]): 5}
    for n in names:
        ws = {"enabled": weighted, "weights": heavy}
        lab.start(n, lab.config(n, managed_prefixes=[NET], weighted_search=ws,
                                intermediate_reply=False))
    return edges


def test_ring_search_weighted_sends_fewer_rreqs(labs):
    plain, weighted = labs(), labs()
    edges = setup_mesh(plain, False)
    setup_mesh(weighted, True)
    tx = []
    for lab in (plain, weighted):
        lab.wait_agents()
        for n in lab.nodes:  # everyone knows its neighbours (hellos) before the discovery
            deg = sum(n in e for e in edges)
            lab.wait_status(n, lambda s, d=deg: len(s["neighbours"]) >= d)
    for lab in (plain, weighted):
        assert "1 received" in lab.ping("s", addr(7), count=1, wait=3).stdout
    time.sleep(0.3)
    for lab in (plain, weighted):
        tx.append(sum(counters(lab, n).get("rreq_tx", 0) for n in lab.nodes))
    inst = [i for i in weighted.status("s")["route_installs"] if i["dst"] == addr(7)][0]
    print(f"ring search s->t: plain {tx[0]} RREQ transmissions, weighted {tx[1]} "
          f"(route {inst['hop_count']} hops via {inst['next_hop']})")
    assert inst["next_hop"] == addr(3)  # the cheap neighbour b
    assert tx[1] < tx[0]
    assert tx[1] <= 8 and tx[0] >= 10


def max_gap(out: str) -> float:
    """Longest silence between two answered pings (ping -D timestamps)."""
    ts = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
    return max((b - a for a, b in zip(ts, ts[1:])), default=float("inf"))


def setup_long_session(lab: Lab, gratuitous: bool) -> None:
    # route lifetime (MY_ROUTE_TIMEOUT) 1.2 s; the stream lasts 4 s (> 3 x lifetime)
    timers = {"active_route_timeout_ms": 600}
    for i, n in enumerate("abc", start=1):
        lab.add_node(n, addr(i))
    lab.link("a", "b")
    lab.link("b", "c")
    for n in "abc":
        lab.start(n, lab.config(n, managed_prefixes=[NET], timers=timers, refresh_on_use=False,
                                route_refresh_threshold_ms=300,
                                gratuitous={"enabled": gratuitous, "threshold_ms": 800}))


def test_long_session_gratuitous_rrep(labs):
    """Routes live only as long as their RREP said (refresh_on_use off). With gratuitous
    RREPs from the reply source the requester never re-discovers; without, it must."""
    off, on = labs(), labs()
    setup_long_session(off, False)
    setup_long_session(on, True)
    for lab in (off, on):
        lab.wait_agents()
    procs = [subprocess.Popen(["ip", "netns", "exec", lab.ns("a"), "ping", "-D", "-n", "-c",
                               "80", "-i", "0.05", "-W", "1", addr(3)], stdout=subprocess.PIPE,
                              text=True) for lab in (off, on)]
    res = []
    for lab, p in zip((off, on), procs):
        out = p.communicate(timeout=30)[0]
        sent, got = ping_loss(out)
        grat = sum(counters(lab, n).get("grat_rrep_sent", 0) for n in "abc")
        res.append({"lost": sent - got, "gap": max_gap(out), "grat": grat,
                    "disc": counters(lab, "a").get("discoveries_started"),
                    "expired": counters(lab, "a").get("routes_expired", 0)})
    print(f"long session: without gratuitous {res[0]}, with {res[1]}")
    assert res[0]["grat"] == 0 and res[0]["disc"] > 1  # the requester had to re-discover
    assert res[1]["grat"] >= 3 and res[1]["disc"] == 1 and res[1]["expired"] == 0
    assert res[1]["lost"] == 0 and res[1]["gap"] < 0.25


def test_weighted_search_falls_back_when_cheap_paths_dead_end(lab):
    """s's cheapest neighbour a leads nowhere; after the weighted rings, plain flooding."""
    names = {"s": 1, "a": 2, "b": 3, "t": 4}
    for n, i in names.items():
        lab.add_node(n, addr(i))
    for e in ("sa", "sb", "bt"):
        lab.link(e[0], e[1])
    ws = {"enabled": True, "weights": {addr(2): 1, addr(3): 9}}
    for n in names:
        lab.start(n, lab.config(n, managed_prefixes=[NET], weighted_search=ws, timers=FAST))
    lab.wait_agents()
    lab.wait_status("s", lambda s: len(s["neighbours"]) >= 2)
    lab.wait_status("b", lambda s: len(s["neighbours"]) >= 2)
    r = lab.ping("s", addr(4), count=1, wait=5)
    assert "1 received" in r.stdout, r.stdout
    st = lab.wait_status("s", lambda s: s["route_installs"])
    assert st["counters"]["weighted_fallbacks"] == 1
    assert st["route_installs"][0]["next_hop"] == addr(3)


def test_handover_to_unreachable_old_sink_fails_over_to_rediscovery(lab):
    """Claim 35 (alternative) and 37: the old sink is gone; the new sink's LOCATE fails, it
    sends the MN a RERR, and the MN re-discovers its active peer at once."""
    for n, a in (("1", addr(1)), ("2", addr(2)), ("3", addr(3)), ("m", addr(50))):
        lab.add_node(n, a)
    lab.link("1", "2")
    lab.link("2", "3")
    lab.link("m", "3")
    for n in "123":
        lab.start(n, lab.config(n, managed_prefixes=[NET], handover={"enabled": True},
                                timers=FAST))
    lab.start("m", lab.config("m", role="mn", managed_prefixes=[NET],
                              handover={"enabled": True}, timers=FAST))
    lab.wait_agents()
    lab.wait_status("m", lambda s: s["handover"]["sink"] == addr(3))
    assert "1 received" in lab.ping("m", addr(1), count=1, wait=3).stdout
    lab.stop("3")
    lab.unlink("2", "3")
    lab.unlink("m", "3")
    lab.link("m", "2")
    st = lab.wait_status("m", lambda s: s["handover"]["sink"] == addr(2)
                         and s["counters"].get("handover_failures_seen"))
    lab.wait_status("2", lambda s: s["counters"].get("handover_failed") == 1)
    assert "1 received" in lab.ping("m", addr(1), count=1, wait=3).stdout
    st = lab.wait_status("m", lambda s: any(i["dst"] == addr(1) and i["next_hop"] == addr(2)
                                            for i in s["route_installs"]))
    assert st["counters"]["handover_optimise_rreq"] >= 1


HOOKED_AGENT = """
import json, sys
from testbed.aodv.agent import Agent
from testbed.aodv.config import load_config

class Hook:  # the access_hook contract (testbed/aodv/access_hook.py)
    def on_hello(self, m, prev, iface):
        return "refuse" if any(e.data == b"bad" for e in m.extensions) else "admit"
    def proxied(self, addr):
        return addr == "10.97.0.77"
    def readers(self):
        return []
    def status(self):
        return {"hook": "test"}

Agent(load_config(sys.argv[1]), access_hook=Hook()).run()
"""

SEND_HELLO = """
import socket, sys
from testbed.aodv.messages import AODVExtension, hello
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, sys.argv[2].encode())
s.bind((sys.argv[1], 654))
s.sendto(bytes(hello(sys.argv[1], 1, 2000, [AODVExtension(type=131, data=sys.argv[3].encode())])),
         ("255.255.255.255", 654))
"""


def test_access_hook_refuses_hellos_and_proxies(lab):
    """The agent asks the access plane (issue 5) about hellos with access extensions and
    answers RREQs for the nodes it proxies."""
    lab.add_node("a", addr(1))
    lab.add_node("b", addr(2))
    lab.link("a", "b")
    cfg = lab.tmp / "b.cfg.json"
    cfg.write_text(__import__("json").dumps(lab.config("b", managed_prefixes=[NET])))
    lab.logs["b"] = lab.tmp / "b.log"
    lab.procs["b"] = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("b"), PYTHON, "-c",
         HOOKED_AGENT, str(cfg)], cwd=str(REPO), stderr=open(lab.logs["b"], "w"))
    lab.wait_status("b", lambda s: "counters" in s)
    send = [PYTHON, "-c", SEND_HELLO, addr(1), lab.ifname("a", "b")]
    subprocess.run(["ip", "netns", "exec", lab.ns("a"), *send, "bad"], cwd=str(REPO), check=True)
    st = lab.wait_status("b", lambda s: s["counters"].get("access_refuse", 0) >= 1)
    assert addr(1) not in st["neighbours"] and st["access"] == {"hook": "test"}
    subprocess.run(["ip", "netns", "exec", lab.ns("a"), *send, "good"], cwd=str(REPO),
                   check=True)
    lab.wait_status("b", lambda s: addr(1) in s["neighbours"])
    # a RREQ for the proxied address is answered by b as if it were the destination
    lab.start("a", lab.config("a", managed_prefixes=[NET], hello_enabled=False))
    lab.wait_agents()
    lab.ping("a", "10.97.0.77", count=1, wait=2)
    st = lab.wait_status("a", lambda s: any(i["dst"] == "10.97.0.77" for i in s["route_installs"]))
    assert [i for i in st["route_installs"] if i["dst"] == "10.97.0.77"][0]["next_hop"] == addr(2)


FUZZ = """
import random, socket, sys
from testbed.aodv.messages import (RERR, RREP, RREQ, HandoverExt, RREPAck, Unreachable,
                                   WeightExt, GratuitousExt, AODVExtension)
rnd = random.Random(int(sys.argv[2]))
def ip():
    return rnd.choice(["10.97.0.%d" % rnd.randrange(1, 8), "10.97.0.50", "0.0.0.0",
                       "255.255.255.255", "127.0.0.1", "224.0.0.1", sys.argv[1]])
def exts():
    pool = [lambda: HandoverExt(kind=rnd.randrange(0, 8), mn_seq=rnd.randrange(2**32), addr=ip()),
            lambda: WeightExt(weight=rnd.randrange(2**32)), lambda: GratuitousExt(),
            lambda: AODVExtension(type=rnd.randrange(256), data=bytes(rnd.randrange(5)))]
    return [rnd.choice(pool)() for _ in range(rnd.randrange(3))]
def msg():
    k = rnd.randrange(4)
    seq = lambda: rnd.choice([0, 1, 2, 2**31, 2**32 - 1, rnd.randrange(2**32)])
    if k == 0:
        return RREQ(flags=rnd.randrange(32), hop_count=rnd.randrange(256),
                    rreq_id=rnd.randrange(10000, 10009),
                    dst=ip(), dst_seq=seq(), orig=ip(), orig_seq=seq(), extensions=exts())
    if k == 1:
        return RREP(flags=rnd.randrange(4), prefix_sz=rnd.randrange(32), hop_count=rnd.randrange(256),
                    dst=ip(), dst_seq=seq(), orig=ip(), lifetime=rnd.randrange(10000), extensions=exts())
    if k == 2:
        return RERR(flags=rnd.randrange(2), unreachable=[Unreachable(dst=ip(), seq=seq())
                    for _ in range(rnd.randrange(1, 4))], extensions=exts())
    return RREPAck()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, sys.argv[3].encode())
s.bind((sys.argv[1], 654))
for i in range(600):
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, rnd.randrange(1, 5))
    dst = "255.255.255.255" if rnd.random() < 0.5 else sys.argv[4]
    s.sendto(bytes(msg()), (dst, 654))
"""


def test_fuzzed_well_formed_messages_cause_no_internal_errors(lab):
    """600 random but well-formed messages (odd seqnos, addresses, extension kinds) from a
    node without an agent at a chain's middle node: no agent ever hits an internal error,
    and routing works again once the forged state is gone."""
    chain(lab, "abc")
    lab.add_node("f", addr(9))
    lab.link("f", "b")
    lab.wait_status("b", lambda s: len(s["interfaces"]) == 3)
    subprocess.run(["ip", "netns", "exec", lab.ns("f"), PYTHON, "-c", FUZZ, addr(9), "7",
                    lab.ifname("f", "b"), addr(2)], cwd=str(REPO), check=True)
    time.sleep(0.5)
    for n in "abc":
        assert lab.procs[n].poll() is None
        st = lab.status(n)
        assert st["counters"].get("internal_errors", 0) == 0, lab.log_tail(n, 80)
    assert lab.status("b")["counters"].get("malformed_dropped", 0) > 0
    # forged seqnos may hold routes for a while (AODV has no authentication); the
    # chain must still carry traffic
    r = lab.ping("a", addr(3), count=4, wait=3, interval=0.5)
    assert ping_loss(r.stdout)[1] >= 1, r.stdout


def test_handover_to_offpath_sink_rediscovers_gateway_prefix_at_once(labs):
    """Claims 36-37 with RFC 3561 6.3 (scenario handover-offpath in small): gateway 1 (host h
    behind it), tree 1-2-3 with branch 2-4; the MN pings h at 100/s and moves from sink 3 to
    sink 4, which is off the path to h and has no route (nor catch-all) for h's prefix. The
    MN must not migrate its prefix route to 4 (4 would drop until a later rediscovery, ~100
    lost) but rediscover it at once, its datagrams buffered meanwhile."""
    lab = labs()
    for n, a in (("1", addr(1)), ("2", addr(2)), ("3", addr(3)), ("4", addr(4)), ("m", addr(50))):
        lab.add_node(n, a)
    for a, b in ("12", "23", "24", "m3"):
        lab.link(a, b)
    lab.add_node("h", "198.51.100.7")
    lab.link("1", "h")
    lab.exec("h", "ip", "route", "add", "default", "via", addr(1), "dev", lab.ifname("h", "1"), "onlink")
    lab.exec("1", "ip", "route", "add", "198.51.100.7/32", "dev", lab.ifname("1", "h"))
    for n in "1234":
        extra = {"announced_prefixes": ["198.51.100.0/24"]} if n == "1" else {}
        lab.start(n, lab.config(n, managed_prefixes=[NET], handover={"enabled": True}, **extra))
    lab.start("m", lab.config("m", role="mn", managed_prefixes=[NET, "198.51.100.0/24"],
                              handover={"enabled": True}))
    lab.wait_agents()
    lab.wait_status("m", lambda s: s["handover"]["sink"] == addr(3))
    assert "1 received" in lab.ping("m", "198.51.100.7", count=1, wait=3).stdout
    ping = subprocess.Popen(["ip", "netns", "exec", lab.ns("m"), "ping", "-n", "-i", "0.01", "-c", "300",
                             "-W", "1", "198.51.100.7"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.7)
    lab.unlink("m", "3")
    lab.link("m", "4")
    sent, got = ping_loss(ping.communicate(timeout=30)[0])
    print(f"off-path handover, pings to h lost of {sent} at 100/s: {sent - got}")
    # measured: with the fix 2 lost (the carrier-down time of the move), without it 67
    assert sent - got <= 10
    st = lab.wait_status("m", lambda s: s["handover"]["sink"] == addr(4))
    done = [e for e in st["events"] if e["kind"] == "handover_done"]
    assert done and done[-1]["old_sink"] == addr(3), done
    assert "198.51.100.0" in done[-1]["rediscovered"] and "198.51.100.0" not in done[-1]["migrated"], done
    inst = [i for i in st["route_installs"] if i["dst"] == "198.51.100.0"]
    assert inst[-1]["next_hop"] == addr(4), inst
