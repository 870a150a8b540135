"""The AODV control socket: UDP 654, with the receiving interface and IP TTL of each message.

Why IP_PKTINFO: interfaces come and go (a mobile node's link is re-created on a move), so
one socket bound to 0.0.0.0 serves them all; the interface is chosen per message
(limited broadcast 255.255.255.255 needs it) and learned per received message.
Why IP_RECVTTL: the RREQ's remaining TTL is the IP TTL it arrived with (RFC 3561 6.5).
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .messages import AODV_PORT

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = socket.IP_TTL
BROADCAST = "255.255.255.255"


@dataclass
class Received:
    data: bytes
    src: str
    dst: str
    ifindex: int
    ttl: int


class ControlSocket:
    def __init__(self, port: int = AODV_PORT) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        self.sock = s
        self.port = port

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> Received | None:
        try:
            data, anc, _flags, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(12) * 2 + 64)
        except (BlockingIOError, InterruptedError):
            return None
        ifindex, dst, ttl = 0, "0.0.0.0", 0
        for level, ctype, cdata in anc:
            if level == socket.IPPROTO_IP and ctype == IP_PKTINFO and len(cdata) >= 12:
                ifindex, _spec, daddr = struct.unpack("i4s4s", cdata[:12])
                dst = socket.inet_ntoa(daddr)
            elif level == socket.IPPROTO_IP and ctype == IP_TTL and len(cdata) >= 4:
                ttl = struct.unpack("i", cdata[:4])[0]
        return Received(data, addr[0], dst, ifindex, ttl)

    def send(self, data: bytes, dst: str, ttl: int, ifindex: int | None, src: str | None) -> bool:
        """Send on a given interface (or by routing if ifindex is None)."""
        self.sock.setsockopt(socket.IPPROTO_IP, IP_TTL, max(1, min(255, ttl)))
        anc = []
        if ifindex:
            spec = socket.inet_aton(src) if src else b"\0\0\0\0"
            anc = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("i4s4s", ifindex, spec, b"\0\0\0\0"))]
        try:
            self.sock.sendmsg([data], anc, 0, (dst, self.port))
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()
