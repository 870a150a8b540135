"""The FA's reverse tunnel fits a visitor's packet to the tunnel MTU (RFC 2003 3.1, RFC 4459 3).

A DF-clear packet above 1480 bytes is fragmented before encapsulation (no outer fragments,
which a tc-BPF decapsulator at the HA cannot take); a DF packet or one that fits is sent as
it is. The fragments put together give the original packet back.
"""
from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from scapy.layers.inet import IP, UDP

from testbed.mip.fa import ForeignAgent
from testbed.tunnel.ipip import TUNNEL_MTU


def fit(pkt: bytes) -> tuple[list[bytes], Counter]:
    fa = SimpleNamespace(counters=Counter())
    return ForeignAgent._fit_tunnel(fa, pkt), fa.counters


def big(df: bool) -> bytes:
    return bytes(IP(src="10.0.0.5", dst="10.0.0.10", id=9, flags="DF" if df else 0) / UDP(sport=7, dport=5000)
                 / (b"B" * 1472))


def test_df_clear_packet_is_fragmented_inside():
    parts, c = fit(big(df=False))
    assert len(parts) == 2 and all(len(p) <= TUNNEL_MTU for p in parts) and c["reverse_fragmented"] == 1
    first, last = IP(parts[0]), IP(parts[1])
    assert first.flags.MF and not last.flags.MF and first.id == last.id == 9
    assert bytes(first.payload) + bytes(last.payload) == big(df=False)[20:]   # nothing lost or added


def test_df_set_or_small_packet_goes_as_it_is():
    for pkt in (big(df=True), bytes(IP(src="10.0.0.5", dst="10.0.0.10") / UDP() / b"x")):
        parts, c = fit(pkt)
        assert parts == [pkt] and c["reverse_fragmented"] == 0
