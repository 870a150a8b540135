"""Wire formats of the access plane, checked against hand-built bytes (no network)."""
from __future__ import annotations

import hashlib
import hmac
import socket
import struct

import pytest

from testbed.access import dhcp
from testbed.access import hello_auth as ha
from testbed.access.config import ConfigError, NodeConfig, SinkConfig, parse
from testbed.access.node import AccessNode
from testbed.aodv.messages import MalformedMessage, hello, parse_message


def test_auth_extension_bytes_and_hmac_over_hello_fields():
    node = AccessNode("10.10.0.5", "mn1.mwg.test", secret="k")
    raw = node.secret_hello(lifetime_ms=2000, ts_ms=0x0102030405060708, nonce=b"ABCDEFGH")
    hdr = bytes([2, 0, 0, 0]) + socket.inet_aton("10.10.0.5") + struct.pack("!I", 1) + \
        socket.inet_aton("10.10.0.5") + struct.pack("!I", 2000)
    ext_wo_mac = bytes([131, 8 + 8 + 1 + 12 + 32]) + bytes.fromhex("0102030405060708") + \
        b"ABCDEFGH" + bytes([12]) + b"mn1.mwg.test"
    mac = hmac.new(b"k", hdr + ext_wo_mac, hashlib.sha256).digest()
    assert raw == hdr + ext_wo_mac + mac
    m = parse_message(raw)
    e = m.ext(ha.AuthExt)
    assert e.identity == b"mn1.mwg.test" and e.mac == mac
    assert ha.auth_data(m, e) == hdr + ext_wo_mac


def test_hop_count_is_not_covered_but_lifetime_is():
    node = AccessNode("10.10.0.5", "mn1.mwg.test", secret="k")
    m = parse_message(node.secret_hello())
    e = m.ext(ha.AuthExt)
    before = ha.auth_data(m, e)
    m.hop_count = 3
    assert ha.auth_data(m, e) == before
    m.lifetime += 1
    assert ha.auth_data(m, e) != before


def test_chunked_blob_round_trip_and_errors():
    blob = bytes(range(256)) * 3
    m = parse_message(bytes(hello("10.0.0.1", 1, 0, ha.split_blob(ha.KIND_CERT, blob))))
    assert len(m.extensions) == 4 and ha.join_blob(m, ha.KIND_CERT) == blob
    assert ha.join_blob(m, ha.KIND_SIG) is None
    m.extensions.pop(1)
    with pytest.raises(ha.ExtensionError):
        ha.join_blob(m, ha.KIND_CERT)


def test_routes_extension_bytes():
    ext = ha.routes_ext(ha.VERDICT_VISITOR, [("0.0.0.0/0", "10.10.0.250", 1)])
    assert bytes(ext) == bytes([134, 12, 1]) + b"\0\0\0\0" + bytes([0]) + \
        socket.inet_aton("10.10.0.250") + b"\x00\x01"
    m = parse_message(bytes(hello("10.10.0.1", 0, 0, [ext])))
    assert ha.routes_of(m.ext(ha.RoutesExt)) == [("0.0.0.0/0", "10.10.0.250", 1)]


def test_inconsistent_inner_lengths_refused():
    raw = bytearray(AccessNode("10.10.0.5", "mn1.mwg.test", secret="k").secret_hello())
    raw[38] = 13  # id_len one too long: would eat the first MAC byte
    m = parse_message(bytes(raw))
    with pytest.raises(ha.ExtensionError):
        ha.check_consistent(m)
    with pytest.raises(MalformedMessage):
        parse_message(bytes(raw[:-1]))  # extension longer than the datagram


# ---------------------------------------------------------------- DHCP
def test_dhcp_options_parse_strict():
    assert dhcp.parse_options(bytes([53, 1, 1, 0, 50, 4, 10, 10, 0, 5, 255])) == {
        53: b"\x01", 50: bytes([10, 10, 0, 5])}
    assert dhcp.parse_options(bytes([43, 2, 1, 2, 43, 1, 3, 255]))[43] == b"\x01\x02\x03"  # RFC 3396
    for bad in (bytes([53, 1, 1]), bytes([50, 4, 10, 10, 255]), bytes([50])):
        with pytest.raises(dhcp.DhcpError):
            dhcp.parse_options(bad)


def test_rfc3442_classless_routes_bytes():
    # RFC 3442 section 3 examples: 10.0.0.0/8 via 10.0.0.1; 0/0 via 10.0.0.1
    b = dhcp.classless_routes([("10.0.0.0/8", "10.0.0.1"), ("0.0.0.0/0", "10.0.0.1"),
                               ("10.10.0.1/32", "0.0.0.0")])
    assert b == bytes([8, 10, 10, 0, 0, 1, 0, 10, 0, 0, 1, 32, 10, 10, 0, 1, 0, 0, 0, 0])
    assert dhcp.parse_classless(b) == [("10.0.0.0/8", "10.0.0.1"), ("0.0.0.0/0", "10.0.0.1"),
                                       ("10.10.0.1/32", "0.0.0.0")]


def discover_bytes(opts):
    return dhcp.build_message(1, 0xABCD, 0x8000, "0.0.0.0", "0.0.0.0", b"\x02" * 6, opts)


def test_dhcp_hello_credentials_from_bytes():
    cid, vendor = dhcp.hello_options("mn1.mwg.test", "10.10.0.5", "k", ts_ms=7, nonce=b"N" * 8)
    assert cid == b"\0mn1.mwg.test"
    assert vendor[:2] == bytes([1, 8]) and vendor[10:12] == bytes([2, 8]) and vendor[20:22] == bytes([3, 32])
    raw = discover_bytes([(53, b"\x01"), (50, socket.inet_aton("10.10.0.5")), (61, cid), (43, vendor)])
    assert raw[236:240] == dhcp.MAGIC
    h = dhcp.hello_of(dhcp.parse_message(raw))
    assert (h.fqdn, h.address, h.ts_ms, h.nonce) == ("mn1.mwg.test", "10.10.0.5", 7, b"N" * 8)
    assert h.mac == hmac.new(b"k", h.auth_data, hashlib.sha256).digest()
    assert h.auth_data == b"tb-dhcp-hello\0mn1.mwg.test\0" + bytes([10, 10, 0, 5]) + \
        struct.pack("!Q", 7) + b"N" * 8


def test_dhcp_server_one_decision_per_exchange_and_nak():
    calls = []
    sent = []
    srv = dhcp.DhcpHelloServer("10.10.0.1", lambda h, done: calls.append((h, done)))
    cid, vendor = dhcp.hello_options("mn1.mwg.test", "10.10.0.5", "k")
    d = discover_bytes([(53, b"\x01"), (50, socket.inet_aton("10.10.0.5")), (61, cid), (43, vendor)])
    srv.handle(d, sent.append)
    srv.handle(d, sent.append)  # retransmission while the MSM decides
    assert len(calls) == 1 and not sent
    calls[0][1](True, [("0.0.0.0/0", "10.10.0.254", 10), ("10.10.0.0/24", "0.0.0.0", 1)], None)
    offer = dhcp.parse_message(sent[-1])
    assert offer.msg_type == dhcp.OFFER and offer.yiaddr == "10.10.0.5" and offer.xid == 0xABCD
    assert dhcp.parse_classless(offer.options[121]) == [
        ("10.10.0.1/32", "0.0.0.0"), ("10.10.0.0/24", "10.10.0.1"), ("0.0.0.0/0", "10.10.0.1")]
    r = discover_bytes([(53, b"\x03"), (50, socket.inet_aton("10.10.0.5")), (61, cid), (43, vendor)])
    srv.handle(r, sent.append)
    assert dhcp.parse_message(sent[-1]).msg_type == dhcp.ACK and len(calls) == 1
    # renewal: new xid, same accepted credentials and address -> ACK without the MSM
    renew = dhcp.build_message(1, 0xBEEF, 0, "0.0.0.0", "0.0.0.0", b"\x02" * 6,
                               [(53, b"\x03"), (50, socket.inet_aton("10.10.0.5")), (61, cid), (43, vendor)],
                               ciaddr="10.10.0.5")
    srv.handle(renew, sent.append)
    assert dhcp.parse_message(sent[-1]).msg_type == dhcp.ACK and srv.counters["renewed"] == 1
    assert len(calls) == 1
    # ... but the same credentials for another address are a replay: NAK, MSM not asked
    other = dhcp.build_message(1, 0xBEEF + 1, 0, "0.0.0.0", "0.0.0.0", b"\x03" * 6,
                               [(53, b"\x01"), (50, socket.inet_aton("10.10.0.99")), (61, cid), (43, vendor)])
    srv.handle(other, sent.append)
    assert len(calls) == 1 and dhcp.parse_message(sent[-1]).msg_type == dhcp.NAK
    assert srv.counters["refused_replay"] == 1
    # no credentials -> NAK without asking anyone; garbage is counted
    srv.handle(discover_bytes([(53, b"\x01")]), sent.append)
    assert dhcp.parse_message(sent[-1]).msg_type == dhcp.NAK and len(calls) == 1
    srv.handle(b"\x01" * 100, sent.append)
    assert srv.counters["malformed"] == 1


def test_udhcpc_args_carry_the_options():
    args = dhcp.udhcpc_args("mn1.mwg.test", "10.10.0.5", "k", "eth0", "/s")
    assert args[args.index("-r") + 1] == "10.10.0.5"
    xs = [args[i + 1] for i, a in enumerate(args) if a == "-x"]
    assert xs[0] == "0x3d:00" + b"mn1.mwg.test".hex() and xs[1].startswith("0x2b:0108")


# ---------------------------------------------------------------- config
def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="visitors"):
        parse({"address": "10.0.0.1", "shared_secret": False,
               "visitors": {"enabled": True}}, SinkConfig)
    with pytest.raises(ConfigError, match="msm"):
        parse({"address": "10.0.0.1"}, SinkConfig)
    with pytest.raises(ConfigError, match="bogus"):
        parse({"address": "10.0.0.1", "shared_secret": False, "bogus": 1}, SinkConfig)
    with pytest.raises(ConfigError, match="secret"):
        parse({"address": "10.0.0.5", "identity": "a"}, NodeConfig)


def test_rsa_certificate_hello_fits_one_datagram_and_verifies(tmp_path):
    from testbed.access import credentials as cr
    from testbed.msm.ca import CertificateAuthority
    from testbed.common.enroll import sign_local_key

    ca = CertificateAuthority(str(tmp_path / "ca"), key_type="rsa")
    i = sign_local_key(ca, "mn1.mwg.test", "mn", [], ["mn1.mwg.test"])
    node = AccessNode("10.10.0.5", "mn1.mwg.test", ca_pem=ca.cert_pem.encode(),
                      cert_pem=i.cert_pem.encode(), key_pem=i.key_pem.encode())
    raw = node.cert_hello()
    assert len(raw) <= 1500 - 20 - 8  # one UDP datagram at MTU 1500, no IP fragments
    m = parse_message(raw)
    ha.check_consistent(m)
    cert = cr.load_cert(ha.join_blob(m, ha.KIND_CERT))
    cr.verify_cert(cert, cr.load_cert(ca.cert_pem))
    cr.verify_signature(cert, ha.join_blob(m, ha.KIND_SIG), ha.signed_data(m))
    m.lifetime += 1
    with pytest.raises(cr.CredentialError):
        cr.verify_signature(cert, ha.join_blob(m, ha.KIND_SIG), ha.signed_data(m))
