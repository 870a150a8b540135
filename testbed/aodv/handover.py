"""The patent's sink handover (claims 26-39), as a part of the agent.

Why a mixin: the handover touches the agent's route table, discoveries and buffer at
every step, but is switchable and reads best on its own. The MN side (attach, probe,
migrate, optimise) and the MSR side (register, bind, answer, hold) are both here; the
hooks into plain AODV processing (hello, RREQ/RREP/RERR, link break) live in agent.py.
"""
from __future__ import annotations

import ipaddress
import logging
import time

from . import seqnum
from .messages import (
    MAX_HOP_COUNT, RERR, RREP, HandoverExt, HandoverKind, Unreachable, hello, lifetime_ms,
)
from .route_table import Route

log = logging.getLogger("aodv")


class HandoverMixin:
    def mn_consider_sink(self, nbr: str) -> None:
        """MN: a hello from an MSR; is it a (new) sink to attach to? (claim 27)

        While the current sink is alive the MN stays. Hearing another MSR makes it check:
        the sink is gone if its interface vanished (with link-layer detection), if it has
        been silent for `sink_silence_ms`, or if it does not answer a probe (a hello with
        the RFC's A flag, answered by RREP-ACK) within NEXT_HOP_WAIT.
        """
        if self.sink is not None and self.sink != nbr and self.sink in self.neighbours:
            old = self.neighbours[self.sink]
            silent = self.now() - old.last_heard > self.cfg.handover.sink_silence_ms / 1000
            gone = self.cfg.link_layer_detection and old.iface not in self.ifaces
            if not (silent or gone):
                self.probe_sink(nbr)
                return
            self.sink_lost_to(nbr, "silent" if silent else "interface gone")
        if self.sink == nbr:
            return
        if self.sink == nbr:
            return
        if self.attaching == nbr and self.now() - self.attach_sent_at < self.t.hello_interval:
            return
        if self.attaching != nbr:
            self.attach_tries = 0
            self.handover_started = self.handover_started or self.now()
        self.attaching = nbr
        self.attach_tries += 1
        self.attach_sent_at = self.now()
        seq = self.reg_seq if self.reg_seq is not None else self.seq
        old = self.last_sink if self.last_sink and self.last_sink != nbr else "0.0.0.0"
        lifetime = self.t.hello_lifetime_ms()
        msg = hello(self.addr, seq, lifetime,
                    [HandoverExt(kind=HandoverKind.ATTACH, mn_seq=seq, addr=old)])
        self.unicast(msg, nbr)
        self.counters["handover_attach_sent"] += 1
        self.event("attach_hello", new_sink=nbr, old_sink=old, seq=seq)

    def probe_sink(self, candidate: str) -> None:
        """Is the current sink still there? Unicast hello with A flag (RREP-ACK expected)."""
        if self.probe is not None:
            return
        lifetime = self.t.hello_lifetime_ms()
        msg = hello(self.addr, self.seq, lifetime)
        msg.flags = "A"
        self.unicast(msg, self.sink)
        wait = self.t.node_traversal_time + 0.010  # NEXT_HOP_WAIT
        self.probe = (self.sink, candidate, self.now() + max(wait, 0.02))
        self.counters["sink_probes"] += 1

    def sink_lost_to(self, candidate: str, why: str) -> None:
        self.event("sink_lost", sink=self.sink, new_sink=candidate, reason=why)
        self.last_sink, self.sink = self.sink, None
        self.probe = None
        self.handover_started = self.now()
        self.sync_catchalls()

    def sync_catchalls(self, deferred: bool = False) -> None:
        """MN with `handover.catchall_only_with_sink`: catch-alls only while a sink serves us.

        Why: an MN that also runs Mobile IP (claim 14) leaves the AODV domain for a foreign
        network; there the catch-alls (metric 4000, more specific than a default route)
        would still pull its traffic to the home prefix and the Internet into the buffer
        TUN instead of Mobile IP's routes (FA, co-located CoA tunnel). Withdrawn after
        `catchall_grace_ms` without a sink (a move to another sink keeps buffering),
        re-added as soon as a sink registers or takes us over.
        """
        ho = self.cfg.handover
        if not (self.cfg.role == "mn" and ho.catchall_only_with_sink
                and self.kernel is not None and self.tun is not None):
            return
        want = self.sink is not None
        if getattr(self, "_catchalls_on", True) == want:
            return
        if not want and ho.catchall_grace_ms > 0:
            if not deferred:   # one timer per loss; an older loss's timer must not cut it short
                self._catchall_loss = getattr(self, "_catchall_loss", 0) + 1
                loss = self._catchall_loss
                self.loop.call_later(ho.catchall_grace_ms / 1000,
                                     lambda: loss == self._catchall_loss and self.sync_catchalls(True))
                return
        self._catchalls_on = want
        for net in self.managed:
            args = (str(net.network_address), net.prefixlen, self.cfg.tun_name, self.cfg.catchall_metric)
            if want:
                self.kernel.add_catchall(*args)
            else:
                self.kernel.remove_catchall(*args)
        resent = 0
        if not want:
            # what waited for a sink now follows the routes left (e.g. Mobile IP's)
            self.held.clear()
            for dst in self.buffer.destinations():
                for p in self.buffer.pop(dst):
                    resent += bool(self.reinjector and self.reinjector.send(p))
        self.counters["catchalls_restored" if want else "catchalls_withdrawn"] += 1
        self.event("catchalls", installed=want, resent=resent)
        log.info("catch-all routes %s (sink %s, %d buffered datagrams re-sent)",
                 "restored" if want else "withdrawn", self.sink, resent)
        # the node's Mobile IP agent reads our sink from the status file (claim 14): write
        # it now, not at the next status interval, so that a move home ends sooner
        self.write_status()

    def mn_left(self) -> None:
        """MN: our Mobile IP agent registered away from the home domain (issue 14).

        The sink is gone for good, so the catch-alls go at once instead of after
        `catchall_grace_ms`: the grace only serves a move to another sink, and here it
        would hold the MN's traffic in the buffer TUN while Mobile IP's routes are ready.
        """
        self.counters["leave_notices"] += 1
        self.event("left_home_domain", sink=self.sink)
        if self.sink is not None:
            self.sink_lost_to("", "left (Mobile IP registered away)")
        self.attaching = None
        self.sync_catchalls(deferred=True)

    def on_attach(self, m: RREP, mn: str, iface: str, ho: HandoverExt, before: Route | None):
        """New sink: the MN's first hello (claims 28-30)."""
        s = ho.mn_seq
        old_sink = ho.addr
        # judge claim 29 on the route we had before the MN's plain hellos reached us
        before = self.prior_route.pop(mn, before)
        life = self.hello_life_s(m)
        if mn not in self.registered and len(self.registered) >= self.cfg.max_neighbours:
            # issue 11 section 4: forget the longest-registered MN that is no neighbour now
            gone = [k for k in self.registered if k not in self.neighbours]
            if gone:
                del self.registered[min(gone, key=lambda k: self.registered[k]["since"])]
                self.counters["registered_forgotten"] += 1
        self.registered[mn] = {"since": time.time(), "old_sink": old_sink, "seq": s}
        self.held.pop(mn, None)
        if old_sink in ("0.0.0.0", self.addr):
            self.neighbour_route(mn, iface, life, s)
            rep = RREP(hop_count=0, dst=self.addr, dst_seq=self.seq, orig=mn,
                       lifetime=lifetime_ms(self.t.my_route_timeout),
                       extensions=[HandoverExt(kind=HandoverKind.REGISTERED, mn_seq=s,
                                               addr=self.addr)])
            self.unicast(rep, mn)
            self.counters["handover_registrations"] += 1
            self.event("registered", mn=mn, seq=s)
            return
        self.counters["handover_attach_received"] += 1
        if before is not None and before.valid_seq and before.seq == s and before.next_hop != mn:
            # claim 29: we already route to the MN with that seqno: that route leads to
            # the old sink, so bind straight away
            toward = self.routes.valid(old_sink)
            via = toward.next_hop if toward is not None else before.next_hop
            log.debug("handover of %s from %s: have route seq %d via %s -> binding via %s",
                      mn, old_sink, s, before.next_hop, via)
            self.neighbour_route(mn, iface, life, seqnum.increment(s))
            self.send_bind(mn, old_sink, s, via)
            return
        # claim 30: ask the network (old sink or a router on the way) with a RREQ
        log.debug("handover of %s from %s: no route with seq %d (have %s) -> LOCATE RREQ",
                  mn, old_sink, s, f"seq {before.seq} via {before.next_hop}" if before else None)
        self.neighbour_route(mn, iface, life, s)
        self.discovery.stop(mn)
        self.discovery.start(mn, locate=HandoverExt(kind=HandoverKind.LOCATE, mn_seq=s,
                                                    addr=old_sink))

    def on_locate_reply(self, m: RREP, prev: str, ho: HandoverExt) -> None:
        """New sink: the old sink or a router on the way answered (claim 31)."""
        d = self.discovery.active.pop(m.dst, None)
        if d is None or d.locate is None:
            return
        if d.handle:
            d.handle.cancel()
        self.event("handover_located", mn=m.dst, via=prev, seq=m.dst_seq, answered_by=ho.addr,
                   ms=round((self.now() - d.started) * 1000, 2))
        reg = self.registered.get(m.dst, {})
        s = reg.get("seq", d.locate.mn_seq)
        # normally the answer carries S and the binding S+1 (claim 32); if a router on the
        # way already knew a fresher seqno (e.g. bumped by a RERR), bind above that one
        s = seqnum.fresher(s, m.dst_seq)
        self.send_bind(m.dst, d.locate.addr, s, prev)

    def send_bind(self, mn: str, old_sink: str, s: int, via: str) -> None:
        """Claim 32: unsolicited RREP for the MN, originator = old sink, seqno + 1."""
        new_seq = seqnum.increment(s)
        r = self.routes.get(mn)
        if r is not None:
            self.routes.learn_seq(r, seqnum.fresher(r.seq, new_seq))
        msg = RREP(hop_count=1, dst=mn, dst_seq=new_seq, orig=old_sink,
                   lifetime=lifetime_ms(self.t.my_route_timeout),
                   extensions=[HandoverExt(kind=HandoverKind.BIND, mn_seq=new_seq,
                                           addr=self.addr)])
        ok = self.unicast(msg, via)
        self.counters["handover_bind_sent"] += 1
        self.event("handover_bind", mn=mn, old_sink=old_sink, seq=new_seq, via=via, sent=ok)
        self.pending_bind[mn] = self.now() + 2 * self.t.net_traversal_time
        if not ok:
            self.handover_failed(mn, HandoverExt(kind=HandoverKind.LOCATE, mn_seq=s,
                                                 addr=old_sink))

    def handover_failed(self, mn: str, loc: HandoverExt) -> None:
        """Claim 35 (alternative): the old sink cannot be reached: RERR to the MN."""
        self.pending_bind.pop(mn, None)
        msg = RERR(unreachable=[Unreachable(dst=loc.addr, seq=0)],
                   extensions=[HandoverExt(kind=HandoverKind.FAILED, mn_seq=loc.mn_seq,
                                           addr=loc.addr)])
        self.unicast(msg, mn)
        self.counters["rerr_sent"] += 1
        self.counters["handover_failed"] += 1
        self.event("handover_failed", mn=mn, old_sink=loc.addr)

    def on_handover_rrep_for_me(self, m: RREP, prev: str, ho: HandoverExt) -> None:
        if ho.kind == HandoverKind.BIND:
            # claims 33-35: I am the old sink; my route now leads via the new sink
            mn = m.dst
            self.registered.pop(mn, None)
            was_held = self.held.pop(mn, None) is not None
            r = self.routes.valid(mn)
            if r is not None:
                self.route_ready(r)
            ack = RREP(hop_count=0, dst=self.addr, dst_seq=self.seq, orig=mn,
                       lifetime=lifetime_ms(self.t.my_route_timeout),
                       extensions=[HandoverExt(kind=HandoverKind.ACK, mn_seq=m.dst_seq,
                                               addr=self.addr)])
            ok = self.unicast(ack, prev)
            self.counters["handover_ack_sent"] += 1
            self.event("handover_bound", mn=mn, new_sink=ho.addr, seq=m.dst_seq, via=prev,
                       was_held=was_held, ack_sent=ok)
        elif ho.kind == HandoverKind.REGISTERED and self.cfg.role == "mn":
            self.sink, self.attaching = ho.addr, None
            self.reg_seq = ho.mn_seq
            self.counters["handover_registered"] += 1
            self.event("registered_with_sink", sink=ho.addr, seq=ho.mn_seq)
            self.sync_catchalls()
        elif ho.kind == HandoverKind.ACK and self.cfg.role == "mn":
            self.mn_handover_done(prev, ho)

    def mn_handover_done(self, new_sink: str, ho: HandoverExt) -> None:
        """Claims 35-37: success: move traffic to the new sink, optimise later."""
        old_sink = ho.addr
        self.sink, self.attaching, self.last_sink = new_sink, None, old_sink
        self.reg_seq = ho.mn_seq
        self.sync_catchalls()
        self.seq = seqnum.fresher(self.seq, ho.mn_seq)
        nb = self.neighbours.get(new_sink)
        migrated, rediscover = [], []
        if nb is not None:
            for r in list(self.routes):
                if r.next_hop == old_sink and r.dst != old_sink:
                    self.held.pop(r.dst, None)
                    if self.rediscover_after_move(r):
                        # (a link break may have invalidated it already)
                        self.invalidate(r, "handover: the new sink may not serve it", bump_seq=False)
                        rediscover.append(r.dst)
                        continue
                    # one hop more, held at the 8-bit field's top (RFC 3561 5.2)
                    self.set_route(r.dst, new_sink, nb.iface,
                                   min(r.hop_count + 1, MAX_HOP_COUNT), r.seq,
                                   r.valid_seq, self.t.active_route_timeout, r.prefix_len)
                    migrated.append(r.dst)
            for dst in list(self.held):
                self.held.pop(dst)
                if self.routes.lookup(dst) is None and dst in self.buffer.queues:
                    self.discovery.start(dst)
            for r in [self.routes.get(d) for d in rediscover]:
                self.counters["handover_rediscovered"] += 1
                # one discovery per prefix: a held datagram's may be running already
                if not any(ipaddress.IPv4Address(d) in r.network for d in self.discovery.active):
                    self.discovery.start(r.dst, orig_seq=self.seq)
        ms = round((self.now() - self.handover_started) * 1000, 2) \
            if self.handover_started else None
        self.handover_started = None
        self.counters["handover_completed"] += 1
        self.event("handover_done", new_sink=new_sink, old_sink=old_sink, seq=ho.mn_seq,
                   migrated=migrated, rediscovered=rediscover, ms=ms)
        if self.cfg.handover.optimize:
            self.loop.call_later(self.cfg.handover.optimize_delay_ms / 1000,
                                 self.optimise_routes)

    def rediscover_after_move(self, r: Route) -> bool:
        """MN: rediscover this route at once (buffering meanwhile) instead of migrating it?

        Claim 36 lets the MN migrate forwarding to the new sink; that is safe for AODV host
        routes (/32): every MSR catches the managed prefix, so a new sink without a route
        buffers and discovers (RFC 3561 6.3). A gateway's prefix route (prefix_len < 32,
        e.g. a correspondent's network) is known only to the MSRs on the old path; a new
        sink off that path has neither a route nor a catch-all for it and drops what the
        MN sends (scenario handover-offpath: 107 datagrams lost). So for those the MN
        does what claim 37 allows at once and RFC 3561 6.3 prescribes: route discovery,
        with its datagrams buffered in its own TUN (only if a catch-all of its own covers
        the destination; otherwise migrating is the better guess). Returns a bool.
        """
        if r.prefix_len >= 32 or self.tun is None or not getattr(self, "_catchalls_on", True):
            return False
        return any(ipaddress.IPv4Address(r.dst) in net for net in self.managed)

    def mn_handover_failed(self, new_sink: str, ho: HandoverExt) -> None:
        """Claim 37: unsuccessful handover: re-discover active peers at once."""
        self.sink, self.attaching = new_sink, None
        self.seq = seqnum.increment(self.seq)
        self.sync_catchalls()
        self.reg_seq = self.seq
        self.counters["handover_failures_seen"] += 1
        self.event("handover_failed_at_mn", new_sink=new_sink, old_sink=ho.addr)
        self.held.clear()
        self.optimise_routes(force_all=True)

    def active_peers(self) -> list[str]:
        window = self.cfg.handover.active_peer_window_ms / 1000
        now = self.now()
        peers = [r.dst for r in self.routes
                 if r.last_used and now - r.last_used < window and r.dst not in self.neighbours]
        peers += [d for d in self.buffer.destinations() if d not in peers]
        return peers

    def optimise_routes(self, force_all: bool = False) -> None:
        """Claims 37-39: RREQs to active peers, source seqno = the MN's new seqno."""
        for peer in self.active_peers():
            if peer in self.discovery.active:
                continue
            self.counters["handover_optimise_rreq"] += 1
            self.discovery.start(peer, refresh=self.routes.lookup(peer) is not None,
                                 orig_seq=self.seq)
