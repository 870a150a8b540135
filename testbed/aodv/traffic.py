"""Watches datagrams crossing this node (AF_PACKET) so AODV knows which routes are in use.

Why: RFC 3561 6.2 refreshes a route each time it forwards a datagram, and the patent's
long-session and handover logic need "datagrams still flow" / "active peers". The kernel
forwards without telling a user-space agent, so the agent watches a copy of every IPv4
packet (headers only are parsed). AODV control traffic (UDP 654) is ignored.
The counters also give scenarios "packets forwarded" per destination.
"""
from __future__ import annotations

import socket
import struct
import time

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003  # outgoing packets are only shown to ETH_P_ALL taps
PACKET_OUTGOING = 4
PACKET_HOST = 0


class TrafficMonitor:
    def __init__(self, local_addrs: set[str], skip_ifaces: set[str],
                 max_tracked: int = 4096) -> None:
        """max_tracked: entries per table (to_dst, from_src, forwarded). Addresses come
        from any datagram crossing the node, so spoofed ones must not grow them unbounded;
        datagrams with addresses beyond it are counted in `untracked`."""
        self.max_tracked = max_tracked
        self.local_addrs = local_addrs
        self.skip_ifaces = skip_ifaces
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        # destination/source address -> last time a datagram to/from it was seen
        self.to_dst: dict[str, float] = {}
        self.from_src: dict[str, float] = {}
        self.forwarded: dict[str, int] = {}
        self.forwarded_total = 0
        self.delivered_total = 0
        self.sent_total = 0
        #: datagrams whose address was not tracked because a table was full
        self.untracked = 0

    def _mark(self, table: dict, key: str, value) -> None:
        if key in table or len(table) < self.max_tracked:
            table[key] = value
        else:
            self.untracked += 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self, limit: int = 2000) -> None:
        now = time.monotonic()
        for _ in range(limit):
            try:
                data, addr = self.sock.recvfrom(64)
            except (BlockingIOError, InterruptedError):
                return
            ifname, proto, pkttype = addr[0], addr[1], addr[2]
            if proto != ETH_P_IP or ifname in self.skip_ifaces or len(data) < 20 \
                    or data[0] >> 4 != 4:
                continue
            proto = data[9]
            ihl = (data[0] & 0x0F) * 4
            if proto == 17 and len(data) >= ihl + 4:
                sport, dport = struct.unpack_from("!HH", data, ihl)
                if sport == 654 or dport == 654:
                    continue
            src = socket.inet_ntoa(data[12:16])
            dst = socket.inet_ntoa(data[16:20])
            if pkttype == PACKET_OUTGOING:
                self._mark(self.to_dst, dst, now)
                if src in self.local_addrs:
                    self.sent_total += 1
                continue
            if pkttype != PACKET_HOST:
                continue
            self._mark(self.from_src, src, now)
            if dst in self.local_addrs:
                self.delivered_total += 1
            else:
                self._mark(self.to_dst, dst, now)
                self._mark(self.forwarded, dst, self.forwarded.get(dst, 0) + 1)
                self.forwarded_total += 1

    def close(self) -> None:
        self.sock.close()
