"""IP-IP from sources that are no peer: dropped and counted, with bounded state (issue 11 §4).

A spoofing host can use a new outer source per packet; the userspace endpoint counts the
first UNKNOWN_SOURCES_KEPT sources one by one and the rest in one total."""

from __future__ import annotations

import ipaddress
import struct
import threading

from testbed.tunnel import ipip


class FeedSocket:
    """recv_into from a list of packets, then BlockingIOError (as a drained raw socket)."""

    def __init__(self, packets: list[bytes]) -> None:
        self.packets = packets

    def recv_into(self, buf: bytearray) -> int:
        if not self.packets:
            raise BlockingIOError
        p = self.packets.pop()
        buf[: len(p)] = p
        return len(p)


def outer(src: int) -> bytes:
    """A 40-byte IP-IP packet from ``src`` (inner header zeros: never read for unknown peers)."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, ipip.IPPROTO_IPIP, 0,
                      ipaddress.IPv4Address(src).packed, b"\xc6\x33\x64\x01")
    return hdr + bytes(20)


def endpoint() -> ipip.IpipEndpoint:
    ep = ipip.IpipEndpoint.__new__(ipip.IpipEndpoint)   # no sockets or devices: the drop path only
    ep._by_key, ep.unknown_peer_dropped, ep.malformed_outer_dropped = {}, 0, 0
    ep.unknown_sources, ep.unknown_sources_untracked = {}, 0
    ep._lock = threading.Lock()
    return ep


def drain(ep: ipip.IpipEndpoint, packets: list[bytes]) -> None:
    ep._sock = FeedSocket(packets)
    buf = bytearray(2048)
    while ep._sock.packets:
        ep._drain_socket(buf, memoryview(buf))


def test_a_flood_of_spoofed_sources_keeps_bounded_state() -> None:
    ep = endpoint()
    n = 20_000
    drain(ep, [outer(0xCB007100 + i) for i in range(n)])           # 203.0.113.0 upwards, all new
    assert ep.unknown_peer_dropped == n                              # every packet dropped and counted
    assert len(ep.unknown_sources) == ipip.UNKNOWN_SOURCES_KEPT      # the table stops growing
    assert ep.unknown_sources_untracked == n - ipip.UNKNOWN_SOURCES_KEPT


def test_known_unknown_sources_are_still_counted_one_by_one() -> None:
    ep = endpoint()
    drain(ep, [outer(0xCB007101)] * 3 + [outer(0xCB007102)])
    assert ep.unknown_sources == {"203.0.113.1": 3, "203.0.113.2": 1}
    assert ep.unknown_sources_untracked == 0
