"""Foreign agent: advertisements, relaying registrations, delivery to visitors, reverse tunnels.

Why its own small data plane instead of testbed/tunnel's IpipEndpoint: the endpoint
delivers a decapsulated packet into the kernel by its destination address, and this FA
is shared by home agents whose realms overlap (claim 18) - two visitors on the same link
can have the same home address. So the FA decides in userspace, per packet:
- from home agent HA (IP-IP, outer source HA): inner destination H -> visitor (HA, H) ->
  Ethernet frame to that visitor's MAC on the interface it registered from;
- from a visitor (frame from MAC M on the visited link, IP source H): visitor found by
  (interface, M, H) -> IP-IP to *its* home agent (RFC 3024 reverse tunnel).
The kernel does not forward for the visited link (forwarding off on it), so a private
home address never leaks onto the Internet, and it never ARPs for a home address.

Registration relaying (RFC 5944 3.7): requests come in as frames (the source MAC is part
of the visitor's identity), are checked (lifetime, care-of address, T bit), and relayed
unchanged from our UDP 434 socket to the HA; the reply is matched to the pending request
by (HA, home address, low 32 bits of the identification) and relayed to the visitor's MAC.
"""
from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections import Counter

from testbed.mip import messages as m
from testbed.mip.bindings import Pending, VisitorList
from testbed.mip.config import FaAgentConfig
from testbed.mip.sysctl import set_sysctl as write_proc_sys
from testbed.mip.linklayer import PacketSocket, ip_packet, parse_ipv4, udp_packet
from testbed.tunnel.ipip import TUNNEL_MTU

log = logging.getLogger(__name__)

BROADCASTS = {"255.255.255.255", "224.0.0.11", "224.0.0.1", "224.0.0.2"}


class ForeignAgent:
    def __init__(self, cfg: FaAgentConfig) -> None:
        self.cfg = cfg
        self.address = str(cfg.address)
        self.visitors = VisitorList()
        self.counters: Counter[str] = Counter()
        self.adv_seq = 0
        self._stop = threading.Event()
        self.link: PacketSocket | None = None
        self.udp: socket.socket | None = None
        self.raw: socket.socket | None = None
        self.relay_ms: list[float] = []

    def open(self) -> None:
        ifname = self.cfg.interface
        write_proc_sys(f"net.ipv4.conf.{ifname}.forwarding", "0")
        write_proc_sys(f"net.ipv4.conf.{ifname}.rp_filter", "0")
        write_proc_sys("net.ipv4.conf.all.rp_filter", "0")
        self.link = PacketSocket(ifname)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.udp.bind(("0.0.0.0", m.MIP_PORT))
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
        self.raw.bind((self.address, 0))
        self.raw.setblocking(False)
        log.info("FA %s on %s (MAC %s)", self.address, ifname, self.link.mac)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for s in (self.link, self.udp, self.raw):
            if s is not None:
                s.close()

    def run(self) -> None:
        assert self.link and self.udp and self.raw
        next_adv = 0.0
        next_expire = time.monotonic() + 1.0
        fds = [self.link, self.udp, self.raw]
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_adv:
                self.advertise()
                next_adv = now + self.cfg.adv_interval
            if now >= next_expire:
                for v in self.visitors.expire():
                    self.counters["visitors_expired"] += 1
                    log.info("visitor %s of HA %s expired", v.home, v.ha)
                for p in self.visitors.expire_pending(self.cfg.pending_timeout):
                    self.counters["relay_timeouts"] += 1
                    log.info("no reply from HA %s for %s: registration timeout (78)", p.ha, p.home)
                    # RFC 5944 3.7.3.1: tell the MN rather than leave it guessing
                    reply = m.build_reply(code=m.FA_REGISTRATION_TIMEOUT, lifetime=0, home=p.home,
                                          ha=p.ha, ident=p.ident, spi=None, key=None)
                    try:
                        self._to_visitor(reply, p.home, p.src_port, p.mac)
                    except OSError as exc:
                        log.debug("timeout reply to %s: %s", p.mac, exc)
                next_expire = now + 1.0
            r, _, _ = select.select(fds, [], [], min(0.2, max(0.0, next_adv - now)))
            for s in r:
                try:
                    if s is self.link:
                        self._drain_link()
                    elif s is self.udp:
                        self._on_udp()
                    else:
                        self._drain_tunnel()
                except Exception:
                    self.counters["internal_errors"] += 1
                    log.exception("FA packet handling")

    # ---- advertisements ----------------------------------------------------------------
    def advertise(self) -> None:
        assert self.link
        self.adv_seq = (self.adv_seq + 1) & 0xFFFF or 256
        flags = m.A_R | m.A_F | m.A_T  # registration required, FA, reverse tunnelling
        icmp = m.build_advertisement(router=self.address, seq=self.adv_seq,
                                     reg_lifetime=self.cfg.max_lifetime, flags=flags,
                                     coas=[self.address], adv_lifetime=self.cfg.adv_lifetime,
                                     prefix_len=self.cfg.prefix_len)
        try:
            self.link.send_ip(ip_packet(self.address, "255.255.255.255", 1, icmp, ttl=1))
            self.counters["advertisements_sent"] += 1
        except OSError as exc:
            log.debug("advertisement: %s", exc)

    # ---- the visited link -------------------------------------------------------------------
    def _drain_link(self) -> None:
        assert self.link
        for _ in range(64):
            got = self.link.recv()
            if got is None:
                return
            pkt, mac = got
            ip = parse_ipv4(pkt)
            if ip is None:
                continue
            proto, src, dst, _ttl, payload = ip
            if proto == 1 and payload[:1] == b"\x0a":
                self.counters["solicitations"] += 1
                log.debug("agent solicitation from %s (%s)", src, mac)
                self.advertise()
                continue
            if proto == 17 and len(payload) >= 8 and (dst == self.address or dst in BROADCASTS):
                sport, dport = struct.unpack_from("!HH", payload)
                if dport == m.MIP_PORT:
                    self._on_request(payload[8:], src, sport, mac)
                    continue
            if dst == self.address:
                continue  # for the FA itself (ARP'd, pinged): the kernel answers
            v = self.visitors.by_link(self.cfg.interface, mac, src)
            if v is None:
                continue  # not a registered visitor: the kernel does not forward it either
            if not v.reverse_tunnel:
                self.counters["no_reverse_tunnel_dropped"] += 1
                continue
            try:
                assert self.raw
                for part in self._fit_tunnel(pkt[:struct.unpack_from("!H", pkt, 2)[0]]):
                    self.raw.sendto(part, (v.ha, 0))
                v.packets_reverse_tunnelled += 1
                self.counters["reverse_tunnelled"] += 1
            except OSError as exc:
                self.counters["reverse_send_errors"] += 1
                log.debug("reverse tunnel to %s: %s", v.ha, exc)

    def _fit_tunnel(self, inner: bytes) -> list[bytes]:
        """The visitor's packet as it enters the reverse tunnel: itself if it fits the tunnel
        MTU, else its fragments (inner DF clear; RFC 4459 3: fragment before encapsulation,
        so that no outer packet is fragmented and the HA needs no reassembly - a tc-BPF
        decapsulator sees outer fragments before the kernel reassembles them and cannot take
        them). With DF set the kernel's outer DF applies as before."""
        if len(inner) <= TUNNEL_MTU or inner[6] & 0x40:
            return [inner]
        from scapy.layers.inet import IP, fragment
        self.counters["reverse_fragmented"] += 1
        ihl = (inner[0] & 0x0F) * 4
        return [bytes(f) for f in fragment(IP(inner), fragsize=(TUNNEL_MTU - ihl) & ~7)]

    def _deny(self, raw_req: bytes, code: int, src: str, sport: int, mac: str, why: str) -> None:
        req = m.MobileIPRRQ(raw_req[1:24])
        self.counters["requests_denied"] += 1
        self.counters[f"denied_{m.code_name(code)}"] += 1
        log.debug("deny request from %s (%s): %s - %s", req.homeaddr, mac, m.code_name(code), why)
        reply = m.build_reply(code=code, lifetime=0, home=req.homeaddr, ha=req.haaddr, ident=req.id,
                              spi=None, key=None)
        self._to_visitor(reply, str(req.homeaddr), sport, mac)

    def _to_visitor(self, data: bytes, home: str, port: int, mac: str) -> None:
        assert self.link
        self.link.send_ip(udp_packet(self.address, home, m.MIP_PORT, port, data), mac)

    def _on_request(self, data: bytes, src: str, sport: int, mac: str) -> None:
        try:
            msg = m.parse_registration(data)
        except m.MalformedMessage as exc:
            self.counters["malformed_dropped"] += 1
            log.debug("malformed request from %s (%s) dropped: %s", src, mac, exc)
            return
        if msg.msg_type != m.RRQ_TYPE:
            self.counters["unexpected_dropped"] += 1
            return
        req = msg.pkt
        self.counters["requests"] += 1
        home, ha, coa = str(req.homeaddr), str(req.haaddr), str(req.coaddr)
        flags, lifetime = int(req.flags), int(req.lifetime)
        if flags & m.F_D:
            # co-located CoA: the MN registers directly with its HA; we are not in the path
            self.counters["ccoa_requests_ignored"] += 1
            return
        if coa != self.address:
            return self._deny(data, m.FA_INVALID_COA, src, sport, mac, f"care-of {coa} is not ours")
        if lifetime > self.cfg.max_lifetime:
            return self._deny(data, m.FA_LIFETIME_TOO_LONG, src, sport, mac,
                              f"lifetime {lifetime} > {self.cfg.max_lifetime}")
        if self.cfg.reverse_tunnel == "mandatory" and not flags & m.F_T and lifetime:
            return self._deny(data, m.FA_REVERSE_TUNNEL_MANDATORY, src, sport, mac, "T bit not set")
        if flags & (m.F_M | m.F_G):
            return self._deny(data, m.FA_ENCAP_UNAVAILABLE, src, sport, mac, "only IP-in-IP")
        if self.cfg.home_agents and req.haaddr not in {str(a) for a in self.cfg.home_agents}:
            return self._deny(data, m.FA_PROHIBITED, src, sport, mac, f"HA {ha} not served")
        if (ha, home, int(req.id) & 0xFFFFFFFF) not in self.visitors.pending and \
                len(self.visitors.pending) >= self.cfg.max_pending:
            return self._deny(data, m.FA_INSUFFICIENT_RESOURCES, src, sport, mac,
                              f"{len(self.visitors.pending)} requests pending")
        p = Pending(home=home, ha=ha, ifname=self.cfg.interface, mac=mac, src_port=sport,
                    ident=int(req.id), lifetime=lifetime, flags=flags, sent_at=self.visitors.clock())
        self.visitors.add_pending(p)
        assert self.udp
        try:
            self.udp.sendto(data, (ha, m.MIP_PORT))
            self.counters["requests_relayed"] += 1
            log.debug("relay request %s (HA %s, %s) lifetime %d", home, ha, mac, lifetime)
        except OSError as exc:
            self.counters["relay_send_errors"] += 1
            log.debug("relay to HA %s: %s", ha, exc)

    def _on_udp(self) -> None:
        assert self.udp
        try:
            data, (src, _sport) = self.udp.recvfrom(4096)
        except OSError:
            return
        if data[:1] == bytes([m.RRQ_TYPE]):
            return  # a visitor's request seen by the kernel too: handled from the link
        try:
            msg = m.parse_registration(data)
        except m.MalformedMessage as exc:
            self.counters["malformed_dropped"] += 1
            log.debug("malformed reply from %s dropped: %s", src, exc)
            return
        rep = msg.pkt
        home, ha = str(rep.homeaddr), str(rep.haaddr)
        if src != ha:
            self.counters["reply_wrong_source_dropped"] += 1
            return
        p = self.visitors.take_pending(ha, home, int(rep.id))
        if p is None:
            self.counters["reply_unmatched_dropped"] += 1
            log.debug("reply for %s from %s matches no pending request", home, ha)
            return
        code = int(rep.code)
        self.counters["replies_relayed"] += 1
        self.relay_ms.append((self.visitors.clock() - p.sent_at) * 1000)
        self.relay_ms = self.relay_ms[-50:]
        if code in (m.ACCEPTED, m.ACCEPTED_NO_SIMULTANEOUS):
            v = self.visitors.accept(p, int(rep.lifetime), bool(p.flags & m.F_T))
            self.counters["registrations_accepted"] += 1
            log.info("visitor %s of HA %s at %s (%s): %s", home, ha, p.mac, p.ifname,
                     f"lifetime {rep.lifetime}" if v else "deregistered")
        else:
            self.counters["registrations_denied_by_ha"] += 1
            log.info("HA %s denied %s: %s", ha, home, m.code_name(code))
        self._to_visitor(data, home, p.src_port, p.mac)

    # ---- from home agents ---------------------------------------------------------------
    def _drain_tunnel(self) -> None:
        assert self.raw and self.link
        for _ in range(64):
            try:
                outer = self.raw.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            o = parse_ipv4(outer)
            if o is None or o[0] != 4:
                self.counters["tunnel_malformed_dropped"] += 1
                continue
            inner = o[4]
            i = parse_ipv4(inner)
            if i is None:
                self.counters["tunnel_malformed_dropped"] += 1
                continue
            ha, home = o[1], i[2]
            v = self.visitors.get(ha, home)
            if v is None:
                self.counters["tunnel_no_visitor_dropped"] += 1
                log.debug("IP-IP from %s for %s: no such visitor", ha, home)
                continue
            total = struct.unpack_from("!H", inner, 2)[0]
            try:
                self.link.send_ip(inner[:total], v.mac)
                v.packets_delivered += 1
                self.counters["delivered_to_visitors"] += 1
            except OSError as exc:
                self.counters["delivery_errors"] += 1
                log.debug("deliver to %s: %s", v.mac, exc)

    def status(self) -> dict:
        return {"address": self.address, "interface": self.cfg.interface,
                "visitors": self.visitors.status(),
                "pending": len(self.visitors.pending), "counters": dict(self.counters),
                "relay_ms_last": self.relay_ms[-1] if self.relay_ms else None}
