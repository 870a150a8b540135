"""DNS server of the mobile workgroup system (claim 21), on dnslib, UDP and TCP.

Authoritative for one zone (default `mwg.test.`). Answers come straight from the
store on every query, so a user added at the portal resolves at once:
- a user FQDN -> A its private address (meaningful inside its own M-VPN's realm);
- `sg-<mvpn>.<zone>` -> A the SG's public address;
- the MSM's own name -> A its public address (when configured);
- `_cert.<user FQDN>` -> TXT "tbcert1" + the node's certificate (DER, base64, in
  255-character strings), the sink's certificate fetch of claim 55 (large: ask by TCP);
- anything else -> NXDOMAIN. The server does not recurse.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter

import base64

from dnslib import NS, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, DNSRecord
from dnslib.server import DNSLogger, DNSServer

from .store import Store

log = logging.getLogger("msm.dns")

TTL = 5  # short: answers must follow portal changes (the issue asks for seconds)


class _CountingLogger(DNSLogger):
    """dnslib's hook for what its handler sees; here it only counts and debug-logs."""

    def __init__(self, counters: Counter, lock: threading.Lock) -> None:
        # Enable every hook (dnslib would otherwise replace the disabled ones by no-ops);
        # the overrides below neither print nor format anything.
        super().__init__(log="recv,send,request,reply,truncated,error,data", prefix=False, logf=log.debug)
        self.counters = counters
        self.lock = lock

    def log_recv(self, handler, data):
        with self.lock:
            self.counters[f"received_{handler.protocol}"] += 1

    def log_error(self, handler, e):
        # dnslib drops a packet it cannot parse; we count it (bad input never crashes).
        with self.lock:
            self.counters["malformed"] += 1
        log.debug("malformed DNS packet from %s: %s", handler.client_address, e)

    def log_send(self, handler, data): pass
    def log_request(self, handler, request): pass
    def log_reply(self, handler, reply): pass
    def log_truncated(self, handler, reply): pass
    def log_data(self, dnsobj): pass


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

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:
        reply = request.reply()  # dnslib sets ra=1, aa=1: we don't recurse, and aa only for our names
        reply.header.ra = 0
        reply.header.aa = 0
        reply.header.ad = 0  # dnslib copies the query's flags; we vouch for no DNSSEC data
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
            reply = request.reply()
            reply.header.ra = 0
            reply.header.rcode = RCODE.SERVFAIL
            self._count("servfail")
        return reply


class DnsService:
    """UDP and TCP listeners on one address and port, each in a daemon thread."""

    def __init__(self, resolver: WorkgroupResolver, address: str, port: int) -> None:
        self.resolver = resolver
        logger = _CountingLogger(resolver.counters, resolver.lock)
        self.udp = DNSServer(resolver, address=address, port=port, logger=logger)
        self.udp.server.daemon_threads = True
        bound = self.udp.server.server_address[1]
        self.tcp = DNSServer(resolver, address=address, port=bound, tcp=True, logger=logger)
        self.tcp.server.daemon_threads = True
        self.port = bound

    def start(self) -> None:
        # Our own threads rather than dnslib's start_thread: a short poll interval makes
        # shutdown (and so an MSM restart) quick.
        for name, srv in (("dns-udp", self.udp), ("dns-tcp", self.tcp)):
            threading.Thread(target=srv.server.serve_forever, kwargs={"poll_interval": 0.1},
                             name=name, daemon=True).start()
        log.info("DNS for zone %s on %s UDP+TCP port %d", self.resolver.zone,
                 self.udp.server.server_address[0], self.port)

    def stop(self) -> None:
        for srv in (self.udp, self.tcp):
            srv.server.shutdown()
            srv.server.server_close()

    def counters(self) -> dict:
        with self.resolver.lock:
            return dict(self.resolver.counters)
