"""The discovery component (RFC 3561 6.3, 6.4) on a NodeContext built from plain
functions: ring widening, retries at NET_DIAMETER, failure, finish. The netns and
scenario tests run it inside the real agent."""
import collections

from testbed.aodv.config import parse_config
from testbed.aodv.context import NodeContext
from testbed.aodv.discovery import Discoveries, rate_ok
from testbed.aodv.messages import RREQ, parse_message
from testbed.aodv.route_table import RouteTable


def make(**cfg_extra):
    cfg = parse_config({"address": "10.0.0.1", **cfg_extra})
    routes = RouteTable()
    clock = [100.0]
    sent, timers, failed, seqs = [], [], [], [5]
    ctx = NodeContext(addr="10.0.0.1", cfg=cfg, routes=routes, counters=routes.counters,
                      now=lambda: clock[0], unicast=lambda m, nh: True,
                      event=lambda kind, **kw: None, own_seq=lambda: seqs[0],
                      set_route=None, discover=None, discovering=lambda d: False)

    def next_seq(orig_seq):
        seqs[0] = orig_seq if orig_seq is not None else seqs[0] + 1
        return seqs[0]

    class T:
        def __init__(self, delay, fn, args):
            self.delay, self.fn, self.args, self.cancelled = delay, fn, args, False

        def cancel(self):
            self.cancelled = True

    def call_later(delay, fn, *args):
        timers.append(T(delay, fn, args))
        return timers[-1]

    def broadcast(msg, ttl):
        sent.append((parse_message(bytes(msg)), ttl))
        return 1

    d = Discoveries(ctx, call_later=call_later, next_seq=next_seq, broadcast=broadcast,
                    send_weighted=lambda *a: 0, on_failed=failed.append)
    return d, sent, timers, failed, routes


def fire(timers):
    t = timers[-1]
    assert not t.cancelled
    t.fn(*t.args)


def test_expanding_ring_then_retries_then_failure():
    d, sent, timers, failed, _r = make()
    t = d.ctx.cfg.timers
    d.start("10.0.0.9")
    d.start("10.0.0.9")                                   # one search per destination
    assert len(sent) == 1
    msg, ttl = sent[0]
    assert isinstance(msg, RREQ) and msg.flags.U and msg.orig_seq == 6 and ttl == t.ttl_start
    assert timers[-1].delay == t.ring_traversal_time(t.ttl_start)
    ttls = [ttl]
    while not failed:
        fire(timers)
        if not failed:
            ttls.append(sent[-1][1])
    # RFC 6.4: TTL_START, +TTL_INCREMENT up to TTL_THRESHOLD, then NET_DIAMETER with
    # RREQ_RETRIES retries (binary exponential backoff)
    ring = list(range(t.ttl_start, t.ttl_threshold + 1, t.ttl_increment))
    assert ttls == ring + [t.net_diameter] * (1 + t.rreq_retries), ttls
    assert failed[0].dst == "10.0.0.9" and "10.0.0.9" not in d.active
    assert d.ctx.counters["discoveries_failed"] == 1
    waits = [x.delay for x in timers[-(1 + t.rreq_retries):]]
    assert waits == [t.net_traversal_time * 2 ** i for i in range(1 + t.rreq_retries)]


def test_known_route_starts_the_ring_at_its_hop_count_and_finish_records_it():
    d, sent, timers, failed, routes = make()
    t = d.ctx.cfg.timers
    r, _ = routes.update("10.0.0.9", "10.0.0.2", "e0", 4, 7, True, 3.0, now=100.0)
    routes.invalidate(r, 100.5, 15.0)
    d.start("10.0.0.9")
    msg, ttl = sent[0]
    assert ttl == 4 + t.ttl_increment and not msg.flags.U and msg.dst_seq == 8
    d.finish(d.active["10.0.0.9"], r)
    assert timers[-1].cancelled and d.active == {} and d.installs[-1]["hop_count"] == 4
    assert failed == []


def test_rate_limit_counts_the_last_second_only():
    times = collections.deque()
    assert all(rate_ok(times, 3, 10.0) for _ in range(3))
    assert not rate_ok(times, 3, 10.5)
    assert rate_ok(times, 3, 11.01)
