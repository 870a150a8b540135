"""Mobile IP wire formats against bytes built by hand from RFC 5944 / RFC 3024 / RFC 1256."""
from __future__ import annotations

import hashlib
import hmac
import random
import socket
import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ

from testbed.mip import messages as m

A = socket.inet_aton


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def hand_rrq(flags=0x02, lifetime=300, home="10.0.0.5", ha="198.51.100.1", coa="203.0.113.1",
             ident=0xE1E2E3E4_01020304) -> bytes:
    # RFC 5944 3.3: type, S B D M G r T x, lifetime, home, HA, CoA, identification
    return struct.pack("!BBH4s4s4sQ", 1, flags, lifetime, A(home), A(ha), A(coa), ident)


def test_hmac_md5_is_rfc2104_test_vector_1():
    assert m.authenticator(b"\x0b" * 16, b"Hi There").hex() == "9294727a3638bb1c13f48ef8158bfc9d"


def test_request_bytes_match_rfc_layout_and_auth_covers_type_length_spi():
    key, spi = b"shared secret", 0x1234
    body = hand_rrq()
    # RFC 5944 3.5.1: authenticator over the message, prior extensions, and type+length+SPI
    head = body + struct.pack("!BBI", 32, 20, spi)
    want = head + hmac.new(key, head, hashlib.md5).digest()
    got = m.build_request(flags=m.F_T, lifetime=300, home="10.0.0.5", ha="198.51.100.1", coa="203.0.113.1",
                          ident=0xE1E2E3E4_01020304, spi=spi, key=key)
    assert got == want and len(got) == 24 + 22
    msg = m.parse_registration(got)
    assert msg.msg_type == m.RRQ_TYPE and msg.extensions == [(32, 24, 22)]
    assert isinstance(msg.pkt, MobileIPRRQ) and msg.pkt.coaddr == "203.0.113.1"
    auth = msg.pkt.payload
    assert isinstance(auth, m.MNHAAuth) and auth.spi == spi and auth.length == 20
    assert m.auth_spi(msg) == spi and m.verify_auth(msg, key)
    assert not m.verify_auth(msg, b"other key")


def test_tampering_any_protected_byte_breaks_authentication():
    key = b"k" * 16
    raw = m.build_request(flags=m.F_T, lifetime=300, home="10.0.0.5", ha="198.51.100.1",
                          coa="203.0.113.1", ident=1 << 40, spi=256, key=key)
    for i in list(range(24)) + [24, 25, 26, 29]:
        bad = bytearray(raw)
        bad[i] ^= 0x01
        try:
            msg = m.parse_registration(bytes(bad))
        except m.MalformedMessage:
            continue
        assert not m.verify_auth(msg, key), f"byte {i} not protected"


def test_reply_bytes_and_scapy_dissection_under_udp_434():
    key = b"k"
    got = m.build_reply(code=m.HA_ID_MISMATCH, lifetime=0, home="10.0.0.5", ha="198.51.100.1",
                        ident=7, spi=300, key=key)
    body = struct.pack("!BBH4s4sQ", 3, 133, 0, A("10.0.0.5"), A("198.51.100.1"), 7)
    assert got[:20] == body and got[20:26] == struct.pack("!BBI", 32, 20, 300)
    pkt = IP(bytes(IP(src="198.51.100.1", dst="10.0.0.5") / UDP(sport=434, dport=434) / got))
    assert pkt[MobileIPRRP].code == 133 and pkt[m.MNHAAuth].spi == 300


def test_encapsulating_delivery_extension_and_skippable_unknown_types():
    body = hand_rrq()
    raw = body + bytes([130, 0]) + bytes([200, 3, 1, 2, 3])
    msg = m.parse_registration(raw)
    assert [t for t, _o, _l in msg.extensions] == [130, 200]
    assert isinstance(msg.pkt.payload, m.EncapDeliveryExt)
    assert bytes(MobileIP(type=1) / MobileIPRRQ(flags=2, lifetime=300, homeaddr="10.0.0.5",
                                                  haaddr="198.51.100.1", coaddr="203.0.113.1",
                                                  id=0xE1E2E3E4_01020304) / m.EncapDeliveryExt()) == body + b"\x82\x00"


@pytest.mark.parametrize("raw, why", [
    (b"", "empty"),
    (b"\x07" + b"\0" * 30, "is not a registration"),
    (hand_rrq()[:23], "fixed part"),
    (hand_rrq() + b"\x20", "no length"),
    (hand_rrq() + b"\x20\x14\0\0\x01\0", "beyond"),
    (hand_rrq() + b"\x20\x02\0\0", "< 4"),
    (hand_rrq() + b"\x05\x00", "non-skippable"),
])
def test_malformed_registrations_are_refused_with_a_reason(raw, why):
    with pytest.raises(m.MalformedMessage, match=why):
        m.parse_registration(raw)


def test_random_bytes_never_raise_anything_but_malformed():
    rnd = random.Random(5944)
    seeds = [hand_rrq() + b"\x20\x14" + b"\0" * 20, bytes(24)]
    for _ in range(3000):
        base = bytearray(rnd.choice(seeds))
        for _k in range(rnd.randint(1, 4)):
            op = rnd.random()
            if op < 0.4 and base:
                base[rnd.randrange(len(base))] = rnd.randrange(256)
            elif op < 0.7:
                base = base[:rnd.randrange(len(base) + 1)]
            else:
                base += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 6)))
        try:
            m.parse_registration(bytes(base))
        except m.MalformedMessage:
            pass
        m.parse_advertisement(bytes(base), "192.0.2.1")  # must not raise either


def hand_advert(flags: int, coas: list[str], seq=3, reg=600, life=9, router="203.0.113.1") -> bytes:
    # RFC 1256 router advertisement (type 9) with one address (entry size 2 words)
    ra = struct.pack("!BBHBBH4sI", 9, 0, 0, 1, 2, life, A(router), 0)
    # RFC 5944 2.1.1 mobility agent advertisement extension (type 16, 6 + 4N)
    ext = struct.pack("!BBHHBB", 16, 6 + 4 * len(coas), seq, reg, flags, 0) + b"".join(A(c) for c in coas)
    msg = ra + ext + struct.pack("!BBB", 19, 1, 24)  # prefix-lengths extension
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def test_agent_advertisement_bytes_and_parse():
    want = hand_advert(m.A_R | m.A_F | m.A_T, ["203.0.113.1"])
    got = m.build_advertisement(router="203.0.113.1", seq=3, reg_lifetime=600, flags=m.A_R | m.A_F | m.A_T,
                                coas=["203.0.113.1"], adv_lifetime=9, prefix_len=24)
    assert got == want
    adv = m.parse_advertisement(got, "203.0.113.1")
    assert adv and adv.is_fa and not adv.is_ha and adv.coas == ["203.0.113.1"]
    assert adv.routers == ["203.0.113.1"] and adv.seq == 3 and adv.reg_lifetime == 600 and adv.adv_lifetime == 9
    pkt = m.ICMPRouterAdvert(got)
    assert pkt[m.AgentAdvExt].flags.F and pkt[m.AgentAdvExt].flags.T and pkt[m.PrefixLengthsExt].prefix_lengths == [24]
    home = m.parse_advertisement(hand_advert(m.A_H, [], router="10.0.0.1"), "10.0.0.1")
    assert home and home.is_ha and home.coas == []


def test_advertisement_with_bad_checksum_or_no_extension_is_ignored():
    good = bytearray(hand_advert(m.A_F, ["203.0.113.1"]))
    good[20] ^= 0xFF
    assert m.parse_advertisement(bytes(good), "x") is None
    plain = struct.pack("!BBHBBH4sI", 9, 0, 0, 1, 2, 9, A("192.0.2.1"), 0)
    plain = plain[:2] + struct.pack("!H", csum(plain)) + plain[4:]
    assert m.parse_advertisement(plain, "192.0.2.1") is None


def test_agent_solicitation_is_icmp_type_10():
    assert bytes(m.ICMPRouterSolicit()) == struct.pack("!BBHI", 10, 0, csum(b"\x0a\0\0\0\0\0\0\0"), 0)
