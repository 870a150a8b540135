"""Datagrams waiting for a route: capture through a TUN device, queue, re-inject, or refuse.

How packets get here: the agent adds a low-priority route for each managed prefix pointing
at the TUN device (`aodv0`). Host routes installed by AODV are more specific, so only
datagrams to destinations *without* a valid AODV route fall through to the TUN, where the
agent reads them (like AODV-UU's netfilter queue, with no extra kernel module).
Once a route exists they are re-sent through a raw IP socket (IP_HDRINCL: the original
header is kept, the kernel routes them by the new host route). When discovery fails they
are dropped and the sender gets ICMP host unreachable (RFC 3561 6.3).
"""
from __future__ import annotations

import collections
import fcntl
import logging
import os
import socket
import struct

log = logging.getLogger("aodv.buffer")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class Tun:
    """A TUN device without packet information header: reads and writes raw IPv4."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, 65535)
        except BlockingIOError:
            return None

    def close(self) -> None:
        os.close(self.fd)


def ip_header(pkt: bytes) -> tuple[str, str, int] | None:
    """(src, dst, protocol) of an IPv4 packet, or None if it is not one."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    return socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20]), pkt[9]


def icmp_host_unreachable(original: bytes, src: str) -> bytes:
    """ICMP type 3 code 1 quoting the original header + 8 bytes (RFC 792)."""
    from scapy.layers.inet import ICMP, IP

    orig_src = socket.inet_ntoa(original[12:16])
    ihl = (original[0] & 0x0F) * 4
    quote = original[: ihl + 8]
    return bytes(IP(src=src, dst=orig_src, ttl=64) / ICMP(type=3, code=1) / quote)


class Reinjector:
    """Raw socket that hands complete IPv4 packets back to the kernel's routing."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(self, pkt: bytes) -> bool:
        hdr = ip_header(pkt)
        if hdr is None:
            return False
        try:
            self.sock.sendto(pkt, (hdr[1], 0))
            return True
        except OSError as exc:
            log.debug("re-inject to %s failed: %s", hdr[1], exc)
            return False

    def close(self) -> None:
        self.sock.close()


class PacketBuffer:
    """Per-destination FIFO queues with a per-destination and a total bound."""

    def __init__(self, max_per_dest: int, max_total: int) -> None:
        self.max_per_dest = max_per_dest
        self.max_total = max_total
        self.queues: dict[str, collections.deque[bytes]] = {}
        self.total = 0
        self.buffered = 0  # counters, cumulative
        self.dropped = 0

    def add(self, dst: str, pkt: bytes) -> bool:
        q = self.queues.get(dst)
        if (q is not None and len(q) >= self.max_per_dest) or self.total >= self.max_total:
            self.dropped += 1
            return False  # a refused datagram leaves no (empty) queue behind
        if q is None:
            q = self.queues[dst] = collections.deque()
        q.append(pkt)
        self.total += 1
        self.buffered += 1
        return True

    def pop(self, dst: str) -> list[bytes]:
        q = self.queues.pop(dst, None)
        if not q:
            return []
        self.total -= len(q)
        return list(q)

    def drop(self, dst: str) -> list[bytes]:
        pkts = self.pop(dst)
        self.dropped += len(pkts)
        return pkts

    def destinations(self) -> list[str]:
        return list(self.queues)

    def sizes(self) -> dict[str, int]:
        return {d: len(q) for d, q in self.queues.items()}
