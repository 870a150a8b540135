"""A DHCP client inside the mobile node for its co-located care-of address (claim 23).

Why in the agent (issue 14): the visited network hands out the CCoA by DHCP; a client
started as a process per move (busybox udhcpc) binds and closes AF_PACKET sockets for every
message, and each bind or close waits for an RCU grace period (measured here: ~16 ms each,
~100 ms per lease). This client keeps one packet socket bound for the agent's lifetime and
starts its exchange the moment the carrier comes back, in parallel with the agent
solicitation, so that a network without an FA costs one DHCP exchange and no more.

Protocol (RFC 2131 3.1, 4.4.1): DHCPDISCOVER -> DHCPOFFER -> DHCPREQUEST (option 50 the
offered address, option 54 the server) -> DHCPACK, all broadcast (flags B set: we have no
address to receive unicast on); DHCPNAK restarts. Retransmission after `retransmit_s`,
at most `tries` DISCOVERs per carrier-up. Messages are encoded and parsed with
testbed.access.dhcp (RFC 2132 options, strict lengths); malformed replies are counted.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass

from testbed.access.dhcp import (
    ACK, DISCOVER, NAK, OFFER, OPT_LEASE, OPT_MASK, OPT_MSG_TYPE, OPT_REQ_IP, OPT_ROUTER, OPT_SERVER_ID,
    REQUEST, DhcpError, build_message, parse_message,
)
from testbed.mip.linklayer import PacketSocket, parse_ipv4, udp_packet

CLIENT_PORT, SERVER_PORT = 68, 67
FLAG_BROADCAST = 0x8000
OPT_PARAMS = 55


@dataclass(frozen=True)
class Lease:
    """What a DHCPACK granted: `address`/`prefixlen`, `router` (None if option 3 is
    absent), `server` (option 54), `lease_s` (option 51, seconds; None = not given)."""
    address: str
    prefixlen: int
    router: str | None
    server: str
    lease_s: int | None


class DhcpClient:
    """One exchange at a time on `ifname`; the agent's loop selects on it (`fileno`).

    `start()` begins (or restarts) an exchange, `stop()` abandons it, `readable()` returns
    a Lease when the DHCPACK is in, `tick(now)` retransmits (now: monotonic seconds).
    Raises OSError from the constructor when the packet socket cannot be opened.
    """

    def __init__(self, ifname: str, retransmit_s: float = 1.0, tries: int = 3) -> None:
        self.ifname = ifname
        self.retransmit_s = retransmit_s
        self.tries = tries
        self.sock = PacketSocket(ifname)
        self.sock.only_udp_port(CLIENT_PORT)
        self._chaddr = bytes(int(x, 16) for x in self.sock.mac.split(":"))
        self.state = "idle"          # idle, selecting, requesting, bound
        self.xid = 0
        self.offer: tuple[str, str] | None = None   # (address, server) being requested
        self.sent = 0
        self.last_send = 0.0
        self.lease: Lease | None = None
        self.counters: Counter[str] = Counter()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def start(self, now: float) -> None:
        """A new link: forget the old lease, send DHCPDISCOVER."""
        self.lease, self.offer = None, None
        self.xid = struct.unpack("!I", os.urandom(4))[0]
        self.state, self.sent = "selecting", 0
        self._send(DISCOVER, now)

    def stop(self) -> None:
        """The link went away: abandon the exchange and the lease."""
        self.state, self.lease, self.offer = "idle", None, None

    def tick(self, now: float) -> None:
        if self.state in ("selecting", "requesting") and now - self.last_send >= self.retransmit_s:
            if self.sent >= self.tries:
                self.counters["gave_up"] += 1
                self.state = "idle"
                return
            self.counters["retransmissions"] += 1
            self._send(DISCOVER if self.state == "selecting" else REQUEST, now)

    def readable(self, now: float) -> Lease | None:
        """Drain the socket; a Lease once our DHCPACK arrived, else None."""
        got = None
        for _ in range(32):
            r = self.sock.recv()
            if r is None:
                break
            ip = parse_ipv4(r[0])
            if ip is None or ip[0] != 17 or len(ip[4]) < 8:
                continue
            sport, dport = struct.unpack_from("!HH", ip[4])
            if sport != SERVER_PORT or dport != CLIENT_PORT:
                continue
            try:
                msg = parse_message(ip[4][8:])
            except DhcpError:
                self.counters["malformed_dropped"] += 1
                continue
            if msg.op != 2 or msg.xid != self.xid or msg.chaddr[:6] != self._chaddr:
                continue   # another client's exchange on a shared link
            got = self._on_reply(msg, now) or got
        return got

    def _on_reply(self, msg, now: float) -> Lease | None:
        server = msg.options.get(OPT_SERVER_ID, b"")
        if len(server) != 4:
            self.counters["no_server_id"] += 1
            return None
        server_ip = socket.inet_ntoa(server)
        if msg.msg_type == OFFER and self.state == "selecting":
            self.counters["offers"] += 1
            self.offer = (msg.yiaddr, server_ip)
            self.state, self.sent = "requesting", 0
            self._send(REQUEST, now)
        elif msg.msg_type == ACK and self.state == "requesting" and self.offer and msg.yiaddr == self.offer[0]:
            mask = msg.options.get(OPT_MASK, b"")
            router = msg.options.get(OPT_ROUTER, b"")
            lease = msg.options.get(OPT_LEASE, b"")
            try:
                plen = ipaddress.IPv4Network(f"0.0.0.0/{socket.inet_ntoa(mask)}").prefixlen if len(mask) == 4 else 32
            except ValueError:
                self.counters["bad_mask"] += 1
                return None
            self.lease = Lease(msg.yiaddr, plen, socket.inet_ntoa(router[:4]) if len(router) >= 4 else None,
                               server_ip, struct.unpack("!I", lease)[0] if len(lease) == 4 else None)
            self.state = "bound"
            self.counters["acks"] += 1
            return self.lease
        elif msg.msg_type == NAK and self.state == "requesting":
            self.counters["naks"] += 1
            self.start(now)
        return None

    def _send(self, kind: int, now: float) -> None:
        opts = [(OPT_MSG_TYPE, bytes([kind])), (OPT_PARAMS, bytes([OPT_MASK, OPT_ROUTER, OPT_LEASE]))]
        if kind == REQUEST and self.offer:
            opts += [(OPT_REQ_IP, socket.inet_aton(self.offer[0])), (OPT_SERVER_ID, socket.inet_aton(self.offer[1]))]
        raw = build_message(1, self.xid, FLAG_BROADCAST, "0.0.0.0", "0.0.0.0", self._chaddr, opts)
        try:
            self.sock.send_ip(udp_packet("0.0.0.0", "255.255.255.255", CLIENT_PORT, SERVER_PORT, raw, ttl=64))
            self.counters["discovers" if kind == DISCOVER else "requests"] += 1
        except OSError:
            self.counters["send_errors"] += 1
        self.sent += 1
        self.last_send = now

    def status(self) -> dict:
        return {"state": self.state, "lease": self.lease.__dict__ if self.lease else None,
                "counters": dict(self.counters)}
