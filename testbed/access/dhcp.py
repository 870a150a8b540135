"""DHCP request as the node's hello to its sink (claims 57-60).

Why DHCP: a node in proxy mode runs no routing protocol at all (the sink acts for it,
claim 57); an unmodified DHCP client (Debian's busybox udhcpc) is its whole attach.

What the node's DHCPDISCOVER/DHCPREQUEST carries (claim 59):
- option 50 (Requested IP Address): its home address, which it keeps;
- option 61 (Client Identifier): type 0 + its FQDN (RFC 2132 9.14: type 0 = not a
  hardware address), the identity the MSM knows;
- option 43 (Vendor-Specific Information), sub-options (RFC 2132 8.4 encapsulation):
  1 = timestamp (8 bytes, ms since the epoch), 2 = nonce (8 bytes),
  3 = HMAC-SHA256(secret, auth_data) (32 bytes).
  auth_data = b"tb-dhcp-hello\\0" + FQDN + 0 + address (4) + timestamp + nonce.
The sink maps it to an AA-Request (claim 60: User-Name = FQDN, User-Password = HMAC,
TB-Authenticated-Data = auth_data, Framed-IP-Address = option 50) and answers with
DHCPOFFER/DHCPACK: yiaddr = the home address, mask 255.255.255.255 (the node reaches
everything through the sink), option 121 classless static routes (RFC 3442): the sink
on-link, then the MSM's routes via the sink (home range cheaper: listed, metric lost in
DHCP, so the default route is just the /0 entry), option 3 router = the sink when that
/0 entry is there (RFC 3442 "DHCP Server Administrator Responsibilities": clients without
option 121 still get their default route; clients with it MUST ignore option 3), option
54 server id, 51 lease.
Refused: DHCPNAK. The same options ride in DISCOVER and REQUEST of one exchange (same
xid and nonce), so one MSM decision serves both; a renewing REQUEST (new xid, the same
accepted credentials, same address) within the lease is ACKed from that decision.

`udhcpc_args()` gives the client's command line (`-x 0x3d:..`, `-x 0x2b:..`, `-r`).
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import collections
import struct
import time
from dataclasses import dataclass, field

from . import credentials as cr

log = logging.getLogger("access.dhcp")

MAGIC = b"\x63\x82\x53\x63"
OPT_PAD, OPT_END = 0, 255
OPT_MASK, OPT_ROUTER, OPT_REQ_IP, OPT_LEASE, OPT_MSG_TYPE, OPT_SERVER_ID = 1, 3, 50, 51, 53, 54
OPT_VENDOR, OPT_CLIENT_ID, OPT_CLASSLESS = 43, 61, 121
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
SUB_TS, SUB_NONCE, SUB_MAC = 1, 2, 3
AUTH_PREFIX = b"tb-dhcp-hello\0"


class DhcpError(ValueError):
    pass


@dataclass
class DhcpMessage:
    op: int
    xid: int
    flags: int
    ciaddr: str
    yiaddr: str
    chaddr: bytes  # 16 bytes as on the wire
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def msg_type(self) -> int | None:
        v = self.options.get(OPT_MSG_TYPE)
        return v[0] if v and len(v) == 1 else None


def parse_options(data: bytes) -> dict[int, bytes]:
    """RFC 2132 options; repeated options are concatenated (RFC 3396). Strict lengths."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            return out
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(data):
            raise DhcpError(f"option {code}: truncated length")
        ln = data[i + 1]
        if i + 2 + ln > len(data):
            raise DhcpError(f"option {code}: length {ln} beyond the packet")
        out[code] = out.get(code, b"") + data[i + 2:i + 2 + ln]
        i += 2 + ln
    raise DhcpError("options not terminated by END")


def build_options(opts: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for code, val in opts:
        for k in range(0, max(1, len(val)), 255):  # RFC 3396 split of long options
            part = val[k:k + 255]
            out += bytes([code, len(part)]) + part
    return bytes(out + bytes([OPT_END]))


def parse_message(data: bytes) -> DhcpMessage:
    if len(data) < 240:
        raise DhcpError(f"{len(data)} bytes: shorter than a BOOTP header")
    if data[236:240] != MAGIC:
        raise DhcpError("no DHCP magic cookie")
    op, htype, hlen = data[0], data[1], data[2]
    if op not in (1, 2) or hlen > 16:
        raise DhcpError(f"op {op} hlen {hlen}")
    xid, _secs, flags = struct.unpack("!IHH", data[4:12])
    msg = DhcpMessage(op, xid, flags, socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]),
                      data[28:44], parse_options(data[240:]))
    if msg.msg_type is None:
        raise DhcpError("no (or bad) option 53")
    return msg


def build_message(op: int, xid: int, flags: int, yiaddr: str, siaddr: str, chaddr: bytes,
                  opts: list[tuple[int, bytes]], ciaddr: str = "0.0.0.0") -> bytes:
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s", op, 1, 6, 0, xid, 0, flags,
                      socket.inet_aton(ciaddr), socket.inet_aton(yiaddr),
                      socket.inet_aton(siaddr), b"\0" * 4, chaddr[:16].ljust(16, b"\0"))
    return hdr + b"\0" * 192 + MAGIC + build_options(opts)


# ---------------------------------------------------------------- the hello's credentials
def sub_options(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code in (0, 255):
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            raise DhcpError(f"option 43 sub-option {code}: truncated")
        out[code] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return out


def auth_data(fqdn: str, address: str, ts: bytes, nonce: bytes) -> bytes:
    return AUTH_PREFIX + fqdn.encode() + b"\0" + socket.inet_aton(address) + ts + nonce


def hello_options(fqdn: str, address: str, secret: str, ts_ms: int | None = None,
                  nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """(option 61 value, option 43 value) for a node's DHCP hello."""
    ts = struct.pack("!Q", cr.now_ms() if ts_ms is None else ts_ms)
    nonce = nonce or cr.new_nonce()
    mac = cr.hmac_sha256(secret, auth_data(fqdn, address, ts, nonce))
    vendor = bytes([SUB_TS, 8]) + ts + bytes([SUB_NONCE, 8]) + nonce + bytes([SUB_MAC, 32]) + mac
    return b"\0" + fqdn.encode(), vendor


def udhcpc_args(fqdn: str, address: str, secret: str, iface: str, script: str) -> list[str]:
    cid, vendor = hello_options(fqdn, address, secret)
    return ["udhcpc", "-i", iface, "-f", "-q", "-n", "-t", "5", "-T", "1", "-A", "1",
            "-r", address, "-x", f"0x3d:{cid.hex()}", "-x", f"0x2b:{vendor.hex()}",
            "-O", "121", "-s", script]


@dataclass
class DhcpHello:
    fqdn: str
    address: str
    ts_ms: int
    nonce: bytes
    mac: bytes
    auth_data: bytes


def hello_of(msg: DhcpMessage) -> DhcpHello:
    """The credentials of a DHCP hello (claim 59); DhcpError if incomplete."""
    cid = msg.options.get(OPT_CLIENT_ID)
    if not cid or cid[0] != 0 or len(cid) < 2:
        raise DhcpError("option 61 must be type 0 + FQDN")
    req = msg.options.get(OPT_REQ_IP) or (socket.inet_aton(msg.ciaddr)
                                          if msg.ciaddr != "0.0.0.0" else None)
    if not req or len(req) != 4:
        raise DhcpError("option 50 (the node's address) missing")
    sub = sub_options(msg.options.get(OPT_VENDOR, b""))
    ts, nonce, mac = sub.get(SUB_TS), sub.get(SUB_NONCE), sub.get(SUB_MAC)
    if not ts or len(ts) != 8 or not nonce or len(nonce) != 8 or not mac or len(mac) != 32:
        raise DhcpError("option 43 needs timestamp, nonce and HMAC sub-options")
    fqdn = cid[1:].decode(errors="replace")
    address = socket.inet_ntoa(req)
    return DhcpHello(fqdn, address, struct.unpack("!Q", ts)[0], nonce, mac,
                     auth_data(fqdn, address, ts, nonce))


def classless_routes(routes: list[tuple[str, str]]) -> bytes:
    """RFC 3442 option 121: (prefix, router) pairs; router 0.0.0.0 = on-link."""
    out = bytearray()
    for prefix, router in routes:
        net = ipaddress.ip_network(prefix, strict=False)
        n = (net.prefixlen + 7) // 8
        out += bytes([net.prefixlen]) + net.network_address.packed[:n] + socket.inet_aton(router)
    return bytes(out)


def parse_classless(data: bytes) -> list[tuple[str, str]]:
    out, i = [], 0
    while i < len(data):
        plen = data[i]
        if plen > 32:
            raise DhcpError(f"option 121: prefix length {plen}")
        n = (plen + 7) // 8
        if i + 1 + n + 4 > len(data):
            raise DhcpError("option 121: truncated")
        net = data[i + 1:i + 1 + n].ljust(4, b"\0")
        out.append((f"{socket.inet_ntoa(net)}/{plen}", socket.inet_ntoa(data[i + 1 + n:i + 5 + n])))
        i += 5 + n
    return out


# ---------------------------------------------------------------- server
@dataclass
class Decision:
    ok: bool
    routes: list[tuple[str, str, int]]
    reason: str | None
    at: float


class DhcpHelloServer:
    """The sink's DHCP side: one MSM decision per (xid, nonce), answers OFFER/ACK/NAK.

    `authenticate(hello, done)` starts the DIAMETER request and calls
    `done(ok, routes, reason)` later (from the caller's loop); `on_attached(hello, routes)`
    lets the owner install the host route and filters and proxy for the node.

    What anyone on the link can make it keep is bounded (issue 11 section 4): decisions
    (refused ones included) live `decision_ttl_s` (one exchange: DISCOVER, REQUEST and the
    client's retransmissions) and at most `max_decisions` of them (oldest forgotten); at
    most `max_pending` wait for the MSM at once (more: dropped and counted as busy, the
    client retransmits); expired leases are forgotten. The replay guard has its own bound.
    """

    def __init__(self, sink_address: str, authenticate, on_attached=None,
                 lease_s: int = 600, replay: cr.ReplayGuard | None = None,
                 decision_ttl_s: float = 60.0, max_decisions: int = 4096,
                 max_pending: int = 64) -> None:
        self.addr = sink_address
        self.authenticate = authenticate
        self.on_attached = on_attached
        self.lease_s = lease_s
        self.replay = replay or cr.ReplayGuard()
        self.decision_ttl_s = decision_ttl_s
        self.max_decisions = max_decisions
        self.max_pending = max_pending
        #: (xid, nonce) -> decision (None while the MSM decides), oldest first
        self.decisions: collections.OrderedDict[tuple[int, bytes], Decision | None] = \
            collections.OrderedDict()
        self.counters: dict[str, int] = {}
        self.attach_ms: collections.deque[float] = collections.deque(maxlen=1000)
        #: (xid, nonce) -> when its first message came, in the same order as decisions
        self.first_seen: collections.OrderedDict[tuple[int, bytes], float] = \
            collections.OrderedDict()
        #: keys of the exchanges waiting for the MSM's answer
        self.waiting: set[tuple[int, bytes]] = set()
        self._next_sweep = 0.0
        #: (fqdn, nonce) of accepted hellos -> (address, routes, lease end): renewals
        self.leases: dict[tuple[str, bytes], tuple[str, list, float]] = {}

    def count(self, k: str) -> None:
        self.counters[k] = self.counters.get(k, 0) + 1


    def _forget_old(self, now: float) -> None:
        """Drop decisions older than decision_ttl_s or beyond max_decisions (oldest first),
        and, once a second, leases that have run out."""
        while self.first_seen:
            key, t = next(iter(self.first_seen.items()))
            if now - t < self.decision_ttl_s and len(self.first_seen) <= self.max_decisions:
                break
            self.first_seen.popitem(last=False)
            self.decisions.pop(key, None)
            self.waiting.discard(key)
            self.count("decisions_forgotten")
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            for k in [k for k, v in self.leases.items() if v[2] <= now]:
                del self.leases[k]

    def handle(self, data: bytes, reply) -> None:
        """One datagram from port 68; `reply(bytes)` sends an answer (broadcast)."""
        try:
            msg = parse_message(data)
        except DhcpError as exc:
            self.count("malformed")
            log.debug("malformed DHCP: %s", exc)
            return
        if msg.op != 1 or msg.msg_type not in (DISCOVER, REQUEST):
            self.count(f"ignored_type_{msg.msg_type}")
            return
        self.count("discover" if msg.msg_type == DISCOVER else "request")
        try:
            h = hello_of(msg)
        except DhcpError as exc:
            self.count("refused_no_credentials")
            log.warning("DHCP hello without credentials: %s", exc)
            return self._send(reply, msg, NAK, None, [])
        key = (msg.xid, h.nonce)
        self._forget_old(time.monotonic())
        lease = self.leases.get((h.fqdn, h.nonce))
        if key not in self.decisions and lease is not None and lease[0] == h.address \
                and lease[2] > time.monotonic() and msg.msg_type == REQUEST:
            # udhcpc renews with the options of its command line, i.e. the hello the MSM
            # already accepted: extend that lease (same node, same address) without a new
            # DIAMETER round trip; anything else is a new hello with fresh credentials
            self.count("renewed")
            self.leases[(h.fqdn, h.nonce)] = (lease[0], lease[1], time.monotonic() + self.lease_s)
            return self._send(reply, msg, ACK, h, lease[1])
        if key not in self.decisions:
            if len(self.waiting) >= self.max_pending:
                self.count("busy_dropped")  # the MSM is asked enough; the client retransmits
                return
            try:
                self.replay.check(h.fqdn, h.ts_ms, h.nonce)
            except cr.CredentialError as exc:
                self.count(f"refused_{exc.reason}")
                log.warning("DHCP hello from %s refused: %s", h.fqdn, exc)
                return self._send(reply, msg, NAK, None, [])
            self.decisions[key] = None
            self.first_seen[key] = time.monotonic()
            self.waiting.add(key)

            def done(ok: bool, routes, reason) -> None:
                now = time.monotonic()
                self.waiting.discard(key)
                if key in self.decisions:  # else forgotten meanwhile: answer, keep nothing
                    self.decisions[key] = Decision(ok, routes or [], reason, now)
                if ok:
                    self.count("attached")
                    self.leases[(h.fqdn, h.nonce)] = (h.address, routes or [],
                                                      now + self.lease_s)
                    self.attach_ms.append((now - self.first_seen.get(key, now)) * 1000)
                    if self.on_attached:
                        self.on_attached(h, routes)
                else:
                    self.count("refused")
                    log.warning("DHCP hello from %s (%s) refused: %s", h.fqdn, h.address, reason)
                self._send(reply, msg, OFFER if msg.msg_type == DISCOVER else ACK, h, routes) \
                    if ok else self._send(reply, msg, NAK, None, [])
            self.authenticate(h, done)
            return
        d = self.decisions[key]
        if d is None:
            return  # the MSM is still deciding; the client retransmits
        if not d.ok:
            return self._send(reply, msg, NAK, None, [])
        self._send(reply, msg, OFFER if msg.msg_type == DISCOVER else ACK, h, d.routes)

    def _send(self, reply, req: DhcpMessage, kind: int, h: DhcpHello | None, routes) -> None:
        opts = [(OPT_MSG_TYPE, bytes([kind])), (OPT_SERVER_ID, socket.inet_aton(self.addr))]
        yiaddr = "0.0.0.0"
        if h is not None:
            yiaddr = h.address
            cl = [(f"{self.addr}/32", "0.0.0.0")]
            cl += [(p, self.addr) for p, _gw, _m in sorted(routes, key=lambda r: r[2])]
            opts += [(OPT_LEASE, struct.pack("!I", self.lease_s)),
                     (OPT_MASK, socket.inet_aton("255.255.255.255")),
                     (OPT_CLASSLESS, classless_routes(cl))]
            if any(p == "0.0.0.0/0" for p, _gw, _m in routes):
                opts.append((OPT_ROUTER, socket.inet_aton(self.addr)))  # RFC 3442
        self.count({OFFER: "offer", ACK: "ack", NAK: "nak"}[kind])
        reply(build_message(2, req.xid, req.flags, yiaddr, self.addr, req.chaddr, opts))


def open_server_socket(iface: str, port: int = 67) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.bind(("0.0.0.0", port))
    s.setblocking(False)
    return s
