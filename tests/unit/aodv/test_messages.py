"""AODV wire format against byte strings built by hand from RFC 3561 section 5."""
import struct

import pytest
from scapy.layers.inet import IP, UDP

from testbed.aodv.messages import (
    AODVExtension, GratuitousExt, HandoverExt, HandoverKind, MalformedMessage, RERR, RREP,
    RREPAck, RREQ, Unreachable, WeightExt, hello, parse_message, register_extension,
)


def ip(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def rreq_bytes(flags5: int, hop: int, rid: int, dst, dseq, orig, oseq) -> bytes:
    # type | J R G D U (5 bits) + reserved (11 bits) | hop count
    return struct.pack("!BHB", 1, flags5 << 11, hop) + struct.pack("!I", rid) + ip(dst) + \
        struct.pack("!I", dseq) + ip(orig) + struct.pack("!I", oseq)


def test_rreq_round_trip_against_rfc_layout():
    # J and U set: J is the most significant of the five flag bits, U the least
    raw = rreq_bytes(0b10001, 3, 0x01020304, "10.0.0.9", 77, "10.0.0.1", 0xFFFFFFFE)
    m = parse_message(raw)
    assert isinstance(m, RREQ)
    assert m.flags.J and m.flags.U and not (m.flags.R or m.flags.G or m.flags.D)
    assert (m.hop_count, m.rreq_id, m.dst, m.dst_seq, m.orig, m.orig_seq) == \
        (3, 0x01020304, "10.0.0.9", 77, "10.0.0.1", 0xFFFFFFFE)
    built = RREQ(flags="JU", hop_count=3, rreq_id=0x01020304, dst="10.0.0.9", dst_seq=77,
                 orig="10.0.0.1", orig_seq=0xFFFFFFFE)
    assert bytes(built) == raw and len(raw) == 24


@pytest.mark.parametrize("flag,bit", [("J", 4), ("R", 3), ("G", 2), ("D", 1), ("U", 0)])
def test_rreq_each_flag_bit(flag, bit):
    assert bytes(RREQ(flags=flag))[1:3] == struct.pack("!H", (1 << bit) << 11)


def test_rrep_round_trip_with_prefix_and_flags():
    # type | R A (2 bits) reserved (9) prefix size (5) | hop count
    raw = struct.pack("!BHB", 2, (0b10 << 14) | 24, 2) + ip("198.51.100.0") + \
        struct.pack("!I", 5) + ip("10.0.0.1") + struct.pack("!I", 6000)
    m = parse_message(raw)
    assert isinstance(m, RREP) and m.flags.R and not m.flags.A
    assert (m.prefix_sz, m.hop_count, m.dst, m.dst_seq, m.orig, m.lifetime) == \
        (24, 2, "198.51.100.0", 5, "10.0.0.1", 6000)
    assert bytes(RREP(flags="R", prefix_sz=24, hop_count=2, dst="198.51.100.0", dst_seq=5,
                      orig="10.0.0.1", lifetime=6000)) == raw
    assert bytes(RREP(flags="A"))[1:3] == struct.pack("!H", 1 << 14)


def test_rerr_round_trip_with_two_destinations():
    raw = struct.pack("!BHB", 3, 1 << 15, 2) + ip("10.0.0.5") + struct.pack("!I", 9) + \
        ip("10.0.0.6") + struct.pack("!I", 0)
    m = parse_message(raw)
    assert isinstance(m, RERR) and m.flags.N and m.dest_count == 2
    assert [(u.dst, u.seq) for u in m.unreachable] == [("10.0.0.5", 9), ("10.0.0.6", 0)]
    built = RERR(flags="N", unreachable=[Unreachable(dst="10.0.0.5", seq=9),
                                         Unreachable(dst="10.0.0.6", seq=0)])
    assert bytes(built) == raw


def test_rrep_ack():
    assert bytes(RREPAck()) == b"\x04\x00"
    assert isinstance(parse_message(b"\x04\x00"), RREPAck)


def test_extensions_tlv_layout():
    m = RREQ(dst="10.0.0.2", orig="10.0.0.1", extensions=[
        WeightExt(weight=300),
        HandoverExt(kind=HandoverKind.LOCATE, mn_seq=7, addr="10.0.0.3"),
        GratuitousExt(),
    ])
    raw = bytes(m)
    tail = raw[24:]
    assert tail == bytes([129, 4]) + struct.pack("!I", 300) + \
        bytes([128, 10, HandoverKind.LOCATE, 0]) + struct.pack("!I", 7) + ip("10.0.0.3") + \
        bytes([130, 1, 0])  # one reserved byte: Wireshark takes Length 0 as malformed
    back = parse_message(raw)
    assert back.ext(WeightExt).weight == 300
    h = back.ext(HandoverExt)
    assert (h.kind, h.mn_seq, h.addr) == (HandoverKind.LOCATE, 7, "10.0.0.3")
    assert back.ext(GratuitousExt) is not None


def test_unknown_extension_is_kept_opaque_and_can_be_registered():
    raw = bytes(RREP(dst="10.0.0.1")) + bytes([200, 3]) + b"abc"
    m = parse_message(raw)
    (e,) = m.extensions
    assert type(e) is AODVExtension and e.type == 200 and e.data == b"abc"

    class AuthExt(AODVExtension):
        pass

    register_extension(201, AuthExt)
    try:
        m = parse_message(bytes(RREP(dst="10.0.0.1")) + bytes([201, 2]) + b"xy")
        assert isinstance(m.extensions[0], AuthExt)
    finally:
        from testbed.aodv import messages
        messages._EXTENSIONS.pop(201)


def test_bound_to_udp_654():
    pkt = IP(bytes(IP(src="10.0.0.1", dst="255.255.255.255") / UDP(sport=654, dport=654) /
                   hello("10.0.0.1", 4, 2000)))
    m = pkt[RREP]
    assert (m.dst, m.orig, m.dst_seq, m.hop_count, m.lifetime) == ("10.0.0.1", "10.0.0.1", 4, 0,
                                                                    2000)


@pytest.mark.parametrize("raw,why", [
    (b"", "empty"),
    (b"\x09" + bytes(23), "unknown type"),
    (bytes(RREQ())[:23], "truncated RREQ"),
    (bytes(RREP())[:10], "truncated RREP"),
    (b"\x03\x00\x00\x00", "RERR with DestCount 0"),
    (b"\x03\x00\x00\x02" + bytes(8), "RERR shorter than its count"),
    (b"\x04", "truncated RREP-ACK"),
    (bytes(RREQ()) + b"\x81", "half an extension header"),
    (bytes(RREQ()) + b"\x81\x04\x00", "extension longer than the data"),
    (bytes(RREQ()) + b"\x81\x02\x00\x00", "weight extension with the wrong length"),
    (bytes(RREQ()) + b"\x80\x0a" + bytes(9), "truncated handover extension"),
])
def test_malformed_is_refused(raw, why):
    with pytest.raises(MalformedMessage):
        parse_message(raw)


def test_random_garbage_never_raises_anything_but_malformed():
    import random
    rnd = random.Random(654)
    for _ in range(3000):
        n = rnd.randrange(0, 60)
        raw = bytes([rnd.choice([1, 2, 3, 4, rnd.randrange(256)])]) + \
            bytes(rnd.randrange(256) for _ in range(n))
        try:
            parse_message(raw)
        except MalformedMessage:
            pass
