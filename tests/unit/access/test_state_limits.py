"""Issue 11: the sink's DHCP hello server sends option 3 with 121 (RFC 3442), and neither
it nor the AODV-hello sink keeps unbounded state for senders nobody authenticated.

The MSM is real (in-process, with its DIAMETER server); its answers reach the servers
through the same CompletionQueue the agents use.
"""
from __future__ import annotations

import socket
import time
import tracemalloc

from testbed.access import dhcp
from testbed.access.config import SinkConfig, parse
from testbed.access.node import AccessNode
from testbed.access.sink import AccessSink
from testbed.aodv.messages import hello
from testbed.diameter.client import CompletionQueue

from .conftest import Collector

SINK = "10.10.0.1"


def discover(fqdn: str, address: str, secret: str, xid: int, kind: int = dhcp.DISCOVER) -> bytes:
    cid, vendor = dhcp.hello_options(fqdn, address, secret)
    return dhcp.build_message(1, xid, 0x8000, "0.0.0.0", "0.0.0.0", b"\x02" * 6,
                              [(53, bytes([kind])), (50, socket.inet_aton(address)),
                               (61, cid), (43, vendor)])


def test_offer_carries_option_3_with_a_default_route_in_121():
    """RFC 3442: a server sending option 121 should also send option 3 for clients without
    121 support; here the router is the sink, as in the 121 default route. Without a /0
    route in 121 there is no default router to name."""
    for routes, router in (([("0.0.0.0/0", "10.10.0.254", 10), ("10.20.0.0/24", "0.0.0.0", 1)],
                            SINK),
                           ([("10.20.0.0/24", "0.0.0.0", 1)], None)):
        calls, sent = [], []
        srv = dhcp.DhcpHelloServer(SINK, lambda h, done: calls.append(done))
        srv.handle(discover("mn1.mwg.test", "10.10.0.5", "k", 0x51), sent.append)
        calls[0](True, routes, None)
        offer = dhcp.parse_message(sent[-1])
        assert offer.msg_type == dhcp.OFFER
        got = offer.options.get(dhcp.OPT_ROUTER)
        assert (socket.inet_ntoa(got) if got else None) == router
        has_default = ("0.0.0.0/0", SINK) in dhcp.parse_classless(offer.options[121])
        assert has_default == (router is not None)


def _dhcp_server(dclient, cq, calls: list, **bounds) -> dhcp.DhcpHelloServer:
    def authenticate(h, done) -> None:
        calls.append(h.fqdn)

        def answered(ans, err) -> None:
            if err is not None or not ans.ok:
                return done(False, [], str(err) if err else ans.reason)
            done(True, [(r.prefix, r.gateway, r.metric) for r in ans.routes], None)
        dclient.submit("authenticate", h.fqdn, h.mac, authenticated_data=h.auth_data,
                       node_address=h.address, nas_ip_address=SINK, timeout=3,
                       on_done=answered, via=cq)
    return dhcp.DhcpHelloServer(SINK, authenticate, **bounds)


def _drain(srv: dhcp.DhcpHelloServer, cq: CompletionQueue, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while srv.waiting and time.monotonic() < end:
        cq.run_pending()
        time.sleep(0.01)
    cq.run_pending()


def _flood(srv, cq, n: int, first_xid: int) -> None:
    """The issue's input: DISCOVERs from an identity the MSM does not know, each with a
    fresh nonce and a current timestamp (so the replay guard lets each through)."""
    sent: list = []
    for i in range(n):
        srv.handle(discover("intruder.mwg.test", "10.10.0.77", "guess", first_xid + i),
                   sent.append)
        if i % 50 == 0:
            cq.run_pending()
    _drain(srv, cq)


def _flood_memory(srv, cq, n: int, first_xid: int) -> int:
    """Bytes the access plane's code (testbed/access; the in-process MSM allocates too) holds
    more after flooding `n` DISCOVERs than before."""
    only = [tracemalloc.Filter(True, "*/testbed/access/*")]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(only)
        _flood(srv, cq, n, first_xid)
        after = tracemalloc.take_snapshot().filter_traces(only)
    finally:
        tracemalloc.stop()
    return sum(d.size_diff for d in after.compare_to(before, "filename"))


def test_dhcp_discover_flood_from_an_unknown_identity_is_bounded(msm, dclient):
    """20,000 DISCOVERs (the issue's flood) then 20,000 more: decisions (at most 100),
    first-seen times
    and in-flight MSM requests stay within their bounds, the second flood adds (almost)
    no memory, and mn1 still attaches. The control (bounds lifted, 5,000 DISCOVERs) keeps
    one decision per DISCOVER, so the assertions can fail."""
    cq = CompletionQueue()
    calls: list = []
    srv = _dhcp_server(dclient, cq, calls, max_decisions=100, max_pending=16)
    _flood(srv, cq, 20_000, 0x10000)
    # The replay guard is bounded too (max_entries); how full the first flood leaves it depends
    # on how many DISCOVERs the MSM answered in time, i.e. on the machine's speed. Fill it to its
    # bound first so that the measured flood shows growth past every bound, not a guard still
    # filling up towards its own.
    xid = 0x18000
    while len(srv.replay._seen) < srv.replay.max_entries and xid < 0x18000 + 40_000:
        _flood(srv, cq, 2_000, xid)
        xid += 2_000
    grown = _flood_memory(srv, cq, 20_000, 0x20000)
    print("access plane memory growth in the second flood, bytes:", grown)
    assert len(srv.decisions) <= 100 and len(srv.first_seen) <= 100, len(srv.decisions)
    assert len(srv.replay._seen) <= srv.replay.max_entries
    assert srv.counters.get("decisions_forgotten", 0) > 0
    assert srv.counters.get("busy_dropped", 0) > 0  # the flood outran the MSM
    assert srv.counters.get("refused", 0) > 0 and srv.counters.get("attached", 0) == 0
    # the MSM was asked at most once per DISCOVER, never more than 16 at a time
    assert len(calls) <= 40_000 and not srv.waiting
    # the legitimate node still attaches
    sent: list = []
    srv.handle(discover("mn1.mwg.test", "10.10.0.5", "s3cret-1", 0x77), sent.append)
    _drain(srv, cq)
    offer = dhcp.parse_message(sent[-1])
    assert offer.msg_type == dhcp.OFFER and offer.yiaddr == "10.10.0.5"
    assert socket.inet_ntoa(offer.options[dhcp.OPT_ROUTER]) == SINK
    # control: without the bounds every DISCOVER leaves its decision behind
    # (refused at once as the MSM did above, without 5,000 DIAMETER requests in flight)
    lifted = dhcp.DhcpHelloServer(SINK, lambda h, done: done(False, [], "unknown user"),
                                  max_decisions=10**9, max_pending=10**9, decision_ttl_s=1e9)
    lifted_grown = _flood_memory(lifted, cq, 20_000, 0x30000)
    print("same flood with the bounds lifted, bytes:", lifted_grown)
    assert len(lifted.decisions) == 20_000 and lifted.counters.get("busy_dropped", 0) == 0
    # Measured: bounded 55-963 kB (what is in flight at the snapshot varies with the MSM's
    # speed), lifted 15.5 MB. The bounded flood must stay under a quarter of the lifted
    # one, measured side by side in this run.
    assert grown < lifted_grown / 4, (grown, lifted_grown)


def _sink(msm, dclient, cq, **cfg) -> AccessSink:
    conf = {"address": SINK, "nft": False, "refused_holddown_ms": 0,
            "msm": {"address": "127.0.0.1", "port": msm.diameter.port}, **cfg}
    return AccessSink(parse(conf, SinkConfig), Collector(), diameter=dclient, via=cq)


def test_sink_hello_flood_from_invented_addresses_is_bounded(msm, dclient):
    """3,000 hellos from invented addresses (no access extension: refused at once, each
    with its own nft chain). With max_nodes 50 the sink keeps at most 50 senders (and
    chains), forgets the oldest refused ones, and mn1 still attaches. The control keeps
    all 3,000."""
    cq = CompletionQueue()
    sink = _sink(msm, dclient, cq, max_nodes=50)
    ctrl = _sink(msm, dclient, cq, max_nodes=100_000)
    for s in (sink, ctrl):
        for i in range(3000):
            a = f"10.30.{i // 250}.{i % 250 + 1}"
            s.on_hello(bytes(hello(a, 1, 2000)), a)
    assert len(sink.nodes) <= 50 and len(sink.policy.nodes) <= 50, len(sink.nodes)
    assert sink.counters["refused_forgotten"] > 0
    assert len(ctrl.nodes) == 3000 and len(ctrl.policy.nodes) == 3000
    mn1 = AccessNode("10.10.0.5", "mn1.mwg.test", secret="s3cret-1")
    sink.on_hello(mn1.secret_hello(), "10.10.0.5")
    end = time.monotonic() + 5
    while sink.nodes["10.10.0.5"].verdict == "pending" and time.monotonic() < end:
        cq.run_pending()
        time.sleep(0.01)
    assert sink.nodes["10.10.0.5"].verdict == "member"
    assert len(sink.nodes) <= 50
