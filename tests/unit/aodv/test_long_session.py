"""The long-session component (claims 67-70) on a NodeContext built from plain functions:
no agent, no sockets. The netns and scenario tests run it inside the real agent."""
import collections

from testbed.aodv.config import parse_config
from testbed.aodv.context import NodeContext
from testbed.aodv.long_session import LongSessions
from testbed.aodv.messages import RREP, GratuitousExt, parse_message
from testbed.aodv.route_table import RouteTable


def make(gratuitous=True, refresh_ms=0):
    cfg = parse_config({"address": "10.0.0.1",
                        "gratuitous": {"enabled": gratuitous, "threshold_ms": 4000},
                        "route_refresh_threshold_ms": refresh_ms})
    clock = [100.0]
    sent, discovered = [], []
    routes = RouteTable()
    ctx = NodeContext(
        addr="10.0.0.1", cfg=cfg, routes=routes, counters=routes.counters,
        now=lambda: clock[0],
        unicast=lambda m, nh: sent.append((parse_message(bytes(m)), nh)) or True,
        event=lambda kind, **kw: None, own_seq=lambda: 7,
        set_route=lambda *a: routes.update(*a[:7], clock[0], *a[7:])[0],
        discover=lambda dst, refresh=False: discovered.append((dst, refresh)),
        discovering=lambda dst: False)
    heard = {}
    return LongSessions(ctx, heard.get), clock, heard, sent, discovered, routes


def test_gratuitous_rrep_only_for_a_session_in_use_near_its_end():
    ls, clock, heard, sent, _d, routes = make()
    routes.update("10.0.0.9", "10.0.0.2", "e0", 3, 4, True, 3.0, now=100.0)
    ls.replied("10.0.0.9", "10.0.0.1", 32, lifetime_s=10.0)
    ls.tick(101.0)
    assert sent == []                       # 9 s left: above the 4 s threshold
    ls.tick(107.0)
    assert sent == []                       # near its end, but no datagram from the requester
    heard["10.0.0.9"] = 106.5
    ls.tick(107.0)
    (msg, nh), = sent
    assert isinstance(msg, RREP) and msg.ext(GratuitousExt) is not None and nh == "10.0.0.2"
    assert msg.dst == "10.0.0.1" and msg.dst_seq == 7 and msg.lifetime == 6000  # MY_ROUTE_TIMEOUT
    assert ls.sessions["10.0.0.9"].sent == 1 and routes.counters["grat_rrep_sent"] == 1
    assert ls.status(107.0)["10.0.0.9"]["remaining_s"] == 6.0


def test_gratuitous_switched_off_sends_nothing_and_old_sessions_go():
    ls, clock, heard, sent, _d, routes = make(gratuitous=False)
    routes.update("10.0.0.9", "10.0.0.2", "e0", 3, 4, True, 3.0, now=100.0)
    ls.replied("10.0.0.9", "10.0.0.1", 32, lifetime_s=10.0)
    heard["10.0.0.9"] = 106.5
    ls.tick(107.0)
    assert sent == []
    ls.tick(110.0 + ls.ctx.cfg.timers.delete_period + 0.1)
    assert ls.sessions == {}


def test_refresh_rediscovers_a_used_multihop_route_before_it_runs_out():
    ls, clock, heard, sent, discovered, routes = make(gratuitous=False, refresh_ms=1000)
    r, _ = routes.update("10.0.0.9", "10.0.0.2", "e0", 3, 4, True, 3.0, now=100.0)
    ls.tick(101.0)
    assert discovered == []                 # never used
    routes.touch(r, 102.5)
    ls.tick(102.5)
    assert discovered == [("10.0.0.9", True)] and routes.counters["rreq_refresh"] == 1
