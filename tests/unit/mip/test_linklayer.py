"""Packet helpers the FA relies on: built packets parse, partial checksums get completed."""
from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP

from testbed.mip.linklayer import complete_l4_checksum, ip_packet, parse_ipv4, udp_packet


def test_udp_packet_is_what_scapy_builds():
    ours = udp_packet("203.0.113.1", "10.0.0.5", 434, 1234, b"reply", ttl=64)
    pkt = IP(ours)
    assert pkt[UDP].sport == 434 and pkt[UDP].dport == 1234 and bytes(pkt[UDP].payload) == b"reply"
    ref = IP(bytes(IP(src="203.0.113.1", dst="10.0.0.5", flags="DF", id=0) / UDP(sport=434, dport=1234) / b"reply"))
    assert pkt[UDP].chksum == ref[UDP].chksum and pkt.chksum == ref.chksum


def test_partial_tcp_and_udp_checksums_are_completed():
    for l4 in (TCP(sport=40000, dport=5001, flags="PA") / (b"x" * 33), UDP(sport=7, dport=9) / b"abc"):
        good = bytes(IP(src="10.0.0.5", dst="10.0.0.10") / l4)
        off = 20 + (16 if TCP in IP(good) else 6)
        partial = bytearray(good)
        partial[off:off + 2] = b"\x12\x34"   # what a veth peer leaves for offload
        assert complete_l4_checksum(bytes(partial)) == good


def test_fragments_and_other_protocols_are_left_alone():
    icmp = ip_packet("10.0.0.5", "10.0.0.10", 1, b"\x08\x00\x00\x00")
    assert complete_l4_checksum(icmp) == icmp
    frag = bytearray(bytes(IP(src="10.0.0.5", dst="10.0.0.10", flags="MF") / UDP() / b"abc"))
    assert complete_l4_checksum(bytes(frag)) == bytes(frag)


def test_parse_ipv4_rejects_nonsense():
    assert parse_ipv4(b"") is None and parse_ipv4(b"\x60" + bytes(39)) is None
    assert parse_ipv4(b"\x45\x00\x00\x10" + bytes(16)) is None   # total length < header
    p = parse_ipv4(ip_packet("192.0.2.1", "192.0.2.2", 4, b"inner"))
    assert p == (4, "192.0.2.1", "192.0.2.2", 64, b"inner")
