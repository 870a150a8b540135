"""Mobile node: movement detection, registration via an FA or a co-located CoA, return home.

The home address H lives on `lo` (/32) all the time, so sessions bound to it survive
every move; what changes is how the link is used:
- home: routes `home_prefix dev IF src H` and `default via home_gateway src H`, the MN
  answers ARP for H (arp_ignore 0); on arrival it deregisters (care-of = H, lifetime 0)
  and broadcasts a gratuitous ARP so hosts on the home link stop using the HA's proxy ARP.
- foreign agent care-of address: `default via FA onlink src H`; the FA delivers to our
  MAC and reverse-tunnels what we send (T bit, RFC 3024); arp_ignore 1 so that we never
  answer ARP for H on a foreign link (RFC 5944 4.6).
- co-located care-of address (claim 23: no FA heard, even after a solicitation, and the
  visited network gave us an address, e.g. by DHCP): we register directly with the HA
  (D bit) from that address and terminate the IP-IP tunnel ourselves with the same
  userspace endpoint as the HA (TUN `mipha`, `default dev mipha src H`). Claim 24's extra
  IPsec tunnel to the HA inside this tunnel is not done yet.

- home in an AODV domain (claim 14, `aodv_home`): while our AODV agent is attached to a
  home sink we are home, deregister once and leave every route to AODV; moves between
  the sinks are AODV's handover.

Movement detection (RFC 5944 2.4.2): agent advertisements heard on the link (FA with the
F bit, our HA with the H bit); a new agent is adopted when the current one has been
silent for `switch_after` seconds; when nothing is heard for `agent_timeout` we solicit,
and with a co-located care-of address on the link we register it at once (`solicit_wait`, default
0); an FA or our HA heard later still takes over (issue 14: no fixed waits).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

from testbed.mip import messages as m
from testbed.mip.config import MnAgentConfig
from testbed.mip.dhcp import DhcpClient, Lease
from testbed.aodv.leave import send_leave_notice
from testbed.mip.ha import CONTROL_MARK
from testbed.mip.sysctl import set_sysctl as write_proc_sys
from testbed.mip.linklayer import PacketSocket, ip_packet, parse_ipv4
from testbed.mip.linkwatch import LinkWatch
from testbed.mip.netlink import Netlink
from testbed.mip.security import ClockOffset
from testbed.tunnel.ipip import TUNNEL_MTU, IpipEndpoint
from testbed.common.tun import run_ip

log = logging.getLogger(__name__)

IP_PKTINFO = 8
TUN_IF = "mipha"
AODV = "aodv"   # Target.agent of "home" in the AODV home domain: the sinks route, not us


@dataclass(frozen=True)
class Target:
    """Where the MN wants to be registered: home, via an FA, or with a co-located CoA."""
    mode: str            # "home", "fa", "ccoa"
    coa: str             # care-of address (H for home)
    agent: str = ""      # FA address (fa), gateway (ccoa), home gateway (home)
    prefixlen: int = 32


@dataclass
class HeardAgent:
    adv: m.AgentAdvertisement
    mac: str
    heard_at: float


class MobileNode:
    def __init__(self, cfg: MnAgentConfig, switch_after: float = 1.2) -> None:
        self.cfg = cfg
        self.home = str(cfg.home_address)
        self.ha = str(cfg.home_agent)
        self.ifname = cfg.interface
        self.sa = cfg.security.sa()
        self.switch_after = switch_after
        self.clock_offset = ClockOffset()
        self.counters: Counter[str] = Counter()
        self.agents: dict[str, HeardAgent] = {}
        self.current: Target | None = None        # registered (or at home)
        self.attempt: Target | None = None         # registration in progress
        self.attempt_started = 0.0
        self.attempt_detected = 0.0
        self.pending_ids: set[int] = set()
        self.last_send = 0.0
        self.tries = 0
        self.granted = 0
        self.renew_at = float("inf")
        self.expires_at = float("inf")
        self.last_solicit = 0.0
        self.solicit_interval = max(cfg.agent_timeout, 1.0)
        self.lost_since: float | None = None
        self.endpoint: IpipEndpoint | None = None
        self.history: list[dict] = []
        self.link: PacketSocket | None = None
        self.watch: LinkWatch | None = None
        self.nl: Netlink | None = None
        self.ipsec = None
        self.dhcp: DhcpClient | None = None
        self.dhcp_addr: tuple[str, int] | None = None   # the CCoA we configured from a lease
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self._next_check = 0.0
        self._arp_ignore_value: str | None = None
        self._retire_tunnel = False   # the CCoA tunnel is unused: close it off the move's path
        self._ccoa_cache: tuple[float, tuple[str, int, str] | None] = (0.0, None)
        self._carrier_wall = 0.0     # wall clock of the last carrier change
        self._sink_cache: tuple[float, str | None] = (0.0, None)
        self._sink_mtime = 0.0
        #: wall-clock times (s) of the phases of the move in progress: carrier_down,
        #: carrier_up, solicit, advertisement, address, aodv_sink, request, reply, routes,
        #: leave, garp (first of each); kept with the registration that ends the move
        self.phases: dict[str, float] = {}

    # ---- setup ---------------------------------------------------------------------------
    def open(self) -> None:
        for key in ("all", "default", self.ifname):   # default: the TUN made for a CCoA too
            write_proc_sys(f"net.ipv4.conf.{key}.rp_filter", "0")
        plen = self.cfg.home_prefix.prefixlen
        run_ip(["addr", "del", f"{self.home}/{plen}", "dev", self.ifname], check=False)
        run_ip(["addr", "replace", f"{self.home}/32", "dev", "lo"])
        self.nl = Netlink()
        self.link = PacketSocket(self.ifname)
        self.link.only_icmp_type(9)   # agent advertisements only
        self.watch = LinkWatch(self.ifname)
        if self.cfg.ccoa_dhcp:
            self.dhcp = DhcpClient(self.ifname)
        if self.cfg.ipsec_to_ha is not None:
            from testbed.mip.ipsec import MnIpsec
            self.ipsec = MnIpsec(self.cfg.ipsec_to_ha.workdir, self.home, self.ha,
                                 str(self.cfg.home_prefix), self.sa.key,
                                 protect=self.cfg.ipsec_to_ha.protect)
            self.ipsec.start()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", m.MIP_PORT))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, CONTROL_MARK)  # never into IPsec
        log.info("MN %s (HA %s) on %s, MAC %s", self.home, self.ha, self.ifname, self.link.mac)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self.ipsec is not None:
            self.ipsec.stop()
        self._close_tunnel()
        for s in (self.link, self.sock, self.watch, self.dhcp, self.nl):
            if s is not None:
                s.close()

    # ---- main loop -----------------------------------------------------------------------
    def run(self) -> None:
        assert self.link and self.sock
        while not self._stop.is_set():
            # shortly after a carrier change, look at the AODV agent's status often: the
            # home sink it names ends the move home (claim 14)
            busy = self.cfg.aodv_home is not None and time.time() - self._carrier_wall < 3.0
            fds = [self.link, self.sock, self.watch] + ([self.dhcp] if self.dhcp else [])
            r, _, _ = select.select(fds, [], [], 0.005 if busy else 0.1)
            try:
                if self.watch in r:
                    self._on_carrier(self.watch.changes())
                    if self.watch.addresses_changed:   # a CCoA came or went: look again now
                        self.watch.addresses_changed = False
                        if "carrier_up" in self.phases:
                            self._phase("address")
                        self._ccoa_cache = (0.0, None)
                if self.link in r:
                    self._drain_link()
                if self.sock in r:
                    self._on_reply()
                if self.dhcp is not None and self.dhcp in r:
                    lease = self.dhcp.readable(time.monotonic())
                    if lease is not None:
                        self._on_lease(lease)
                self._tick(time.monotonic())
            except Exception:
                self.counters["internal_errors"] += 1
                log.exception("MN loop")

    def _phase(self, name: str) -> None:
        """Note the first time `name` happens in the move in progress (wall clock, s)."""
        self.phases.setdefault(name, time.time())

    def _on_carrier(self, changes: list[bool]) -> None:
        for up in changes:
            self.counters["carrier_up" if up else "carrier_down"] += 1
            if not up or "carrier_up" in self.phases:   # a new move (a folded down-up: its up)
                self.phases = {}
            self._phase("carrier_up" if up else "carrier_down")
            self._carrier_wall = time.time()   # an AODV status written before says nothing
            self._sink_cache = (0.0, None)
            self._sink_mtime = 0.0
            log.info("carrier %s on %s", "up" if up else "down", self.ifname)
            self._drop_lease()   # a leased CCoA belongs to the link we left
            if up and self.dhcp is not None:
                self.dhcp.start(time.monotonic())   # in parallel with the solicitation
            if up:
                # a new link may mean a new network: forget agents, solicit at once
                self.agents.clear()
                self.lost_since = time.monotonic()
                self.last_solicit = 0.0
                self.solicit_interval = max(self.cfg.agent_timeout, 1.0)
                self._ccoa_cache = (0.0, None)

    def _drain_link(self) -> None:
        assert self.link
        for _ in range(64):
            got = self.link.recv()
            if got is None:
                return
            pkt, mac = got
            ip = parse_ipv4(pkt)
            if ip is None or ip[0] != 1 or ip[4][:1] != b"\x09":
                continue
            adv = m.parse_advertisement(ip[4], ip[1])
            if adv is None:
                continue
            self.counters["advertisements_heard"] += 1
            if "carrier_up" in self.phases:
                self._phase("advertisement")
            now = time.monotonic()
            if adv.source not in self.agents:
                if len(self.agents) >= self.cfg.max_agents:
                    # issue 11 section 4: forget silent agents first, else ignore the new one
                    for s in [s for s, a in self.agents.items()
                              if now - a.heard_at > self.cfg.agent_timeout]:
                        del self.agents[s]
                    if len(self.agents) >= self.cfg.max_agents:
                        self.counters["advertisements_ignored_full"] += 1
                        continue
                log.debug("new agent %s (%s) flags %#x coas %s", adv.source, mac, adv.flags, adv.coas)
            self.agents[adv.source] = HeardAgent(adv, mac, now)

    def _is_my_ha(self, adv: m.AgentAdvertisement) -> bool:
        return adv.is_ha and ipaddress.IPv4Address(adv.source) in self.cfg.home_prefix

    def _fresh(self, now: float) -> list[HeardAgent]:
        return [a for a in self.agents.values() if now - a.heard_at <= self.cfg.agent_timeout]

    def _aodv_sink(self, now: float) -> str | None:
        """Claim 14: the home sink our AODV agent is attached to, if any.

        Only a status written after the last carrier change counts: one from before a move
        would still name the sink we just left.
        """
        ah = self.cfg.aodv_home
        if ah is None:
            return None
        try:
            mtime = os.stat(ah.status_file).st_mtime
        except OSError:
            mtime = 0.0
        if mtime == self._sink_mtime and now - self._sink_cache[0] < 0.5:
            return self._sink_cache[1]   # unchanged file: same answer (re-read now and then for max_age)
        self._sink_mtime = mtime
        sink = None
        try:
            with open(ah.status_file) as f:
                st = json.load(f)
            written = float(st.get("time") or 0)
            cand = (st.get("handover") or {}).get("sink")
            if (cand and written > self._carrier_wall and time.time() - written <= ah.max_age
                    and ipaddress.IPv4Address(cand) in ah.sinks):
                sink = cand
        except (OSError, ValueError, TypeError, AttributeError):
            pass
        if sink != self._sink_cache[1]:
            log.info("AODV home sink: %s", sink)
            if sink:
                self._phase("aodv_sink")   # AODV's routes now lead via this sink: free what waits for the old one
                self._flush_unresolved()
        self._sink_cache = (now, sink)
        return sink

    def _desired(self, now: float) -> Target | None:
        if self._aodv_sink(now):
            # at home in the AODV domain: the sinks route for us, moves between them are
            # AODV's (claim 14); Mobile IP only deregisters once
            return Target("home", self.home, AODV)
        fresh = self._fresh(now)
        cur = self.current or self.attempt
        # stay with the current agent while it is still heard recently
        if cur and cur.mode in ("home", "fa"):
            key = cur.agent if cur.mode == "fa" else None
            for a in fresh:
                same = (cur.mode == "fa" and a.adv.source == key) or (cur.mode == "home" and self._is_my_ha(a.adv))
                if same and now - a.heard_at <= self.switch_after:
                    return cur
        fresh.sort(key=lambda a: -a.heard_at)
        for a in fresh:
            if self._is_my_ha(a.adv):
                return Target("home", self.home, str(self.cfg.home_gateway))
            if a.adv.is_fa and a.adv.coas:
                return Target("fa", a.adv.coas[0], a.adv.source)
        if fresh:
            return cur
        # no agent heard: solicit, then a co-located care-of address
        if self.lost_since is None:
            self.lost_since = now
        if now - self.last_solicit > self.solicit_interval:
            self._solicit()
            self.last_solicit = now
            # RFC 5944 2.4.1: back off exponentially while nothing answers
            self.solicit_interval = min(self.solicit_interval * 2, 16.0)
        if cur and cur.mode == "ccoa" and self._ccoa(now) and self._ccoa(now)[0] == cur.coa:
            return cur
        if (self.cfg.use_ccoa and now - self.last_solicit >= self.cfg.solicit_wait
                and now - self.lost_since >= self.cfg.solicit_wait):
            c = self._ccoa(now)
            if c:
                return Target("ccoa", c[0], c[2], c[1])
        return cur

    def _tick(self, now: float) -> None:
        if self.dhcp is not None:
            self.dhcp.tick(now)
        want = self._desired(now)
        if want and self._fresh(now):
            self.lost_since = None
            self.solicit_interval = max(self.cfg.agent_timeout, 1.0)
        if want is not None and want != self.current and want != self.attempt:
            log.info("movement: %s -> %s", self.current, want)
            self.attempt_detected = now
            self._start_registration(want, now)
        elif self.attempt and now - self.last_send >= self.cfg.retransmit * min(2 ** max(self.tries - 1, 0), 8):
            self.counters["retransmissions"] += 1
            self._send_request(self.attempt, now)
        elif self.current and self.current.mode != "home" and not self.attempt and now >= self.renew_at:
            self.counters["re_registrations"] += 1
            self.attempt_detected = now
            self._start_registration(self.current, now)
        if self.current and self.current.mode != "home" and now >= self.expires_at and not self.attempt:
            log.info("registration expired")
            self.current = None
        if now >= self._next_check:
            self._next_check = now + 1.0
            if self.current and not self.attempt and not self._routes_intact(self.current):
                try:
                    self._apply_routes(self.current)   # links flap on moves: re-assert routes
                except OSError as exc:   # e.g. the CCoA was withdrawn: movement logic decides
                    log.debug("re-asserting %s routes: %s", self.current.mode, exc)

    # ---- co-located care-of address ----------------------------------------------------------
    def _ccoa(self, now: float) -> tuple[str, int, str] | None:
        """(address, prefixlen, gateway) of a non-home address on our interface, if any."""
        if now - self._ccoa_cache[0] < 1.0:   # address events reset the cache (LinkWatch)
            return self._ccoa_cache[1]
        assert self.nl
        found = None
        for addr, plen in self.nl.addresses(self.ifname):
            if addr and addr != self.home and ipaddress.IPv4Address(addr) not in self.cfg.home_prefix:
                found = (addr, plen, self._gateway_for(addr, plen))
                break
        self._ccoa_cache = (now, found)
        return found

    def _on_lease(self, lease: Lease) -> None:
        """DHCPACK: put the co-located care-of address on the link; the address event
        (LinkWatch) makes the movement logic look at it at once."""
        assert self.nl
        self._phase("dhcp_ack")
        if self.nl.addr_replace(lease.address, lease.prefixlen, self.ifname):
            self.dhcp_addr = (lease.address, lease.prefixlen)
            self._ccoa_cache = (0.0, None)
            log.info("DHCP lease %s/%d router %s from %s", lease.address, lease.prefixlen, lease.router, lease.server)

    def _drop_lease(self) -> None:
        if self.dhcp is not None:
            self.dhcp.stop()
        if self.dhcp_addr is not None and self.nl is not None:
            self.nl.addr_del(*self.dhcp_addr, self.ifname)
            self.dhcp_addr = None
            self._ccoa_cache = (0.0, None)

    def _gateway_for(self, addr: str, plen: int) -> str:
        if self.current and self.current.mode == "ccoa" and self.current.coa == addr:
            return self.current.agent
        lease = self.dhcp.lease if self.dhcp else None
        if lease and lease.address == addr and lease.router:
            return lease.router
        # the visited network's router (e.g. from DHCP); ours (FA) is off that subnet
        net = ipaddress.IPv4Network(f"{addr}/{plen}", strict=False)
        assert self.nl
        for dev, gw, _down in self.nl.defaults():
            if dev == self.ifname and gw and ipaddress.IPv4Address(gw) in net:
                return gw
        return str(next(net.hosts()))

    # ---- registration -------------------------------------------------------------------------
    def _solicit(self) -> None:
        assert self.link
        icmp = bytes(m.ICMPRouterSolicit())
        try:
            self.link.send_ip(ip_packet("0.0.0.0", "255.255.255.255", 1, icmp, ttl=1))
            self.counters["solicitations_sent"] += 1
            self._phase("solicit")
            log.debug("no agent heard: agent solicitation sent")
        except OSError as exc:
            log.debug("solicitation: %s", exc)

    def _start_registration(self, t: Target, now: float) -> None:
        self.attempt = t
        self.pending_ids.clear()
        self.tries = 0
        self._prepare_routes(t)
        self.attempt_started = time.monotonic()   # latency: first request sent -> reply
        self._send_request(t, self.attempt_started)
        self._retire_unused_tunnel()

    def _send_request(self, t: Target, now: float) -> None:
        assert self.sock
        home = t.mode == "home"
        flags = 0
        if not home:
            flags |= m.F_T if self.cfg.reverse_tunnel else 0
            flags |= m.F_D if t.mode == "ccoa" else 0
        ident = self.clock_offset.ident()
        self.pending_ids.add(ident & 0xFFFFFFFF)
        raw = m.build_request(flags=flags, lifetime=0 if home else self.cfg.lifetime, home=self.home,
                              ha=self.ha, coa=t.coa, ident=ident, spi=self.sa.spi, key=self.sa.key)
        dst = t.agent if t.mode == "fa" else self.ha
        src = t.coa if t.mode == "ccoa" else self.home
        pktinfo = struct.pack("@i4s4s", 0, socket.inet_aton(src), b"\0" * 4)
        try:
            self.sock.sendmsg([raw], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, (dst, m.MIP_PORT))
            self.counters["requests_sent"] += 1
            self._phase("request")
        except OSError as exc:
            self.counters["request_send_errors"] += 1
            log.debug("request to %s from %s: %s", dst, src, exc)
        self.tries += 1
        self.last_send = now
        log.debug("registration request #%d %s via %s (coa %s, flags %#x)", self.tries, t.mode, dst, t.coa, flags)

    def _on_reply(self) -> None:
        assert self.sock
        try:
            data, (src, _p) = self.sock.recvfrom(4096)
        except OSError:
            return
        now = time.monotonic()
        try:
            msg = m.parse_registration(data)
        except m.MalformedMessage as exc:
            self.counters["malformed_dropped"] += 1
            log.debug("malformed reply from %s: %s", src, exc)
            return
        if msg.msg_type != m.RRP_TYPE:
            return
        rep = msg.pkt
        code = int(rep.code)
        if str(rep.homeaddr) != self.home or self.attempt is None or (int(rep.id) & 0xFFFFFFFF) not in self.pending_ids:
            self.counters["replies_unmatched"] += 1
            return
        from_fa = 64 <= code < 128
        if not from_fa and not m.verify_auth(msg, self.sa.key):
            self.counters["replies_bad_auth"] += 1
            log.debug("reply from %s fails MN-HA authentication: ignored", src)
            return
        t = self.attempt
        if code == m.HA_ID_MISMATCH:
            self.clock_offset.learn(int(rep.id))
            self.counters["id_mismatch_resync"] += 1
            log.info("HA says identification mismatch: clock offset now %.1fs", self.clock_offset.offset)
            self._send_request(t, now)
            return
        if code not in (m.ACCEPTED, m.ACCEPTED_NO_SIMULTANEOUS):
            self.counters[f"denied_{m.code_name(code)}"] += 1
            log.info("registration %s via %s denied: %s", t.mode, src, m.code_name(code))
            self.pending_ids.clear()
            self.last_send = now  # retry after the back-off
            return
        latency = (now - self.attempt_started) * 1000
        handover = (now - self.attempt_detected) * 1000
        self.counters[f"accepted_{t.mode}"] += 1
        self.granted = int(rep.lifetime)
        self.renew_at = now + self.granted * self.cfg.renew_fraction if self.granted else float("inf")
        self.expires_at = now + self.granted if self.granted else float("inf")
        previous = self.current
        self.current = t
        self.attempt = None
        self.pending_ids.clear()
        self._phase("reply")
        self._apply_routes(t)
        self._phase("routes")
        if self._tell_aodv_left(previous, t):
            self._phase("leave")
        if t.mode == "home":
            assert self.link
            for _ in range(2):
                self.link.gratuitous_arp(self.home)
            self._phase("garp")
        if self.ipsec is not None:   # claim 24: IPsec to the HA only while on a CCoA
            if t.mode == "ccoa" and (previous != t or self.ipsec.state in ("down", "failed")):
                self.ipsec.up()
            elif t.mode != "ccoa":
                # after the new routes are in, so the IKE delete reaches the HA; until then
                # home-realm traffic still goes through ESP, which the HA still accepts
                self.ipsec.down()
        self.history.append({"time": time.time(), "mode": t.mode, "coa": t.coa, "agent": t.agent,
                             "lifetime": self.granted, "latency_ms": round(latency, 2),
                             "tries": self.tries, "renewal": previous == t,
                             "since_detection_ms": round(handover, 2),
                             "phases": {k: round(v, 4) for k, v in self.phases.items()} if previous != t else {}})
        self.phases = {}
        self.history = self.history[-50:]
        log.info("registered %s coa %s via %s: lifetime %ds, %.1f ms", t.mode, t.coa, src, self.granted, latency)
        self._retire_unused_tunnel()

    def _tell_aodv_left(self, previous: Target | None, t: Target) -> bool:
        """Registered away from the sinks (a new FA, CCoA or plain-home registration): tell our
        AODV agent, whose catch-alls would otherwise hold our traffic for their grace time
        (issue 14; testbed.aodv.leave). Returns whether a notice was sent."""
        ah = self.cfg.aodv_home
        if t.agent == AODV or previous == t or ah is None or not ah.leave_socket:
            return False
        sent = send_leave_notice(ah.leave_socket)
        self.counters["leave_notices_sent" if sent else "leave_notices_unheard"] += 1
        return sent

    # ---- routes and tunnel --------------------------------------------------------------------
    def _prepare_routes(self, t: Target) -> None:
        """Routes needed to send the request itself."""
        assert self.nl
        if t.mode == "fa":
            self.nl.route_replace(f"{t.agent}/32", self.ifname, src=self.home)
        elif t.mode == "ccoa":
            self.nl.route_replace(f"{self.ha}/32", self.ifname, via=t.agent, src=t.coa)
        else:
            self._apply_routes(t)

    def _apply_routes(self, t: Target) -> None:
        ifn = self.ifname
        nl = self.nl
        assert nl
        home_prefix = str(self.cfg.home_prefix)
        if t.mode == "home" and t.agent == AODV:
            # AODV's routes only: ours (home prefix on-link, default, HA via CoA) go
            self._retire_tunnel = True
            self._arp_ignore("0")
            nl.route_del(f"{self.ha}/32")
            nl.route_del(home_prefix, ifn)
            nl.flush_default()
        elif t.mode == "home":
            self._retire_tunnel = True
            self._arp_ignore("0")
            nl.route_del(f"{self.ha}/32")
            nl.route_replace(home_prefix, ifn, src=self.home)
            nl.route_replace("default", ifn, via=t.agent, src=self.home)
        elif t.mode == "fa":
            self._retire_tunnel = True
            self._arp_ignore("1")
            nl.route_del(home_prefix, ifn)
            nl.route_del(f"{self.ha}/32")
            nl.route_replace(f"{t.agent}/32", ifn, src=self.home)
            nl.route_replace("default", ifn, via=t.agent, onlink=True, src=self.home)
        else:
            self._arp_ignore("1")
            nl.route_del(home_prefix, ifn)
            nl.route_replace(f"{self.ha}/32", ifn, via=t.agent, src=t.coa)
            self._retire_tunnel = False
            if self.endpoint is None or self.endpoint.local != t.coa:
                self._close_tunnel()
                self.endpoint = IpipEndpoint(t.coa, mode=self.cfg.tunnel_mode, ifname_prefix="mip",
                                             on_new_peer=self._setup_peer)
                self.endpoint.add_peer("ha", self.ha, ifname=TUN_IF)
                self.endpoint.start()
            bpf = self.endpoint is not None and self.endpoint.mode == "bpf"
            nl.route_replace("default", TUN_IF, src=self.home, mtu=TUNNEL_MTU if bpf else None)
        self._flush_unresolved()   # after the new routes: nothing can queue on the old ones

    def _flush_unresolved(self) -> None:
        """Drop neighbour entries still being resolved on the link we moved to.

        Why: packets sent in the moment of the move still follow the old routes (the home
        prefix is on-link, the home gateway the next hop), so the kernel ARPs for h or the
        home gateway on the new link and parks those packets in the unresolved entry for
        its 3 s of retries. TCP will not retransmit a segment whose original copy is still
        queued in the host (skb_still_in_host_queue), so a session to h stalled 3 s at
        every move although the new path was up after ~100 ms. Flushing the incomplete
        entries frees those copies at once; resolved entries are left alone.
        """
        if self.nl is not None:   # None before open(): no link of ours to flush yet
            self.nl.flush_incomplete(self.ifname)

    def _routes_intact(self, t: Target) -> bool:
        """Is our default route still the one `t` needs? (one netlink dump instead of five changes)"""
        if t.agent == AODV:
            return True   # AODV's routes: nothing of ours to keep
        assert self.nl
        want_dev = TUN_IF if t.mode == "ccoa" else self.ifname
        want_gw = None if t.mode == "ccoa" else t.agent
        return any(dev == want_dev and gw == want_gw and not down for dev, gw, down in self.nl.defaults())

    def _arp_ignore(self, value: str) -> None:
        """Answer ARP for H only at home (RFC 5944 4.6); written only when it changes."""
        if self._arp_ignore_value != value:
            write_proc_sys(f"net.ipv4.conf.{self.ifname}.arp_ignore", value)
            self._arp_ignore_value = value

    def _setup_peer(self, peer) -> None:
        """The new tunnel device to the HA: up, MTU 1480 (20 bytes for the outer header);
        outside userspace mode, checksums completed before encapsulation, since the HA may
        decapsulate in userspace (Netlink.tx_checksum_off)."""
        assert self.nl
        bpf = self.endpoint is not None and self.endpoint.mode == "bpf"
        self.nl.link_up(peer.ifname, mtu=1500 if bpf else TUNNEL_MTU)   # bpf: see HomeAgent._tunnel_mtus
        if self.endpoint is not None and self.endpoint.mode != "userspace":
            self.nl.tx_checksum_off(peer.ifname)

    def _retire_unused_tunnel(self) -> None:
        """Close the CCoA tunnel that the routes no longer use.

        Why not in `_apply_routes` (issue 14): deleting the TUN device waits for RCU grace
        periods in the kernel (tens of ms on a busy machine); done after the registration
        request (and the reply's route changes), that wait is off the move's path.
        """
        if self._retire_tunnel:
            self._retire_tunnel = False
            self._close_tunnel()

    def _close_tunnel(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    # ---- status -------------------------------------------------------------------------------
    def status(self) -> dict:
        now = time.monotonic()
        cur = self.current
        return {"home_address": self.home, "home_agent": self.ha, "mac": self.link.mac if self.link else None,
                "mode": cur.mode if cur else "unregistered",
                "care_of_address": cur.coa if cur else None, "agent": cur.agent if cur else None,
                "registering": self.attempt.mode if self.attempt else None,
                "aodv_sink": self._sink_cache[1],
                "lifetime_granted": self.granted,
                "lifetime_remaining": round(self.expires_at - now, 1) if self.expires_at != float("inf") else None,
                "agents_heard": {s: {"flags": a.adv.flags, "coas": a.adv.coas, "age": round(now - a.heard_at, 1)}
                                 for s, a in self.agents.items()},
                "registrations": self.history[-10:],
                "counters": dict(self.counters),
                "tunnel": self.endpoint.status() if self.endpoint else None,
                "ipsec": self.ipsec.status() if self.ipsec else None,
                "dhcp": self.dhcp.status() if self.dhcp else None}
