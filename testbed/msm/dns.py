"""DNS server of the mobile workgroup system (claim 21), on dnslib, UDP and TCP.

Authoritative for one zone (default `mwg.test.`). Answers come straight from the
store on every query, so a user added at the portal resolves at once:
- a user FQDN -> A its private address (meaningful inside its own M-VPN's realm);
- `sg-<mvpn>.<zone>` -> A the SG's public address;
- the MSM's own name -> A its public address (when configured);
- `_cert.<user FQDN>` -> TXT "tbcert1" + the node's certificate (DER, base64, in
  255-character strings), the sink's certificate fetch of claim 55 (large: ask by TCP);
- anything else -> NXDOMAIN. The server does not recurse.

What every answer obeys (RFC 1035 4.1.1, RFC 6891, RFC 8906; `answer()` below):
- header: QR=1, ID and OPCODE echoed, RD copied, CD copied (RFC 4035 3.2.2), AA only for
  names of our zone, RA=0 (no recursion), Z=0 and AD=0, TC only when we truncated: the
  query's TC and Z bits are never copied;
- an OPCODE other than QUERY -> NOTIMP (RFC 8906 3.1.4); QDCOUNT != 1 -> FORMERR; a
  class other than IN (or ANY) -> REFUSED: the zone exists in class IN only;
- a message that does not parse (bad names, pointer loops, short sections) -> FORMERR if
  its header could be read, else dropped; each is counted, none raises; a response (QR=1)
  is never answered;
- EDNS0 (RFC 6891): an answer carries an OPT RR when the query had one (version 0, our
  payload size); two or more OPT RRs -> FORMERR (6.1.1); version > 0 -> BADVERS (6.1.3);
- UDP size: 512 bytes without EDNS0 (RFC 1035 4.2.1), else the client's advertised size
  (at least 512, at most ours, MAX_UDP_PAYLOAD); a larger answer goes out as the header,
  question and OPT with TC=1 (RFC 2181 9), and the client asks again over TCP;
- TCP (RFC 7766): several queries per connection, an idle timeout (also while a message
  is only partly received), and a cap on concurrent connections; over it, the new
  connection is closed at once and counted.
"""
from __future__ import annotations

import base64
import logging
import socket
import socketserver
import struct
import threading
import time
from collections import Counter

from dnslib import CLASS, EDNS0, NS, OPCODE, QTYPE, RCODE, RR, SOA, TXT, A, DNSHeader, DNSLabel, DNSRecord

from .store import Store

log = logging.getLogger("msm.dns")

TTL = 5  # short: answers must follow portal changes (the issue asks for seconds)
#: RFC 1035 4.2.1: UDP messages without EDNS0 are at most 512 bytes.
CLASSIC_UDP_LIMIT = 512
#: Our EDNS0 UDP payload size (RFC 6891 6.2.5; 1232 avoids IP fragmentation, DNS flag day 2020).
MAX_UDP_PAYLOAD = 1232
#: Extended RCODE BADVERS (RFC 6891 6.1.3): upper 8 bits in the OPT TTL, lower 4 in the header.
BADVERS = 16
HEADER_LEN = 12
QR_BIT = 0x8000
CLASS_ANY = 255  # QCLASS "*" (RFC 1035 3.2.5)


def sg_name(mvpn: str, zone: str) -> str:
    """The DNS name of an M-VPN's security gateway, e.g. sg-b.mwg.test."""
    return f"sg-{mvpn.lower()}.{zone.rstrip('.')}"


class WorkgroupResolver:
    """dnslib resolver answering from the store."""

    def __init__(self, store: Store, zone: str, msm_fqdn: str, msm_address: str | None) -> None:
        self.store = store
        self.zone = DNSLabel(zone)
        self.msm_fqdn = msm_fqdn.rstrip(".").lower()
        self.msm_address = msm_address
        self.counters: Counter = Counter()
        self.lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self.lock:
            self.counters[key] += 1

    def lookup(self, name: str) -> str | None:
        """The address for `name` (lower-case, no trailing dot), or None."""
        if self.msm_address and name == self.msm_fqdn:
            return self.msm_address
        user = self.store.find_user(name)
        if user:
            return user["private_address"]
        zone = str(self.zone).rstrip(".").lower()
        if name.startswith("sg-") and name.endswith("." + zone):
            label = name[3:-(len(zone) + 1)]
            for m in self.store.mvpns():
                if m["name"].lower() == label:
                    return m["sg_public"]
        return None

    def _soa(self) -> RR:
        mname = self.msm_fqdn + "."
        return RR(self.zone, QTYPE.SOA, ttl=TTL,
                  rdata=SOA(mname, "hostmaster." + str(self.zone), (self.store.version, 60, 30, 86400, TTL)))

    def _cert(self, reply: DNSRecord, qname, fqdn: str, qtype: int) -> DNSRecord:
        """Claim 55: the node certificate a sink fetches when a hello names it."""
        pem = self.store.node_cert(fqdn)
        if pem is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            self._count("nxdomain")
            return reply
        if qtype in (QTYPE.TXT, QTYPE.ANY):
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
            b64 = base64.b64encode(der).decode()
            parts = ["tbcert1"] + [b64[i:i + 255] for i in range(0, len(b64), 255)]
            reply.add_answer(RR(qname, QTYPE.TXT, ttl=TTL, rdata=TXT(parts)))
            self._count("cert_answered")
        else:
            reply.add_auth(self._soa())
            self._count("nodata")
        return reply

    def resolve(self, request: DNSRecord) -> DNSRecord:
        """Answer one QUERY with one question (answer() checked both): the reply's records,
        header bits per reply_header(), rcode NOERROR, NXDOMAIN or SERVFAIL."""
        reply = DNSRecord(reply_header(request.header), q=request.q)
        try:
            q = request.q
            qname = q.qname
            name = str(qname).rstrip(".").lower()
            qtype = q.qtype
            if qname.matchSuffix(self.zone) or self.store.find_user(name):
                reply.header.aa = 1
            if qname == self.zone:
                if qtype in (QTYPE.SOA, QTYPE.ANY):
                    reply.add_answer(self._soa())
                if qtype in (QTYPE.NS, QTYPE.ANY):
                    reply.add_answer(RR(self.zone, QTYPE.NS, ttl=TTL, rdata=NS(self.msm_fqdn + ".")))
                if not reply.rr:
                    reply.add_auth(self._soa())
                self._count("answered")
                return reply
            if name.startswith("_cert."):
                return self._cert(reply, qname, name[len("_cert."):], qtype)
            addr = self.lookup(name)
            if addr is None:
                reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self._soa())
                self._count("nxdomain")
                log.debug("DNS %s %s -> NXDOMAIN", name, QTYPE[qtype])
            elif qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(qname, QTYPE.A, ttl=TTL, rdata=A(addr)))
                self._count("answered")
                log.debug("DNS %s A -> %s", name, addr)
            else:
                reply.add_auth(self._soa())  # NODATA: the name exists, only as A
                self._count("nodata")
        except Exception:  # a resolver bug must not kill the server thread: SERVFAIL
            log.exception("DNS resolver failed for %r", request.q)
            reply = DNSRecord(reply_header(request.header, RCODE.SERVFAIL), q=request.q)
            self._count("servfail")
        return reply


def reply_header(query: DNSHeader, rcode: int = RCODE.NOERROR) -> DNSHeader:
    """The header of our answer to `query` (RFC 1035 4.1.1, RFC 8906 3.1): ID and OPCODE
    echoed, RD and CD (RFC 4035 3.2.2) copied, QR=1; AA, TC, RA, Z, AD start at 0."""
    return DNSHeader(id=query.id, bitmap=0, qr=1, opcode=query.opcode, rd=query.rd,
                     cd=query.cd, rcode=rcode)


def _bare_error(data: bytes, rcode: int) -> bytes:
    """An answer with no sections for a query we could not (or will not) parse: ID and
    OPCODE echoed, RD copied, QR=1, `rcode` (RFC 1035 4.1.1)."""
    qid, flags = struct.unpack_from("!HH", data)
    flags = QR_BIT | (flags & 0x7800) | (flags & 0x0100) | (rcode & 0xF)
    return struct.pack("!6H", qid, flags, 0, 0, 0, 0)


#: RFC 1035 2.3.4/3.1: a domain name is at most 255 octets in wire form (labels, their
#: length octets and the root's zero octet).
MAX_NAME_OCTETS = 255


def name_octets(name: DNSLabel) -> int:
    """Wire length of a dnslib name in octets (each label plus its length octet, plus 1)."""
    return sum(len(label) + 1 for label in name.label) + 1


def answer(data: bytes, resolver: WorkgroupResolver, udp: bool) -> bytes | None:
    """The wire answer to one DNS message `data` (bytes, no TCP length prefix), or None
    when nothing may be sent (shorter than a header, or itself a response).

    udp: apply the UDP size limit (512, or the EDNS0 size the client advertised, at most
    MAX_UDP_PAYLOAD) and truncate with TC=1 above it. Never raises on bad input: every
    rejection is counted in resolver.counters (malformed, response_dropped, notimp,
    formerr, badvers, truncated). Sources: RFC 1035 4.1.1/4.2.1, RFC 6891 6.1-6.2,
    RFC 8906 3.1, RFC 2181 9.
    """
    count = resolver._count
    if len(data) < HEADER_LEN:
        count("malformed")
        return None
    if struct.unpack_from("!H", data, 2)[0] & QR_BIT:
        count("response_dropped")  # never answer an answer (reflection loops)
        return None
    try:
        query = DNSRecord.parse(data)
    except Exception as exc:  # dnslib raises DNSError, struct.error, UnicodeError...
        count("malformed")
        log.debug("malformed DNS query (%d bytes): %s", len(data), exc)
        return _bare_error(data, RCODE.FORMERR)
    opts = [rr for rr in query.ar if rr.rtype == QTYPE.OPT]
    if len(opts) > 1 or (opts and str(opts[0].rname) != "."):
        count("formerr")  # RFC 6891 6.1.1: one OPT at most, owned by the root
        return _bare_error(data, RCODE.FORMERR)
    opt = opts[0] if opts else None
    if query.header.opcode != OPCODE.QUERY:
        count("notimp")
        reply = DNSRecord(reply_header(query.header, RCODE.NOTIMP),
                          q=query.q if len(query.questions) == 1 else None)
        if opt is not None:  # RFC 6891 7: an OPT in every answer to a query with one
            reply.add_ar(EDNS0(rname=".", udp_len=MAX_UDP_PAYLOAD))
        return reply.pack()
    if len(query.questions) != 1:
        count("formerr")
        return _bare_error(data, RCODE.FORMERR)
    if name_octets(query.q.qname) > MAX_NAME_OCTETS:
        # dnslib reads such a name but cannot write it back: refuse it here (RFC 1035 3.1)
        count("malformed")
        return _bare_error(data, RCODE.FORMERR)
    if query.q.qclass not in (CLASS.IN, CLASS_ANY):
        count("refused")  # our zone is class IN only: not authoritative for CH, HS, ...
        reply = DNSRecord(reply_header(query.header, RCODE.REFUSED), q=query.q)
        if opt is not None:
            reply.add_ar(EDNS0(rname=".", udp_len=MAX_UDP_PAYLOAD))
        return reply.pack()
    if opt is not None and (opt.ttl >> 16) & 0xFF != 0:
        count("badvers")
        reply = DNSRecord(reply_header(query.header, BADVERS & 0xF), q=query.q)
        reply.add_ar(EDNS0(rname=".", udp_len=MAX_UDP_PAYLOAD, ext_rcode=BADVERS >> 4))
        return reply.pack()
    reply = resolver.resolve(query)
    if opt is not None:
        reply.add_ar(EDNS0(rname=".", udp_len=MAX_UDP_PAYLOAD))
    wire = reply.pack()
    if not udp:
        return wire
    limit = CLASSIC_UDP_LIMIT if opt is None else \
        min(MAX_UDP_PAYLOAD, max(CLASSIC_UDP_LIMIT, opt.rclass))
    if len(wire) <= limit:
        return wire
    count("truncated")
    short = DNSRecord(reply.header, q=reply.q)  # same header (AA, rcode), no records
    short.header.tc = 1
    if opt is not None:
        short.add_ar(EDNS0(rname=".", udp_len=MAX_UDP_PAYLOAD))
    return short.pack()


class _UdpHandler(socketserver.BaseRequestHandler):
    """One datagram, one answer (or none). Runs in the UDP server's own thread."""

    def handle(self) -> None:
        data, sock = self.request
        resolver = self.server.resolver
        resolver._count("received_udp")
        wire = answer(data, resolver, udp=True)
        if wire is not None:
            try:
                sock.sendto(wire, self.client_address)
            except OSError as exc:
                log.debug("DNS answer to %s not sent: %s", self.client_address, exc)


class _TcpHandler(socketserver.BaseRequestHandler):
    """RFC 7766: length-prefixed queries on one connection until EOF, a bad length or
    idle_timeout_s without a whole message (a slow or silent client is cut off)."""

    def _recv(self, n: int, deadline: float) -> bytes | None:
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout
            self.request.settimeout(left)
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self) -> None:
        resolver = self.server.resolver
        try:
            while True:
                deadline = time.monotonic() + self.server.idle_timeout_s
                prefix = self._recv(2, deadline)
                if prefix is None:
                    return
                (length,) = struct.unpack("!H", prefix)
                if length < HEADER_LEN:
                    resolver._count("malformed")
                    return
                data = self._recv(length, deadline)
                if data is None:
                    resolver._count("malformed")  # closed in the middle of a message
                    return
                resolver._count("received_tcp")
                wire = answer(data, resolver, udp=False)
                if wire is not None:
                    self.request.sendall(struct.pack("!H", len(wire)) + wire)
        except socket.timeout:
            resolver._count("tcp_idle_closed")
        except OSError as exc:
            log.debug("DNS TCP connection from %s: %s", self.client_address, exc)


class _UdpServer(socketserver.UDPServer):
    """Answers datagrams one at a time in one thread: a flood costs no threads."""

    allow_reuse_address = True


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection, at most max_connections of them."""

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of connects is accepted (or refused)

    def __init__(self, addr, resolver, idle_timeout_s: float, max_connections: int) -> None:
        super().__init__(addr, _TcpHandler)
        self.resolver = resolver
        self.idle_timeout_s = idle_timeout_s
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            self.resolver._count("tcp_refused")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class DnsService:
    """UDP and TCP listeners on one address and port, each served from daemon threads.

    tcp_idle_timeout_s: seconds a TCP client may take for each whole message (RFC 7766
    6.2.3); max_tcp_connections: connections served at once (issue 11 section 4).
    """

    def __init__(self, resolver: WorkgroupResolver, address: str, port: int,
                 tcp_idle_timeout_s: float = 5.0, max_tcp_connections: int = 32) -> None:
        self.resolver = resolver
        self.udp = _UdpServer((address, port), _UdpHandler)
        self.udp.resolver = resolver
        bound = self.udp.server_address[1]
        self.tcp = _TcpServer((address, bound), resolver, tcp_idle_timeout_s,
                              max_tcp_connections)
        self.port = bound

    def start(self) -> None:
        # Our own threads with a short poll interval: shutdown (an MSM restart) is quick.
        for name, srv in (("dns-udp", self.udp), ("dns-tcp", self.tcp)):
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                             name=name, daemon=True).start()
        log.info("DNS for zone %s on %s UDP+TCP port %d", self.resolver.zone,
                 self.udp.server_address[0], self.port)

    def stop(self) -> None:
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()

    def counters(self) -> dict:
        with self.resolver.lock:
            return dict(self.resolver.counters)
