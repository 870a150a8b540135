"""Route discovery (RFC 3561 6.3, 6.4): RREQs sent by this node, the expanding ring search
with its timeouts and retries, the weighted variant's fallback (claims 63-66), and the
(originator, RREQ ID) pairs already heard (RFC 6.5). A component holding a NodeContext.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Callable

from .context import NodeContext
from .loop import Timer
from .messages import MAX_HOP_COUNT, RREQ, HandoverExt

log = logging.getLogger("aodv")


def rate_ok(times: collections.deque, limit: int, now: float) -> bool:
    """At most `limit` events per second (RFC 3561 6.3 RREQ_RATELIMIT, 6.11 RERR_RATELIMIT):
    `times` holds the monotonic seconds of the last second's events; True records one."""
    while times and now - times[0] > 1.0:
        times.popleft()
    if len(times) >= limit:
        return False
    times.append(now)
    return True


@dataclasses.dataclass
class Discovery:
    """An expanding ring search in progress (RFC 3561 6.3, 6.4). Times: monotonic s
    (`started`) and wall-clock s (`started_wall`)."""

    dst: str
    started: float
    started_wall: float
    ttl: int
    retries: int = 0
    rreq_count: int = 0
    handle: Timer | None = None
    weighted: bool = False
    fallback_done: bool = False
    #: claim 30: the new sink looks for the route to its MN towards the old sink
    locate: HandoverExt | None = None
    #: a refresh (claims 38, 69): the current route stays in use meanwhile
    refresh: bool = False
    orig_seq: int | None = None


class Discoveries:
    """The discoveries this node runs, keyed by destination (`active`).

    Besides the NodeContext it needs: `call_later(delay_s, fn, *args) -> Timer`;
    `next_seq(orig_seq | None) -> int`, our seqno for the next RREQ (RFC 6.1: incremented
    before each discovery; claim 38: at least the seqno a handover gives);
    `broadcast(msg, ttl) -> links sent on`; `send_weighted(msg, sum, exclude, ttl) -> links`
    (claims 63-66); `on_failed(discovery)`: what to do when the ring search gave up.
    """

    def __init__(self, ctx: NodeContext, *, call_later: Callable[..., Timer],
                 next_seq: Callable[[int | None], int], broadcast: Callable[..., int],
                 send_weighted: Callable[..., int],
                 on_failed: Callable[[Discovery], None]) -> None:
        self.ctx = ctx
        self.call_later = call_later
        self.next_seq = next_seq
        self.broadcast = broadcast
        self.send_weighted = send_weighted
        self.on_failed = on_failed
        self.active: dict[str, Discovery] = {}
        #: finished discoveries for the status file (route_installs)
        self.installs: collections.deque[dict] = collections.deque(maxlen=500)
        #: (originator, RREQ ID) -> (forget at monotonic s, lowest weight seen or None)
        self.seen_rreq: dict[tuple[str, int], tuple[float, int | None]] = {}
        self.rreq_times: collections.deque[float] = collections.deque()
        self.rreq_id = 0

    def remember_rreq(self, key: tuple[str, int], value: tuple[float, int | None]) -> None:
        """RFC 6.5: (originator, RREQ ID) pairs heard within PATH_DISCOVERY_TIME, at most
        max_seen_rreq of them: over that the oldest is forgotten (and counted), so a flood
        of invented IDs costs a few duplicate forwards, never unbounded memory."""
        self.seen_rreq.pop(key, None)
        self.seen_rreq[key] = value
        while len(self.seen_rreq) > self.ctx.cfg.max_seen_rreq:
            del self.seen_rreq[next(iter(self.seen_rreq))]
            self.ctx.counters["rreq_seen_evicted"] += 1

    def forget_seen(self, now: float) -> None:
        """Drop (originator, RREQ ID) pairs older than PATH_DISCOVERY_TIME."""
        for k, (exp, _w) in list(self.seen_rreq.items()):
            if exp <= now:
                self.seen_rreq.pop(k, None)

    def start(self, dst: str, *, locate: HandoverExt | None = None,
              refresh: bool = False, orig_seq: int | None = None) -> None:
        """Look for a route to dst unless a search runs already (RFC 6.3, 6.4)."""
        ctx, t = self.ctx, self.ctx.cfg.timers
        if dst in self.active:
            return
        # a known (maybe invalid) route: a host route, else the prefix route covering dst
        r = ctx.routes.get(dst) or ctx.routes.lookup(dst, only_valid=False)
        ttl = t.ttl_start
        if r is not None and r.hop_count and not locate:
            # RFC 6.4: last hop count + TTL_INCREMENT, the ring never wider than NET_DIAMETER
            ttl = max(t.ttl_start, min(r.hop_count + t.ttl_increment, t.net_diameter))
        if locate is not None:
            # claim 30: the new sink looks towards the old sink; start the ring where it is
            x = ctx.routes.get(locate.addr)
            ttl = min(x.hop_count + t.ttl_increment, MAX_HOP_COUNT) \
                if x is not None and x.hop_count else ctx.cfg.handover.locate_ttl
        d = Discovery(dst=dst, started=ctx.now(), started_wall=time.time(), ttl=ttl,
                      weighted=ctx.cfg.weighted_search.enabled and locate is None,
                      locate=locate, refresh=refresh, orig_seq=orig_seq)
        self.active[dst] = d
        ctx.counters["discoveries_started"] += 1
        log.debug("discovery for %s: ring search from TTL %d%s%s", dst, ttl,
                  " (weighted)" if d.weighted else "", " (handover locate)" if locate else "")
        self.send_rreq(d)

    def send_rreq(self, d: Discovery) -> None:
        ctx, t = self.ctx, self.ctx.cfg.timers
        if not rate_ok(self.rreq_times, t.rreq_ratelimit, ctx.now()):
            ctx.counters["rreq_ratelimited"] += 1
            self.schedule(d, 1.0 / t.rreq_ratelimit)
            return
        seq = self.next_seq(d.orig_seq)
        self.rreq_id = (self.rreq_id + 1) & 0xFFFFFFFF
        # RFC 6.3: the last known seqno, also of a prefix route (a gateway's network):
        # without it, any stale intermediate route would answer and be refused by us
        r = ctx.routes.get(d.dst) or ctx.routes.lookup(d.dst, only_valid=False)
        flags = 0
        dst_seq = 0
        if d.locate is not None:
            dst_seq = d.locate.mn_seq
        elif r is not None and r.valid_seq:
            dst_seq = r.seq
        else:
            flags |= 0x01  # U: unknown sequence number
        exts = [HandoverExt(kind=d.locate.kind, mn_seq=d.locate.mn_seq, addr=d.locate.addr)] \
            if d.locate is not None else []
        msg = RREQ(flags=flags, hop_count=0, rreq_id=self.rreq_id, dst=d.dst, dst_seq=dst_seq,
                   orig=ctx.addr, orig_seq=seq, extensions=exts)
        self.remember_rreq((ctx.addr, self.rreq_id), (ctx.now() + t.path_discovery_time, 0))
        weighted = d.weighted and not d.fallback_done
        if weighted:
            n = self.send_weighted(msg, 0, set(), d.ttl)
        else:
            n = self.broadcast(msg, d.ttl)
        d.rreq_count += 1
        ctx.counters["rreq_sent"] += 1
        ctx.counters["rreq_tx"] += n
        log.debug("RREQ id %d for %s ttl %d seq %d sent on %d links%s", self.rreq_id, d.dst,
                  d.ttl, seq, n, " (weighted unicast)" if weighted else "")
        if d.ttl >= t.net_diameter:
            wait = t.net_traversal_time * (2 ** d.retries)  # binary exponential backoff
        else:
            wait = t.ring_traversal_time(d.ttl)
        self.schedule(d, wait)

    def schedule(self, d: Discovery, wait_s: float) -> None:
        if d.handle:
            d.handle.cancel()
        d.handle = self.call_later(wait_s, self.timeout, d)

    def timeout(self, d: Discovery) -> None:
        """No RREP within the ring's traversal time: widen the ring, retry or give up."""
        ctx, t = self.ctx, self.ctx.cfg.timers
        if self.active.get(d.dst) is not d:
            return
        if d.ttl < t.net_diameter:
            d.ttl += t.ttl_increment
            if d.ttl > t.ttl_threshold:
                d.ttl = t.net_diameter
        elif d.weighted and not d.fallback_done:
            # the weighted rings reached NET_DIAMETER without an answer: the cheap paths
            # do not lead there; fall back to plain flooding (or give up) without retries
            if not ctx.cfg.weighted_search.fallback_broadcast:
                self.fail(d)
                return
            d.fallback_done = True
            d.ttl = t.ttl_start
            ctx.counters["weighted_fallbacks"] += 1
            log.debug("weighted search for %s failed; plain expanding ring search", d.dst)
        else:
            d.retries += 1
            if d.retries > t.rreq_retries:
                self.fail(d)
                return
        try:
            self.send_rreq(d)
        except Exception:
            ctx.counters["internal_errors"] += 1
            log.exception("RREQ retry failed")

    def stop(self, dst: str) -> Discovery | None:
        """End the search for dst without a result (its timer cancelled); None if none ran."""
        d = self.active.pop(dst, None)
        if d is not None and d.handle:
            d.handle.cancel()
        return d

    def finish(self, d: Discovery, r) -> None:
        """The route r answers discovery d: record how long it took (route_installs)."""
        if d.handle:
            d.handle.cancel()
        self.active.pop(d.dst, None)
        ms = round((self.ctx.now() - d.started) * 1000, 2)
        self.ctx.counters["discoveries_succeeded"] += 1
        self.installs.append({"dst": d.dst, "requested_at": round(d.started_wall, 4),
                              "installed_at": round(time.time(), 4), "discovery_ms": ms,
                              "hop_count": r.hop_count, "next_hop": r.next_hop,
                              "rreq_sent": d.rreq_count, "refresh": d.refresh})
        log.debug("discovery for %s done in %.1f ms: %d hops via %s (%d RREQs)", d.dst, ms,
                  r.hop_count, r.next_hop, d.rreq_count)

    def fail(self, d: Discovery) -> None:
        self.active.pop(d.dst, None)
        self.ctx.counters["discoveries_failed"] += 1
        log.info("discovery for %s failed after %d RREQs", d.dst, d.rreq_count)
        self.on_failed(d)

    def close(self) -> None:
        for d in list(self.active.values()):
            if d.handle:
                d.handle.cancel()

    def status(self, now: float) -> dict:
        return {d.dst: {"ttl": d.ttl, "retries": d.retries, "rreq_sent": d.rreq_count,
                        "age_ms": round((now - d.started) * 1000, 1),
                        "locate": d.locate is not None}
                for d in self.active.values()}
