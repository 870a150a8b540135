"""The MSM's DNS server against RFC 1035, 6891 and 8906, and against a silent TCP flood
(issue 11 sections 3 and 4). The server runs in this process on loopback with a real
store; dnspython and raw sockets are the peers."""
from __future__ import annotations

import datetime
import socket
import struct
import threading
import time

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testbed.msm.dns import DnsService, WorkgroupResolver, answer
from testbed.msm.store import Store

CERT_Q = "_cert.a.mwg.test."
#: the issue's input: a TXT answer of exactly this many bytes
TXT_ANSWER_LEN = 966


def _cert_pem(pad: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.mwg.test"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x" * pad)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _tcp_size(resolver: WorkgroupResolver) -> int:
    q = dns.message.make_query(CERT_Q, "TXT", use_edns=False)
    return len(answer(q.to_wire(), resolver, udp=False))


@pytest.fixture(scope="module")
def cert_966(tmp_path_factory) -> str:
    """A node certificate whose TXT answer (no EDNS0) is exactly 966 bytes."""
    store = Store(str(tmp_path_factory.mktemp("cert") / "msm.db"))
    resolver = WorkgroupResolver(store, "mwg.test.", "msm.mwg.test", "198.51.100.10")
    # answer sizes step by 4 bytes with the subject's length (base64); ECDSA signatures
    # vary by a byte or two, so a pad is tried more than once
    for pad in [p for p in range(120, 260) for _ in range(3)]:
        pem = _cert_pem(pad)
        store.set_node_cert("a.mwg.test", pem)
        if _tcp_size(resolver) == TXT_ANSWER_LEN:
            return pem
    raise AssertionError("no certificate gives a 966-byte answer")


@pytest.fixture
def server(tmp_path, cert_966):
    """A DnsService on loopback whose certificate TXT answer is exactly 966 bytes."""
    store = Store(str(tmp_path / "msm.db"))
    resolver = WorkgroupResolver(store, "mwg.test.", "msm.mwg.test", "198.51.100.10")
    store.set_node_cert("a.mwg.test", cert_966)
    assert _tcp_size(resolver) == TXT_ANSWER_LEN
    svc = DnsService(resolver, "127.0.0.1", 0, tcp_idle_timeout_s=1.0, max_tcp_connections=8)
    svc.start()
    yield svc
    svc.stop()


def udp(svc: DnsService, q: dns.message.Message | bytes) -> dns.message.Message:
    wire = q if isinstance(q, bytes) else q.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(wire, ("127.0.0.1", svc.port))
        data = s.recv(65535)
    msg = dns.message.from_wire(data)
    msg.wire_len = len(data)
    return msg


def test_966_byte_txt_answer_truncated_over_udp_without_edns(server):
    """RFC 1035 4.2.1: 512 bytes at most without EDNS0; TC=1, the client retries by TCP."""
    r = udp(server, dns.message.make_query(CERT_Q, "TXT", use_edns=False))
    assert r.flags & dns.flags.TC and r.wire_len <= 512 and not r.answer, r
    assert r.rcode() == dns.rcode.NOERROR and r.edns < 0
    full = dns.query.tcp(dns.message.make_query(CERT_Q, "TXT", use_edns=False), "127.0.0.1",
                         port=server.port, timeout=3)
    assert not full.flags & dns.flags.TC and len(full.to_wire()) == TXT_ANSWER_LEN
    assert b"".join(full.answer[0][0].strings).startswith(b"tbcert1")


def test_966_byte_txt_answer_truncated_to_an_edns_buffer_of_600(server):
    """RFC 6891 6.2.5: the requestor's 600-byte payload size bounds the answer: TC=1, and
    the answer still carries an OPT RR (version 0, our payload size)."""
    r = udp(server, dns.message.make_query(CERT_Q, "TXT", use_edns=0, payload=600))
    assert r.flags & dns.flags.TC and r.wire_len <= 600 and not r.answer
    assert r.edns == 0 and r.payload == 1232
    big = udp(server, dns.message.make_query(CERT_Q, "TXT", use_edns=0, payload=1232))
    assert not big.flags & dns.flags.TC and big.answer and big.edns == 0
    assert big.wire_len == TXT_ANSWER_LEN + 11  # the same answer plus its OPT RR
    # an advertised size under 512 counts as 512 (RFC 6891 6.2.5)
    tiny = udp(server, dns.message.make_query("b.mwg.test.", "A", use_edns=0, payload=100))
    assert not tiny.flags & dns.flags.TC


def test_opcode_4_gets_notimp_not_an_soa(server):
    """RFC 8906 3.1.4 (and 1035 4.1.1): an opcode we do not implement -> NOTIMP, opcode
    echoed, no records."""
    q = dns.message.make_query("mwg.test.", "SOA", use_edns=False)
    q.set_opcode(dns.opcode.NOTIFY)  # 4
    r = udp(server, q)
    assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == dns.opcode.NOTIFY
    assert not r.answer and not r.authority and r.id == q.id
    q.set_opcode(dns.opcode.UPDATE)  # 5
    assert udp(server, q).rcode() == dns.rcode.NOTIMP
    q = dns.message.make_query("mwg.test.", "SOA", use_edns=0)
    q.set_opcode(dns.opcode.NOTIFY)
    r = udp(server, q)  # RFC 6891 7: the answer to a query with OPT carries one
    assert r.rcode() == dns.rcode.NOTIMP and r.edns == 0


def test_chaos_class_is_refused_any_class_answered(server):
    """The zone exists in class IN: a CH query gets REFUSED (not an IN answer), ANY is
    answered as IN."""
    r = udp(server, dns.message.make_query("mwg.test.", "SOA", rdclass="CH", use_edns=False))
    assert r.rcode() == dns.rcode.REFUSED and not r.answer and not r.flags & dns.flags.AA
    r = udp(server, dns.message.make_query("mwg.test.", "SOA", rdclass="ANY", use_edns=False))
    assert r.rcode() == dns.rcode.NOERROR and r.answer


def test_tc_and_z_of_the_query_are_not_copied_rd_is(server):
    """RFC 1035 4.1.1: Z is zero in all messages; TC says *this* message was truncated.
    RD is copied, RA is 0 (no recursion), AA only for our zone."""
    q = dns.message.make_query("mwg.test.", "SOA", use_edns=False)
    wire = bytearray(q.to_wire())
    flags = struct.unpack_from("!H", wire, 2)[0] | 0x0200 | 0x0040  # TC and Z
    struct.pack_into("!H", wire, 2, flags)
    r = udp(server, bytes(wire))
    raw = r.flags
    assert not raw & dns.flags.TC and not raw & 0x0040 and raw & dns.flags.QR
    assert raw & dns.flags.RD and raw & dns.flags.AA and not raw & dns.flags.RA
    assert r.answer and r.answer[0].rdtype == dns.rdatatype.SOA
    q2 = dns.message.make_query("www.example.com.", "A", use_edns=False)
    q2.flags &= ~dns.flags.RD
    r2 = udp(server, q2)
    assert not r2.flags & dns.flags.RD and not r2.flags & dns.flags.AA
    assert r2.rcode() == dns.rcode.NXDOMAIN


def test_edns_version_1_gets_badvers_and_two_opts_formerr(server):
    """RFC 6891 6.1.3: unknown EDNS version -> BADVERS with an OPT of version 0;
    6.1.1: more than one OPT RR -> FORMERR."""
    r = udp(server, dns.message.make_query("b.mwg.test.", "A", use_edns=1))
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and not r.answer
    q = dns.message.make_query("b.mwg.test.", "A", use_edns=0)
    wire = q.to_wire()
    opt = wire[-11:]  # dnspython puts the OPT RR last: root, type 41, ...
    assert opt[:3] == b"\x00\x00\x29"
    two = bytearray(wire + opt)
    struct.pack_into("!H", two, 10, 2)  # ARCOUNT 2
    r2 = udp(server, bytes(two))
    assert r2.rcode() == dns.rcode.FORMERR and r2.id == q.id
    assert server.counters().get("formerr") == 1 and server.counters().get("badvers") == 1


def test_malformed_names_are_counted_and_answered_formerr_never_raise(server):
    """A name with a compression pointer to itself, a label running past the end, a
    question count with no question: FORMERR, counted; shorter than a header or a
    response (QR=1): dropped. The server answers a good query afterwards."""
    hdr = struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0)
    bad = [hdr + b"\xc0\x0c\x00\x01\x00\x01",        # pointer loop
           hdr + b"\x3f" + b"a" * 10,                # label longer than the message
           hdr]                                      # QDCOUNT 1, no question
    for wire in bad:
        r = udp(server, wire)
        assert r.rcode() == dns.rcode.FORMERR and r.id == 0x4242
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00\x01", ("127.0.0.1", server.port))
        resp = dns.message.make_response(dns.message.make_query("b.mwg.test.", "A"))
        s.sendto(resp.to_wire(), ("127.0.0.1", server.port))
    assert udp(server, dns.message.make_query("mwg.test.", "NS")).answer
    c = server.counters()
    assert c.get("malformed") == 4 and c.get("response_dropped") == 1, c


def _threads() -> int:
    return threading.active_count()


def _silent_clients(port: int, n: int) -> list[socket.socket]:
    """n TCP clients that send only the 2-byte length prefix and then nothing."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(b"\x00\x40")
        socks.append(s)
    return socks


def test_silent_tcp_clients_hold_no_threads_beyond_the_cap(server, tmp_path):
    """Issue 11 section 4: 100 clients that send the length prefix and go silent. With
    the cap (8) and the idle timeout (1 s) the threads stay within 8 more than before,
    every silent connection is closed within the timeout, and a legitimate TCP query is
    answered once they are. The control (no cap, 60 s timeout) holds 100 threads."""
    base = _threads()
    socks = _silent_clients(server.port, 100)
    try:
        time.sleep(0.3)
        assert _threads() - base <= 8, _threads() - base
        # a legitimate UDP query is answered during the flood, a TCP one after the timeout
        assert udp(server, dns.message.make_query("mwg.test.", "SOA")).answer

        def settled() -> int:
            c = server.counters()
            return c.get("tcp_refused", 0) + c.get("tcp_idle_closed", 0)

        deadline = time.monotonic() + 5
        while settled() < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        # every connection was either refused at the cap or cut at the idle timeout
        assert settled() == 100, server.counters()
        assert server.counters().get("tcp_refused", 0) > 0
        r = dns.query.tcp(dns.message.make_query("mwg.test.", "SOA"), "127.0.0.1",
                          port=server.port, timeout=3)
        assert r.answer and _threads() - base <= 8
    finally:
        for s in socks:
            s.close()
    # control: the same flood without the bounds
    store = Store(str(tmp_path / "ctrl.db"))
    lifted = DnsService(WorkgroupResolver(store, "mwg.test.", "msm.mwg.test", None),
                        "127.0.0.1", 0, tcp_idle_timeout_s=60, max_tcp_connections=10000)
    lifted.start()
    socks = _silent_clients(lifted.port, 100)
    try:
        # each accepted connection gets its thread: wait for them (a fixed sleep could end
        # before a loaded machine started them all, and fail the control for no reason)
        deadline = time.monotonic() + 10
        while _threads() - base < 90 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _threads() - base >= 90
    finally:
        for s in socks:
            s.close()
        lifted.stop()


def _long_name_query(labels: int) -> bytes:
    """A query for `labels` labels of 63 octets (+ the root): 64 * labels + 1 octets of name."""
    name = b"".join(b"\x3f" + b"a" * 63 for _ in range(labels)) + b"\x00"
    return struct.pack("!6H", 0x4343, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"


def test_a_name_over_255_octets_is_formerr_and_counted_malformed_over_udp_and_tcp(server):
    """RFC 1035 3.1: a name is at most 255 octets. dnslib parses a longer one but cannot
    write it back, so the server answered nothing (UDP) or closed (TCP) and counted an
    NXDOMAIN. 3 labels (193 octets) are a name like any other: NXDOMAIN."""
    assert udp(server, _long_name_query(3)).rcode() == dns.rcode.NXDOMAIN
    r = udp(server, _long_name_query(4))                       # 257 octets
    assert r.rcode() == dns.rcode.FORMERR and r.id == 0x4343
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        wire = _long_name_query(5)                             # 321 octets, over TCP
        s.sendall(struct.pack("!H", len(wire)) + wire)
        n = struct.unpack("!H", s.recv(2))[0]
        assert dns.message.from_wire(s.recv(n)).rcode() == dns.rcode.FORMERR
    c = server.counters()
    assert c.get("malformed") == 2 and c.get("nxdomain") == 1, c
