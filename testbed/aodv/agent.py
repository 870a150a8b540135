"""The AODV agent (RFC 3561) with the patent's switchable extensions.

One event loop (loop.py), one thread: readers for the control socket, the buffer TUN and the
traffic monitor, plus a 50 ms housekeeping tick (expiry, hellos, neighbour loss, interface
changes, status file). Every protocol decision is a method named after the RFC section or
claim it implements, and logs at debug level why it did what it did.

Extensions (each off = plain AODV):
- handover (claims 26-39), role "mn" on the mobile node, "msr" on routers;
- weighted expanding ring search (claims 63-66);
- gratuitous RREP for long sessions (claims 67-70).
"""
from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import signal
import socket
import time

from . import seqnum
from .buffer import PacketBuffer, Reinjector, Tun, icmp_host_unreachable, ip_header
from .access_hook import ACCESS_EXT_TYPES
from .config import AgentConfig
from .interfaces import LinkEvents, carrier_changes, current_interfaces, local_addresses
from .kernel import KernelRoutes, set_sysctl
from .leave import LEAVE_NOTICE, open_leave_socket
from .handover import HandoverMixin
from .context import NodeContext
from .discovery import Discoveries, Discovery, rate_ok
from .long_session import LongSessions
from .loop import EventLoop
from .messages import (
    MAX_HOP_COUNT, RERR, RREP, RREQ, GratuitousExt, HandoverExt, HandoverKind,
    MalformedMessage, RREPAck, Unreachable, WeightExt, hello, lifetime_ms, parse_message,
)
from .ring_search import select_candidates
from .route_table import Route, RouteTable, should_update
from .status import StatusMixin
from .traffic import TrafficMonitor
from .transport import BROADCAST, ControlSocket

log = logging.getLogger("aodv")
TICK_S = 0.05
BCAST_IP = ipaddress.IPv4Address("255.255.255.255")


@dataclasses.dataclass
class Neighbour:
    addr: str
    iface: str
    last_heard: float
    hello_lifetime_s: float


class Agent(HandoverMixin, StatusMixin):
    def __init__(self, cfg: AgentConfig, access_hook=None) -> None:
        self.cfg = cfg
        #: the access plane of issue 5 (contract in access_hook.py): verdicts on hellos
        #: with access extensions, proxied nodes, extra readers, status
        self.access_hook = access_hook
        self.t = cfg.timers
        self.addr = str(cfg.address)
        self.seq = 1
        self.counters: collections.Counter[str] = collections.Counter()
        self.routes = RouteTable(self.counters, cfg.max_precursors)
        self.neighbours: dict[str, Neighbour] = {}
        self.ifaces: dict[str, tuple[int, str]] = {}
        self.local_addrs: set[str] = {self.addr}
        self.events: collections.deque[dict] = collections.deque(maxlen=200)
        self.rerr_times: collections.deque[float] = collections.deque()
        self.buffer = PacketBuffer(cfg.buffer_max_per_dest, cfg.buffer_max_total)
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.next_hello = 0.0
        self.next_status = 0.0
        self.next_iface_poll = 0.0
        self._names: list = []
        self._last_poll = 0.0
        self.managed = [ipaddress.IPv4Network(p) for p in cfg.managed_prefixes]
        self.announced = [ipaddress.IPv4Network(p) for p in cfg.announced_prefixes]
        # handover state
        self.sink: str | None = None          # MN: current sink
        self.last_sink: str | None = None     # MN: sink before the current attachment
        self.reg_seq: int | None = None       # MN: seqno of the last registration reply
        self.attaching: str | None = None     # MN: sink we are attaching to
        self.attach_sent_at = 0.0
        self.attach_tries = 0
        self.probe: tuple[str, str, float] | None = None  # MN: (sink, candidate, deadline)
        self.handover_started: float | None = None
        self.registered: dict[str, dict] = {}  # sink: MNs attached to us
        self.held: dict[str, float] = {}       # old sink / MN: dst -> hold deadline
        self.pending_bind: dict[str, float] = {}  # new sink: MN -> deadline for the ACK
        self.greeted: set[str] = set()
        #: route to a node as it was before that node became our neighbour (claim 29 test)
        self.prior_route: dict[str, Route | None] = {}
        self.kernel: KernelRoutes | None = None
        self.sock: ControlSocket | None = None
        self.tun: Tun | None = None
        self.reinjector: Reinjector | None = None
        self.monitor: TrafficMonitor | None = None
        self.link_events: LinkEvents | None = None
        #: MN: where our Mobile IP agent says it left the home domain (handover.leave_socket)
        self.leave_sock: socket.socket | None = None
        #: carrier-change count per interface when we last saw it usable
        self.carrier_seen: dict[str, int] = {}
        self.loop = EventLoop()
        self.ctx = NodeContext(
            addr=self.addr, cfg=cfg, routes=self.routes, counters=self.counters, now=self.now,
            unicast=self.unicast, event=self.event, own_seq=lambda: self.seq,
            set_route=self.set_route, discover=lambda *a, **k: self.discovery.start(*a, **k),
            discovering=lambda dst: dst in self.discovery.active)
        #: RFC 6.3-6.5: our RREQs and ring searches, RREQs heard
        self.discovery = Discoveries(
            self.ctx, call_later=self.loop.call_later, next_seq=self.next_rreq_seq,
            broadcast=self.broadcast, send_weighted=self.send_weighted,
            on_failed=self.discovery_failed)
        #: claims 67-70: gratuitous RREPs and refresh RREQs
        self.long_sessions = LongSessions(
            self.ctx, lambda a: self.monitor.from_src.get(a) if self.monitor else None)

    # ------------------------------------------------------------------ set-up
    def open(self) -> None:
        """Create sockets, the TUN and the catch-all routes. Needs CAP_NET_ADMIN/NET_RAW."""
        cfg = self.cfg
        if cfg.set_sysctls:
            set_sysctl("net/ipv4/ip_forward", "1")
            for k in ("all", "default"):
                set_sysctl(f"net/ipv4/conf/{k}/rp_filter", "0")
                set_sysctl(f"net/ipv4/conf/{k}/send_redirects", "0")
        self.kernel = KernelRoutes(cfg.kernel_proto)
        self.routes.kernel = self.kernel
        stale = self.kernel.flush_owned()
        if stale:
            log.info("removed %d stale routes with proto %d", stale, cfg.kernel_proto)
        self.sock = ControlSocket()
        self.reinjector = Reinjector()
        if self.managed:
            self.tun = Tun(cfg.tun_name)
            idx = socket.if_nametoindex(cfg.tun_name)
            self.kernel.ipr.link("set", index=idx, state="up")
            if cfg.set_sysctls:
                set_sysctl(f"net/ipv4/conf/{cfg.tun_name}/rp_filter", "0")
            for net in self.managed:
                self.kernel.add_catchall(str(net.network_address), net.prefixlen, cfg.tun_name,
                                         cfg.catchall_metric)
        self.poll_interfaces(initial=True)
        if cfg.link_layer_detection:
            try:
                self.link_events = LinkEvents()
            except OSError as e:  # polling still finds vanished interfaces, only later
                log.warning("no link notifications (%s); carrier flaps go unnoticed", e)
        if cfg.role == "mn" and cfg.handover.leave_socket:
            self.leave_sock = open_leave_socket(cfg.handover.leave_socket)
        self.monitor = TrafficMonitor(self.local_addrs, {"lo", cfg.tun_name},
                                      cfg.max_tracked_addresses)
        log.info("AODV agent %s role=%s handover=%s weighted=%s gratuitous=%s managed=%s",
                 self.addr, cfg.role, cfg.handover.enabled, cfg.weighted_search.enabled,
                 cfg.gratuitous.enabled, [str(n) for n in self.managed])

    def close(self) -> None:
        self.discovery.close()
        if self.kernel:
            self.kernel.flush_owned()
            self.kernel.close()
        for x in (self.sock, self.tun, self.reinjector, self.monitor, self.link_events, self.leave_sock):
            if x is not None:
                x.close()

    def run(self) -> None:
        """Run until SIGTERM/SIGINT."""
        self.open()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.loop.stop())
        self.loop.add_reader(self.sock.fileno(), self._on_control)
        if self.tun:
            self.loop.add_reader(self.tun.fileno(), self._on_tun)
        self.loop.add_reader(self.monitor.fileno(), self.monitor.drain)
        if self.link_events is not None:
            self.loop.add_reader(self.link_events.fileno(), self._on_link_events)
        if self.leave_sock is not None:
            self.loop.add_reader(self.leave_sock.fileno(), self._on_leave_notice)
        if self.access_hook is not None and hasattr(self.access_hook, "readers"):
            for fileobj, callback in self.access_hook.readers():
                self.loop.add_reader(fileobj, callback)
        self.loop.call_later(0, self._tick_timer)
        try:
            self.loop.run(self._on_error)
        finally:
            self.write_status()
            self.close()

    def _on_error(self, exc: BaseException) -> None:
        self.counters["internal_errors"] += 1
        log.error("internal error: %r", exc, exc_info=exc)

    def _tick_timer(self) -> None:
        try:
            self.tick()
        finally:
            self.loop.call_later(TICK_S, self._tick_timer)

    # ------------------------------------------------------------------ helpers
    def now(self) -> float:
        return time.monotonic()

    def event(self, kind: str, **kw) -> None:
        e = {"t": round(time.time(), 4), "kind": kind, **kw}
        self.events.append(e)
        log.info("event %s %s", kind, kw)

    def ifindex(self, iface: str) -> int | None:
        x = self.ifaces.get(iface)
        return x[0] if x else None

    def iface_of(self, ifindex: int) -> str | None:
        for name, (idx, _a) in self.ifaces.items():
            if idx == ifindex:
                return name
        return None

    def send(self, msg, dst: str, ttl: int, iface: str | None) -> bool:
        data = bytes(msg)
        idx = self.ifindex(iface) if iface else None
        if iface and idx is None:
            return False
        ok = self.sock.send(data, dst, ttl, idx, self.addr)
        if not ok:
            self.counters["send_errors"] += 1
        return ok

    def broadcast(self, msg, ttl: int, exclude_iface: str | None = None) -> int:
        n = 0
        for iface in list(self.ifaces):
            if iface == exclude_iface:
                continue
            if self.send(msg, BROADCAST, ttl, iface):
                n += 1
        return n

    def unicast(self, msg, next_hop: str) -> bool:
        """Send to a neighbour, on the interface our route to it uses."""
        r = self.routes.get(next_hop)
        iface = r.iface if r is not None and r.next_hop == next_hop else None
        if iface is None and next_hop in self.neighbours:
            iface = self.neighbours[next_hop].iface
        return self.send(msg, next_hop, 1 if iface else 64, iface)

    def is_local(self, addr: str) -> bool:
        return addr in self.local_addrs

    def announced_net(self, addr: str) -> ipaddress.IPv4Network | None:
        ip = ipaddress.IPv4Address(addr)
        for net in self.announced:
            if ip in net:
                return net
        return None

    # ------------------------------------------------------------------ routes
    def set_route(self, dst: str, next_hop: str, iface: str, hop_count: int, seq: int,
                  valid_seq: bool, lifetime_s: float, prefix_len: int = 32,
                  keep_longer: bool = True) -> Route:
        """Create/overwrite a valid route (the table mirrors it into the kernel); a route
        that became usable finishes discoveries and flushes buffered datagrams."""
        r, changed = self.routes.update(dst, next_hop, iface, hop_count, seq, valid_seq,
                                        lifetime_s, self.now(), prefix_len, keep_longer)
        if changed:
            self.route_ready(r)
        return r

    def invalidate(self, r: Route, reason: str, bump_seq: bool = True) -> None:
        if self.routes.invalidate(r, self.now(), self.t.delete_period, bump_seq):
            log.debug("route %s/%d via %s invalid (%s)", r.dst, r.prefix_len, r.next_hop, reason)

    def route_ready(self, r: Route) -> None:
        """A route became usable: finish discoveries it answers and flush buffered datagrams."""
        for dst in list(self.discovery.active):
            d = self.discovery.active[dst]
            if d.locate is not None:
                continue
            match = self.routes.lookup(dst)
            if match is not None and match.valid:
                self.discovery.finish(d, match)
        for dst in self.buffer.destinations():
            if dst in self.held and self.routes.lookup(dst) is None:
                continue
            match = self.routes.lookup(dst)
            if match is not None:
                pkts = self.buffer.pop(dst)
                for p in pkts:
                    if self.reinjector.send(p):
                        self.counters["reinjected"] += 1
                if pkts:
                    log.debug("flushed %d buffered datagrams for %s via %s", len(pkts), dst,
                              match.next_hop)

    def neighbour_route(self, addr: str, iface: str, lifetime_s: float,
                        seq: int | None) -> Route:
        """RFC 6.5/6.9: a one-hop route to a node we just heard from directly."""
        r = self.routes.get(addr)
        valid_seq = seq is not None
        s = seq if seq is not None else (r.seq if r else 0)
        if r is not None and r.valid_seq and valid_seq:
            s = seqnum.fresher(s, r.seq)
        if r is not None and not valid_seq:
            valid_seq = r.valid_seq
        return self.set_route(addr, addr, iface, 1, s, valid_seq, lifetime_s)

    def _on_leave_notice(self) -> None:
        """Datagrams on the leave socket: b"left" means Mobile IP registered away."""
        assert self.leave_sock is not None
        while True:
            try:
                data = self.leave_sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            if data.strip() == LEAVE_NOTICE:
                self.mn_left()
            else:
                self.counters["leave_notices_malformed"] += 1

    # ------------------------------------------------------------------ control input
    def _on_control(self) -> None:
        for _ in range(64):
            rx = self.sock.recv()
            if rx is None:
                return
            if self.is_local(rx.src):
                continue  # our own broadcast looped back
            self.counters["messages_received"] += 1
            try:
                msg = parse_message(rx.data)
            except MalformedMessage as exc:
                self.counters["malformed_dropped"] += 1
                log.debug("dropped malformed message from %s (%d bytes): %s", rx.src,
                          len(rx.data), exc)
                continue
            bad = self.semantic_error(msg)
            if bad:
                self.counters["malformed_dropped"] += 1
                log.debug("dropped %s from %s: %s", type(msg).__name__, rx.src, bad)
                continue
            if isinstance(msg, (RREQ, RREP)) and msg.hop_count >= MAX_HOP_COUNT:
                # RFC 3561 5.1/5.2: Hop Count is 8 bits and 6.5/6.7 add one before storing
                # and forwarding: 256 fits no message, so the route could never be told on
                self.counters["hop_count_overflow_dropped"] += 1
                log.debug("dropped %s from %s: hop count %d leaves no room to add one",
                          type(msg).__name__, rx.src, msg.hop_count)
                continue
            if not self.routes.make_room(self.route_keys(msg, rx.src), self.cfg.max_routes):
                self.counters["route_table_full_dropped"] += 1
                log.debug("dropped %s from %s: route table full (%d)", type(msg).__name__,
                          rx.src, len(self.routes))
                continue
            iface = self.iface_of(rx.ifindex)
            if iface is None:
                self.poll_interfaces()
                iface = self.iface_of(rx.ifindex)
                if iface is None:
                    self.counters["foreign_iface_dropped"] += 1
                    continue
            if rx.src in self.neighbours:
                self.neighbours[rx.src].last_heard = self.now()
            try:
                if isinstance(msg, RREQ):
                    self.on_rreq(msg, rx.src, iface, rx.ttl)
                elif isinstance(msg, RREP):
                    self.on_rrep(msg, rx.src, iface, rx.ttl, rx.dst)
                elif isinstance(msg, RERR):
                    self.on_rerr(msg, rx.src, iface)
                elif isinstance(msg, RREPAck):
                    self.counters["rrep_ack_received"] += 1
                    if self.probe is not None and self.probe[0] == rx.src:
                        self.probe = None  # the sink answered: it is still there
            except Exception:
                self.counters["internal_errors"] += 1
                log.exception("handling %s from %s failed", type(msg).__name__, rx.src)

    @staticmethod
    def route_keys(msg, prev: str) -> list[str]:
        """Route table keys a message may add (RFC 3561 6.5, 6.7, 6.9): the previous hop,
        a RREQ's originator, a RREP's destination (its network for a prefix RREP)."""
        if isinstance(msg, RREQ):
            return [prev, msg.orig]
        if isinstance(msg, RREP):
            dst = msg.dst if not msg.prefix_sz else str(ipaddress.IPv4Network(
                f"{msg.dst}/{msg.prefix_sz}", strict=False).network_address)
            return [prev, dst]
        return []

    @staticmethod
    def semantic_error(msg) -> str | None:
        """Well-formed bytes can still name impossible addresses: never route to those."""
        addrs: list[str] = []
        if isinstance(msg, (RREQ, RREP)):
            addrs = [msg.dst, msg.orig]
        elif isinstance(msg, RERR):
            addrs = [u.dst for u in msg.unreachable]
        for a in addrs:
            ip = ipaddress.IPv4Address(a)
            if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip == BCAST_IP:
                return f"address {a} cannot be routed"
        if isinstance(msg, RREP) and msg.prefix_sz and msg.prefix_sz < 8:
            return f"prefix size {msg.prefix_sz} too short"
        return None

    # ------------------------------------------------------------------ RREQ (6.3-6.6)
    def next_rreq_seq(self, orig_seq: int | None) -> int:
        """Our seqno for a RREQ we originate (RFC 6.1: incremented before each discovery;
        claim 38: at least the seqno the handover gave)."""
        if orig_seq is not None:
            self.seq = seqnum.fresher(self.seq, orig_seq)
        else:
            self.seq = seqnum.increment(self.seq)
        if self.cfg.role == "mn" and self.reg_seq is not None and self.sink is not None:
            # this RREQ distributes our new seqno via the sink: it is what the network
            # now knows of us, so it is what the next handover hello must carry (claim 27)
            self.reg_seq = seqnum.fresher(self.reg_seq, self.seq)
        return self.seq

    def discovery_failed(self, d: Discovery) -> None:
        """No route found: a handover LOCATE fails (claim 35), a refresh keeps the route it
        has, otherwise the buffered datagrams are answered ICMP host unreachable (RFC 6.3)."""
        if d.locate is not None:
            self.handover_failed(d.dst, d.locate)
            return
        if d.refresh:
            return
        for pkt in self.buffer.drop(d.dst):
            self.send_icmp_unreachable(pkt)

    def send_icmp_unreachable(self, pkt: bytes) -> None:
        try:
            icmp = icmp_host_unreachable(pkt, self.addr)
        except Exception:
            return
        if self.reinjector.send(icmp):
            self.counters["icmp_unreachable_sent"] += 1

    def on_rreq(self, m: RREQ, prev: str, iface: str, ip_ttl: int) -> None:
        self.counters["rreq_received"] += 1
        now = self.now()
        orig, dst = m.orig, m.dst
        if self.is_local(orig):
            return
        # RFC 6.5: route to the previous hop (no valid seqno)
        self.neighbour_route(prev, iface, self.t.active_route_timeout, None)
        wext = m.ext(WeightExt)
        weight = wext.weight if wext is not None else None
        key = (orig, m.rreq_id)
        seen = self.discovery.seen_rreq.get(key)
        if seen is not None and seen[0] > now:
            self.counters["rreq_duplicate"] += 1
            # claim 65: the lowest-weight path from the source wins the reverse route
            if weight is not None and seen[1] is not None and weight < seen[1]:
                self.discovery.seen_rreq[key] = (seen[0], weight)
                rev = self.routes.get(orig)
                if rev is not None and rev.valid:
                    log.debug("reverse route to %s now via %s (weight %d < %d)", orig, prev,
                              weight, seen[1])
                    self.set_route(orig, prev, iface, m.hop_count + 1, m.orig_seq, True,
                                   max(rev.remaining(now), self.t.active_route_timeout))
                    self.routes.set_weight(rev, weight)
            return
        self.discovery.remember_rreq(key, (now + self.t.path_discovery_time, weight))
        hops = m.hop_count + 1
        # RFC 6.5: reverse route to the originator
        rev = self.routes.get(orig)
        min_life = 2 * self.t.net_traversal_time - 2 * hops * self.t.node_traversal_time
        if should_update(rev, m.orig_seq, True, hops) or rev is None or not rev.valid:
            life = max(rev.remaining(now) if rev and rev.valid else 0, min_life)
            rev = self.set_route(orig, prev, iface, hops, m.orig_seq, True, life)
        else:
            self.routes.extend(rev, now + min_life)
        if weight is not None:
            self.routes.set_weight(rev, weight)
        ho = m.ext(HandoverExt)
        locate = ho is not None and ho.kind == HandoverKind.LOCATE
        if locate and self.is_local(dst):
            log.debug("ignoring handover LOCATE RREQ for myself from %s", orig)
            return
        # Am I the destination?
        if self.is_local(dst):
            if not m.flags.U:
                if m.dst_seq == seqnum.increment(self.seq):
                    self.seq = m.dst_seq
                self.seq = seqnum.fresher(self.seq, m.dst_seq)
            self.reply_as_destination(m, prev, dst, 32)
            return
        net = self.announced_net(dst)
        if net is not None:
            # RFC 6.6.1 as for our own address: the gateway speaks for the network
            if not m.flags.U:
                self.seq = seqnum.fresher(self.seq, m.dst_seq)
            self.reply_as_destination(m, prev, str(net.network_address), net.prefixlen)
            return
        if self.access_hook is not None and self.access_hook.proxied(dst):
            self.reply_as_destination(m, prev, dst, 32)  # claim 57: sink as routing proxy
            return
        if locate and ho.addr == self.addr:
            # claim 31: I am the old sink: answer even if my route to the MN broke
            # Answer with the seqno the MN registered (S), not the one our link break
            # bumped: the binding (S+1) must be fresher than what this reply installs.
            seq = ho.mn_seq
            rep = RREP(hop_count=1, dst=dst, dst_seq=seq, orig=orig,
                       lifetime=lifetime_ms(self.t.active_route_timeout),
                       extensions=[HandoverExt(kind=HandoverKind.LOCATE, mn_seq=seq,
                                               addr=self.addr)])
            self.unicast(rep, prev)
            self.counters["rrep_sent"] += 1
            self.event("handover_locate_answered", mn=dst, new_sink=orig, role="old_sink")
            return
        r = self.routes.lookup(dst)
        if (r is not None and r.valid and r.valid_seq and self.cfg.intermediate_reply
                and not m.flags.D and r.next_hop != prev
                and (m.flags.U or seqnum.newer_or_equal(r.seq, m.dst_seq))):
            self.reply_as_intermediate(m, prev, r, rev, locate)
            return
        # forward (RFC 6.5)
        if ip_ttl <= 1:
            self.counters["rreq_ttl_expired"] += 1
            return
        fwd = m.copy()
        fwd.hop_count = hops
        known = self.routes.get(dst)
        if known is not None and known.valid_seq and not m.flags.U:
            fwd.dst_seq = seqnum.fresher(m.dst_seq, known.seq)
        if weight is not None and self.cfg.weighted_search.enabled:
            exclude = {prev, orig}
            n = self.send_weighted(fwd, weight, exclude, ip_ttl - 1)
        else:
            n = self.broadcast(fwd, ip_ttl - 1)
        self.counters["rreq_forwarded"] += 1
        self.counters["rreq_tx"] += n
        log.debug("forwarded RREQ %s/%d for %s (ttl %d) on %d links", orig, m.rreq_id, dst,
                  ip_ttl - 1, n)

    def send_weighted(self, msg: RREQ, sum_so_far: int, exclude: set[str], ttl: int) -> int:
        """Claims 63-66: unicast only to the lowest summed-weight neighbours."""
        ws = self.cfg.weighted_search
        alive = [a for a in self.neighbours if self.routes.valid(a) is not None]
        chosen = select_candidates(alive, ws.weights, ws.default_weight, sum_so_far, exclude,
                                   ws.fanout, destination=msg.dst)
        n = 0
        for nbr, total in chosen:
            m = msg.copy()
            m.extensions = [e for e in m.extensions if not isinstance(e, WeightExt)] + \
                [WeightExt(weight=total)]
            iface = self.neighbours[nbr].iface
            if self.send(m, nbr, ttl, iface):
                n += 1
        log.debug("weighted RREQ for %s: candidates %s", msg.dst, chosen)
        return n

    def reply_as_destination(self, m: RREQ, prev: str, dst: str, prefix_len: int) -> None:
        """RFC 6.6.1 (and a prefix RREP for announced networks, RFC 5.2)."""
        life = self.t.my_route_timeout
        rep = RREP(hop_count=0, dst=dst, dst_seq=self.seq, orig=m.orig,
                   prefix_sz=0 if prefix_len == 32 else prefix_len, lifetime=lifetime_ms(life))
        self.unicast(rep, prev)
        self.counters["rrep_sent"] += 1
        self.long_sessions.replied(m.orig, dst, prefix_len, life)
        rev = self.routes.get(m.orig)
        if rev is not None and rev.valid:
            self.routes.extend(rev, self.now() + self.t.active_route_timeout)
        log.debug("RREP as destination for %s/%d to %s via %s (seq %d)", dst, prefix_len,
                  m.orig, prev, self.seq)

    def reply_as_intermediate(self, m: RREQ, prev: str, r: Route, rev: Route,
                              locate: bool) -> None:
        """RFC 6.6.2 (and claim 31: a router on the path answers the new sink's LOCATE)."""
        life_ms = max(1, lifetime_ms(r.remaining()))
        exts = [HandoverExt(kind=HandoverKind.LOCATE, mn_seq=r.seq, addr="0.0.0.0")] \
            if locate else []
        rep = RREP(hop_count=r.hop_count, dst=r.dst, dst_seq=r.seq, orig=m.orig,
                   prefix_sz=0 if r.prefix_len == 32 else r.prefix_len, lifetime=life_ms,
                   extensions=exts)
        self.unicast(rep, prev)
        self.counters["rrep_sent"] += 1
        self.routes.add_precursor(r, prev)
        self.routes.add_precursor(rev, r.next_hop)
        self.long_sessions.replied(m.orig, r.dst, r.prefix_len, life_ms / 1000,
                                   intermediate=True)
        if m.flags.G:  # gratuitous RREP to the destination (RFC 6.6.3)
            g = RREP(hop_count=rev.hop_count, dst=m.orig, dst_seq=m.orig_seq, orig=r.dst,
                     lifetime=max(1, lifetime_ms(rev.remaining())))
            self.unicast(g, r.next_hop)
        if locate:
            self.event("handover_locate_answered", mn=m.dst, new_sink=m.orig, role="router")
        log.debug("RREP as intermediate for %s to %s (seq %d, %d hops)", r.dst, m.orig, r.seq,
                  r.hop_count)

    # ------------------------------------------------------------------ RREP (6.7)
    def on_rrep(self, m: RREP, prev: str, iface: str, ip_ttl: int, ip_dst: str) -> None:
        now = self.now()
        ho = m.ext(HandoverExt)
        if m.flags.A:
            self.unicast(RREPAck(), prev)
            self.counters["rrep_ack_sent"] += 1
        if m.hop_count == 0 and m.dst == prev and m.orig == prev \
                and (ho is None or ho.kind == HandoverKind.ATTACH):
            self.on_hello(m, prev, iface, ho)
            return
        self.counters["rrep_received"] += 1
        hops = m.hop_count + 1
        prefix_len = m.prefix_sz or 32
        key = m.dst if prefix_len == 32 else str(
            ipaddress.IPv4Network(f"{m.dst}/{prefix_len}", strict=False).network_address)
        # the neighbour that sent it is reachable directly
        if prev != key:
            self.neighbour_route(prev, iface, self.t.active_route_timeout, None)
        if ho is not None and ho.kind == HandoverKind.LOCATE and self.is_local(m.orig):
            self.on_locate_reply(m, prev, ho)
            return
        old = self.routes.get(key)
        old_next = old.next_hop if old is not None else None
        life_s = m.lifetime / 1000
        fwd = old
        old_seq = old.seq if old is not None else None
        updated = should_update(old, m.dst_seq, True, hops)
        if updated:
            fwd = self.set_route(key, prev, iface, hops, m.dst_seq, True, life_s, prefix_len)
        elif old is not None and old.valid and old.next_hop == prev and m.dst_seq == old.seq:
            self.routes.extend(old, now + life_s)  # same route, fresh lifetime
        if ho is not None and ho.kind == HandoverKind.BIND:
            if updated:
                self.event("handover_route_updated", mn=key, via=prev, seq=m.dst_seq,
                           old_next_hop=old_next, new_sink=ho.addr)
            else:
                log.info("handover binding for %s (seq %d) not applied: our route has seq %s"
                         " via %s", key, m.dst_seq, old_seq, old_next)
        if self.is_local(m.orig):
            d = self.discovery.active.get(m.dst)
            r = self.routes.lookup(m.dst)
            if d is not None and d.locate is None and r is not None:
                self.discovery.finish(d, r)
                self.route_ready(r)
            if ho is not None:
                self.on_handover_rrep_for_me(m, prev, ho)
            return
        # forward towards the originator
        self.forward_rrep(m, prev, hops, fwd, ho, old_next)

    def forward_rrep(self, m: RREP, prev: str, hops: int, fwd: Route | None,
                     ho: HandoverExt | None, old_next: str | None) -> None:
        now = self.now()
        rev = self.routes.lookup(m.orig)
        tree = ho is not None and ho.kind == HandoverKind.BIND or m.ext(GratuitousExt) is not None
        next_hop = rev.next_hop if rev is not None else None
        if next_hop is None and tree:
            # Unsolicited RREPs travel "along the existing tree": a remembered (expired)
            # reverse route, or for a handover binding the old route towards the old sink.
            stale = self.routes.get(m.orig)
            if stale is not None:
                next_hop = stale.next_hop
            elif ho is not None and ho.kind == HandoverKind.BIND and old_next and old_next != prev:
                next_hop = old_next
        if next_hop is None or next_hop == prev:
            self.counters["rrep_no_reverse_route"] += 1
            log.debug("cannot forward RREP for %s: no route to originator %s", m.dst, m.orig)
            return
        out = m.copy()
        out.hop_count = hops
        if self.unicast(out, next_hop):
            self.counters["rrep_forwarded"] += 1
        if fwd is not None:
            self.routes.add_precursor(fwd, next_hop)
        stale = self.routes.get(m.orig)
        if stale is not None:
            if not stale.valid and tree:
                self.set_route(stale.dst, stale.next_hop, stale.iface, stale.hop_count,
                               stale.seq, stale.valid_seq, self.t.active_route_timeout,
                               stale.prefix_len)
            elif stale.valid:
                self.routes.extend(stale, now + self.t.active_route_timeout)
            self.routes.add_precursor(stale, prev)
        if ho is not None and ho.kind == HandoverKind.ACK and m.orig in self.pending_bind:
            self.pending_bind.pop(m.orig, None)
            self.event("handover_ack_relayed", mn=m.orig, old_sink=m.dst)

    # ------------------------------------------------------------------ hello (6.9)
    def send_hellos(self) -> None:
        lifetime = self.t.hello_lifetime_ms()
        msg = hello(self.addr, self.seq, lifetime)
        n = self.broadcast(msg, 1)
        self.counters["hello_sent"] += n

    def hello_life_s(self, m: RREP) -> float:
        """Seconds a neighbour's hello keeps it (RFC 6.9/6.11): at least ALLOWED_HELLO_LOSS *
        HELLO_INTERVAL; a longer Lifetime in the hello is believed up to DELETE_PERIOD only,
        so a vanished (or invented) neighbour never stays for the 49 days the field can say."""
        own = self.t.allowed_hello_loss * self.t.hello_interval
        return min(max(m.lifetime / 1000, own), max(own, self.t.delete_period))

    def on_hello(self, m: RREP, prev: str, iface: str, ho: HandoverExt | None) -> None:
        self.counters["hello_received"] += 1
        now = self.now()
        # An access interface (the hook "guards" it) admits no neighbour without the access
        # plane's verdict, plain hellos included: otherwise leaving the extension out would
        # be a way around authentication (claims 40-41).
        guards = getattr(self.access_hook, "guards", None)
        if self.access_hook is not None and (
                any(getattr(e, "type", None) in ACCESS_EXT_TYPES for e in m.extensions)
                or (guards is not None and guards(iface))):
            verdict = self.access_hook.on_hello(m, prev, iface)
            if verdict != "admit":
                # claims 40-41: no route for a node the access plane has not admitted
                self.counters[f"access_{verdict}"] += 1
                log.debug("hello from %s not admitted by the access plane: %s", prev, verdict)
                return
        life = self.hello_life_s(m)
        new = prev not in self.neighbours
        if new and len(self.neighbours) >= self.cfg.max_neighbours:
            self.counters["neighbour_table_full_dropped"] += 1
            log.debug("hello from %s dropped: %d neighbours already", prev, len(self.neighbours))
            return
        before = self.routes.get(prev)
        before = dataclasses.replace(before) if before is not None else None
        self.neighbours[prev] = Neighbour(prev, iface, now, life)
        if new:
            self.prior_route[prev] = before
        if ho is not None and ho.kind == HandoverKind.ATTACH and self.cfg.handover.enabled \
                and self.cfg.role == "msr":
            self.on_attach(m, prev, iface, ho, before)
        else:
            self.neighbour_route(prev, iface, life, m.dst_seq)
        if new:
            log.debug("new neighbour %s on %s", prev, iface)
            if prev not in self.greeted:
                # answer at once so a node that just arrived finds us without waiting
                self.greeted.add(prev)
                self.counters["hello_sent"] += 1
                lifetime = self.t.hello_lifetime_ms()
                self.send(hello(self.addr, self.seq, lifetime), BROADCAST, 1, iface)
        if self.cfg.role == "mn" and self.cfg.handover.enabled:
            self.mn_consider_sink(prev)

    # ------------------------------------------------------------------ RERR (6.11)
    def link_break(self, neighbour: str, reason: str) -> None:
        """The link to a neighbour is gone: invalidate what used it, tell the precursors."""
        self.neighbours.pop(neighbour, None)
        self.greeted.discard(neighbour)
        self.prior_route.pop(neighbour, None)
        self.counters["link_breaks"] += 1
        broken = self.routes.via(neighbour)
        log.info("link to %s broken (%s): %d routes affected", neighbour, reason, len(broken))
        unreachable: list[Route] = []
        hold = self.cfg.handover.enabled and self.cfg.handover.old_sink_hold_ms > 0
        for r in broken:
            self.invalidate(r, f"link to {neighbour} broken")
            if hold and r.dst in self.registered:
                # claim 34: the old sink waits for the new sink's binding instead of RERR
                self.held[r.dst] = self.now() + self.cfg.handover.old_sink_hold_ms / 1000
                self.event("handover_hold", mn=r.dst, role="old_sink",
                           hold_ms=self.cfg.handover.old_sink_hold_ms)
                continue
            if hold and self.cfg.role == "mn" and neighbour == self.sink:
                self.held[r.dst] = self.now() + self.cfg.handover.old_sink_hold_ms / 1000
            if r.precursors:
                unreachable.append(r)
        if self.cfg.role == "mn" and neighbour == self.sink:
            self.sink_lost_to("", reason)
        self.send_rerr(unreachable)

    def send_rerr(self, routes: list[Route], extensions: list | None = None) -> None:
        if not routes:
            return
        if not rate_ok(self.rerr_times, self.t.rerr_ratelimit, self.now()):
            self.counters["rerr_ratelimited"] += 1
            return
        precursors = set().union(*(r.precursors for r in routes))
        msg = RERR(unreachable=[Unreachable(dst=r.dst, seq=r.seq) for r in routes[:255]],
                   extensions=extensions or [])
        if len(precursors) == 1:
            (p,) = precursors
            sent = 1 if self.unicast(msg, p) else 0
        else:
            sent = self.broadcast(msg, 1)
        self.counters["rerr_sent"] += 1
        log.debug("RERR for %s to %s", [r.dst for r in routes], sorted(precursors))
        for r in routes:
            self.routes.clear_precursors(r)
        return sent

    def on_rerr(self, m: RERR, prev: str, iface: str) -> None:
        self.counters["rerr_received"] += 1
        ho = m.ext(HandoverExt)
        if ho is not None and ho.kind == HandoverKind.FAILED and self.cfg.role == "mn":
            self.mn_handover_failed(prev, ho)
        propagate: list[Route] = []
        for u in m.unreachable:
            r = self.routes.get(u.dst) or self.routes.lookup(u.dst)
            if r is None or not r.valid or r.next_hop != prev:
                continue
            self.invalidate(r, f"RERR from {prev}", bump_seq=False)
            if u.seq:
                self.routes.learn_seq(r, u.seq)
            if r.precursors:
                propagate.append(r)
        self.send_rerr(propagate)

    # ------------------------------------------------------------------ data plane
    def _on_tun(self) -> None:
        for _ in range(256):
            pkt = self.tun.read()
            if pkt is None:
                return
            hdr = ip_header(pkt)
            if hdr is None:
                continue
            src, dst, _proto = hdr
            self.on_no_route(pkt, src, dst)

    def on_no_route(self, pkt: bytes, src: str, dst: str) -> None:
        """A datagram hit the catch-all route: buffer + discover, or refuse (RFC 6.3, 6.11)."""
        r = self.routes.lookup(dst)
        if r is not None:
            # We think we have a route but the kernel sent the datagram here: its route
            # vanished (e.g. with its interface). Put it back, or give the route up;
            # never re-inject blindly (it would loop through the TUN).
            if self.now() - self._last_poll > 0.05:
                self.poll_interfaces()  # a vanished interface: link-break handling first
                r = self.routes.lookup(dst)
        if r is not None:
            if r.iface in self.ifaces and self.routes.mirror(r):
                if self.reinjector.send(pkt):
                    self.counters["reinjected"] += 1
                return
            self.counters["kernel_route_lost"] += 1
            self.invalidate(r, f"kernel route gone (interface {r.iface})")
            r = None
        if dst in self.held:
            # claim 34: an old sink keeps what arrives for its departed MN until the new
            # sink's binding tells it where to send it (or the hold runs out)
            self.buffer.add(dst, pkt)
            return
        ours = (self.is_local(src) or self.announced_net(src) is not None
                or src in self.neighbours or src in self.registered
                or (self.access_hook is not None and self.access_hook.proxied(src)))
        if not ours:
            # RFC 6.11 (ii): forwarded datagram without a route: drop and RERR
            self.counters["no_route_dropped"] += 1
            stale = self.routes.get(dst)
            rev = self.routes.lookup(src)
            if rev is not None:
                seq = stale.seq if stale is not None else 0
                fake = Route(dst=dst, next_hop="0.0.0.0", iface="", hop_count=0, seq=seq,
                             precursors={rev.next_hop})
                self.send_rerr([fake])
            return
        if not self.buffer.add(dst, pkt):
            log.debug("buffer full for %s: dropped", dst)
            return
        if (self.cfg.role == "mn" and self.cfg.handover.enabled and self.last_sink
                and (self.sink is None or self.attaching) and dst not in self.held):
            # claim 36: while the handover runs, wait for it instead of flooding RREQs
            self.held[dst] = self.now() + self.cfg.handover.old_sink_hold_ms / 1000
        if dst in self.held:
            return  # handover in progress: the binding will bring the route back
        self.discovery.start(dst)

    def apply_activity(self) -> None:
        """RFC 6.2: datagrams forwarded along a route keep it (and its next hop) alive."""
        mon = self.monitor
        now = self.now()
        recent = now - 2 * TICK_S - 0.1
        touched = set()
        for addr, t in list(mon.to_dst.items()):
            if t < recent:
                continue
            touched.add(addr)
        for addr, t in list(mon.from_src.items()):
            if t >= recent and not self.is_local(addr):
                touched.add(addr)
        for addr in touched:
            r = self.routes.lookup(addr)
            if r is None:
                continue
            self.routes.touch(r, now)
            if self.cfg.refresh_on_use:
                self.routes.extend(r, now + self.t.active_route_timeout)
                nh = self.routes.valid(r.next_hop)
                if nh is not None:
                    self.routes.extend(nh, now + self.t.active_route_timeout)
        mon.to_dst = {a: t for a, t in mon.to_dst.items() if t >= recent}
        mon.from_src = {a: t for a, t in mon.from_src.items() if t >= now - 10}

    # ------------------------------------------------------------------ housekeeping
    def interface_gone(self, n: str, why: str) -> None:
        """Link-layer detection: what used interface n is broken now (RFC 6.11)."""
        self.event("interface_down", iface=n, reason=why)
        if self.cfg.link_layer_detection:
            for nb in [x for x in self.neighbours.values() if x.iface == n]:
                self.link_break(nb.addr, f"interface {n} {why}")
            for r in self.routes.on_iface(n):
                self.invalidate(r, f"interface {n} {why}")

    def _on_link_events(self) -> None:
        """A carrier drop on one of our interfaces, however short, is a link break: the
        interface may come back on another segment (a radio handover) with other
        neighbours. Handle the drop at once, then poll: an interface up again is new and
        gets an immediate hello (so a new sink answers within milliseconds)."""
        events = self.link_events.read()
        if not events:
            return
        by_index = {idx: n for n, (idx, _a) in self.ifaces.items()}
        for idx, usable, changes in events:
            n = by_index.get(idx)
            if n is None or n not in self.ifaces:
                continue
            seen = self.carrier_seen.get(n)
            # a down-up folded into one "up" notification: the counter moved on
            flapped = usable and changes is not None and seen is not None and changes > seen
            if not usable or flapped:
                del self.ifaces[n]
                self.carrier_seen.pop(n, None)
                self.counters["carrier_losses"] += 1
                self.interface_gone(n, "lost carrier")
            elif changes is not None:
                self.carrier_seen[n] = changes
        self.poll_interfaces()

    def poll_interfaces(self, initial: bool = False) -> None:
        self._last_poll = self.now()
        cur = current_interfaces(self.kernel.ipr, self.cfg.interfaces, {self.cfg.tun_name})
        gone = [n for n in self.ifaces if n not in cur or cur[n][0] != self.ifaces[n][0]]
        added = [n for n in cur if n not in self.ifaces or cur[n][0] != self.ifaces[n][0]]
        self.ifaces = cur
        try:
            self.local_addrs = local_addresses(self.kernel.ipr) | {self.addr}
        except Exception:
            pass
        if self.monitor:
            self.monitor.local_addrs = self.local_addrs
        for n in gone:
            self.interface_gone(n, "gone")
        for n in added:
            cc = carrier_changes(n)
            if cc is not None:
                self.carrier_seen[n] = cc
            if not initial:
                self.event("interface_up", iface=n)
            if self.cfg.set_sysctls:
                set_sysctl(f"net/ipv4/conf/{n}/rp_filter", "0")
                set_sysctl(f"net/ipv4/conf/{n}/send_redirects", "0")
            if self.cfg.hello_enabled and self.sock:
                lifetime = self.t.hello_lifetime_ms()
                if self.send(hello(self.addr, self.seq, lifetime), BROADCAST, 1, n):
                    self.counters["hello_sent"] += 1

    def tick(self) -> None:
        now = self.now()
        names = socket.if_nameindex()  # cheap: spot a vanished/re-created link at once
        if names != self._names or now >= self.next_iface_poll:
            self._names = names
            self.poll_interfaces()
            pending = any(n not in self.ifaces and n not in ("lo", self.cfg.tun_name)
                          for _i, n in names)
            self.next_iface_poll = now + (0.1 if pending else 1.0)
        self.monitor.drain()
        self.apply_activity()
        if self.cfg.hello_enabled and now >= self.next_hello:
            self.next_hello = now + self.t.hello_interval
            self.send_hellos()
        # neighbour loss (RFC 6.11 via hellos)
        for nb in list(self.neighbours.values()):
            if now - nb.last_heard > nb.hello_lifetime_s:
                self.link_break(nb.addr, "hellos missed")
        # MN: the sink did not answer the probe: hand over to the candidate
        if self.probe is not None and now >= self.probe[2]:
            sink, cand, _d = self.probe
            self.probe = None
            if self.sink == sink and cand in self.neighbours:
                self.sink_lost_to(cand, "no RREP-ACK to probe")
                self.mn_consider_sink(cand)
        # MN: keep asking the sink we are attaching to
        if self.cfg.role == "mn" and self.cfg.handover.enabled and self.attaching \
                and now - self.attach_sent_at >= self.t.hello_interval \
                and self.attaching in self.neighbours:
            self.mn_consider_sink(self.attaching)
        # expired handover holds
        for dst, deadline in list(self.held.items()):
            if now >= deadline:
                self.held.pop(dst, None)
                r = self.routes.get(dst)
                self.event("handover_hold_expired", dst=dst)
                self.registered.pop(dst, None)
                if r is not None and r.precursors and not r.valid:
                    self.send_rerr([r])
                if dst in self.buffer.queues and self.routes.lookup(dst) is None:
                    self.discovery.start(dst)
        for mn, deadline in list(self.pending_bind.items()):
            if now >= deadline:
                r = self.registered.get(mn, {})
                self.handover_failed(mn, HandoverExt(kind=HandoverKind.LOCATE,
                                                     mn_seq=r.get("seq", 0),
                                                     addr=r.get("old_sink", "0.0.0.0")))
        # route expiry
        for r in self.routes.expire(now, self.t.delete_period):
            log.debug("route %s/%d via %s invalid (lifetime over)", r.dst, r.prefix_len,
                      r.next_hop)
        self.discovery.forget_seen(now)
        self.long_sessions.tick(now)
        if now >= self.next_status:
            self.next_status = now + self.cfg.status_interval_ms / 1000
            self.write_status()
