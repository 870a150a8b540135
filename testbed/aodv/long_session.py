"""Long sessions (claims 67-70): gratuitous RREPs from the reply source, and the
requester's refresh, as a part of the agent."""
from __future__ import annotations

import dataclasses
import logging

from .messages import RREP, GratuitousExt, lifetime_ms

log = logging.getLogger("aodv")


@dataclasses.dataclass
class Session:
    """A route this node answered as reply source; for gratuitous RREPs (claims 67-70)."""

    orig: str
    dst: str
    prefix_len: int
    expires: float  # when the requester's route would run out
    sent: int = 0
    #: no new gratuitous RREP before this (an intermediate's own route may be shorter than
    #: the threshold, so "remaining < threshold" alone would fire on every tick)
    quiet_until: float = 0.0
    #: replied as intermediate: the gratuitous RREP carries our route's seqno/hops
    intermediate: bool = False


class LongSessionMixin:
    def gratuitous_tick(self) -> None:
        g = self.cfg.gratuitous
        now = self.now()
        for orig, s in list(self.sessions.items()):
            remaining = s.expires - now
            if remaining >= g.threshold_ms / 1000 or now < s.quiet_until:
                continue
            seen = self.monitor.from_src.get(orig)
            if seen is None or now - seen > g.active_window_ms / 1000:
                continue
            rev = self.routes.get(orig)
            if rev is None:
                continue
            life = self.t.my_route_timeout
            seq, hops = self.seq, 0
            if s.intermediate:
                fwd = self.routes.valid(s.dst)
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
                self.set_route(rev.dst, rev.next_hop, rev.iface, rev.hop_count, rev.seq,
                               rev.valid_seq, self.t.active_route_timeout, rev.prefix_len)
            else:
                self.routes.extend(rev, now + self.t.active_route_timeout)
            if self.unicast(msg, rev.next_hop):
                s.expires = now + life
                s.quiet_until = now + max(life - g.threshold_ms / 1000, life / 2)
                s.sent += 1
                self.counters["grat_rrep_sent"] += 1
                log.debug("gratuitous RREP for %s to %s via %s (%.1f s were left)", s.dst,
                          orig, rev.next_hop, remaining)

    def refresh_tick(self) -> None:
        """Requester side: re-discover an active route before it runs out (claim 69)."""
        th = self.cfg.route_refresh_threshold_ms / 1000
        now = self.now()
        for r in self.routes:
            if (r.valid and r.hop_count > 1 and r.last_used and now - r.last_used < 1.0
                    and r.remaining(now) < th and r.dst not in self.discoveries):
                self.counters["rreq_refresh"] += 1
                log.debug("route to %s has %.2f s left and is in use: refresh RREQ", r.dst,
                          r.remaining(now))
                self.start_discovery(r.dst, refresh=True)
