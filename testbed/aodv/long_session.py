"""Long sessions (claims 67-70): gratuitous RREPs from the reply source, and the
requester's refresh, as a component of the agent holding a NodeContext."""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from .context import NodeContext
from .messages import RREP, GratuitousExt, lifetime_ms

log = logging.getLogger("aodv")


@dataclasses.dataclass
class Session:
    """A route this node answered as reply source; for gratuitous RREPs (claims 67-70)."""

    orig: str
    dst: str
    prefix_len: int
    expires: float  # when the requester's route would run out (monotonic s)
    sent: int = 0
    #: no new gratuitous RREP before this (an intermediate's own route may be shorter than
    #: the threshold, so "remaining < threshold" alone would fire on every tick)
    quiet_until: float = 0.0
    #: replied as intermediate: the gratuitous RREP carries our route's seqno/hops
    intermediate: bool = False


class LongSessions:
    """Sessions this node answered (one per RREQ originator) and the two tick duties.

    `last_heard_from(addr) -> monotonic s | None`: when a datagram from addr last went
    through this node (the traffic monitor), i.e. whether the session is still in use.
    """

    def __init__(self, ctx: NodeContext, last_heard_from: Callable[[str], float | None]) -> None:
        self.ctx = ctx
        self.last_heard_from = last_heard_from
        self.sessions: dict[str, Session] = {}

    def replied(self, orig: str, dst: str, prefix_len: int, lifetime_s: float,
                intermediate: bool = False) -> None:
        """We sent a RREP for dst/prefix_len to orig with lifetime_s (RFC 6.6.1, 6.6.2)."""
        self.sessions[orig] = Session(orig=orig, dst=dst, prefix_len=prefix_len,
                                      expires=self.ctx.now() + lifetime_s,
                                      intermediate=intermediate)

    def tick(self, now: float) -> None:
        """Forget sessions over for DELETE_PERIOD, then send gratuitous RREPs (claims
        67-68) and refresh RREQs (claim 69) where the configuration asks for them."""
        cfg = self.ctx.cfg
        for orig, sess in list(self.sessions.items()):
            if sess.expires < now - cfg.timers.delete_period:
                self.sessions.pop(orig, None)
        if cfg.gratuitous.enabled:
            self.gratuitous_tick(now)
        if cfg.route_refresh_threshold_ms:
            self.refresh_tick(now)

    def gratuitous_tick(self, now: float) -> None:
        ctx = self.ctx
        g, t, routes = ctx.cfg.gratuitous, ctx.cfg.timers, ctx.routes
        for orig, s in list(self.sessions.items()):
            remaining = s.expires - now
            if remaining >= g.threshold_ms / 1000 or now < s.quiet_until:
                continue
            seen = self.last_heard_from(orig)
            if seen is None or now - seen > g.active_window_ms / 1000:
                continue
            rev = routes.get(orig)
            if rev is None:
                continue
            life = t.my_route_timeout
            seq, hops = ctx.own_seq(), 0
            if s.intermediate:
                fwd = routes.valid(s.dst)
                if fwd is None or not fwd.valid_seq:
                    continue
                seq, hops = fwd.seq, fwd.hop_count
                if fwd.hop_count > 1:
                    # RFC 6.6.2: no longer than our own route lives. A route to a neighbour
                    # lives as long as its hellos do (it is renewed each HELLO_INTERVAL), so
                    # its remaining time says nothing; cutting the lifetime to it made the
                    # requester's route run down under the stream.
                    life = min(life, fwd.remaining(now))
            msg = RREP(hop_count=hops, dst=s.dst, dst_seq=seq, orig=orig,
                       prefix_sz=0 if s.prefix_len == 32 else s.prefix_len,
                       lifetime=lifetime_ms(life), extensions=[GratuitousExt()])
            if not rev.valid:
                ctx.set_route(rev.dst, rev.next_hop, rev.iface, rev.hop_count, rev.seq,
                              rev.valid_seq, t.active_route_timeout, rev.prefix_len)
            else:
                routes.extend(rev, now + t.active_route_timeout)
            if ctx.unicast(msg, rev.next_hop):
                s.expires = now + life
                s.quiet_until = now + max(life - g.threshold_ms / 1000, life / 2)
                s.sent += 1
                ctx.counters["grat_rrep_sent"] += 1
                log.debug("gratuitous RREP for %s to %s via %s (%.1f s were left)", s.dst,
                          orig, rev.next_hop, remaining)

    def refresh_tick(self, now: float) -> None:
        """Requester side: re-discover an active route before it runs out (claim 69)."""
        ctx = self.ctx
        th = ctx.cfg.route_refresh_threshold_ms / 1000
        for r in ctx.routes:
            if (r.valid and r.hop_count > 1 and r.last_used and now - r.last_used < 1.0
                    and r.remaining(now) < th and not ctx.discovering(r.dst)):
                ctx.counters["rreq_refresh"] += 1
                log.debug("route to %s has %.2f s left and is in use: refresh RREQ", r.dst,
                          r.remaining(now))
                ctx.discover(r.dst, refresh=True)

    def status(self, now: float) -> dict:
        return {o: {"dst": s.dst, "gratuitous_sent": s.sent,
                    "remaining_s": round(s.expires - now, 3)}
                for o, s in self.sessions.items()}
