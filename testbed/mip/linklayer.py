"""Link-layer I/O for mobility agents: AF_PACKET sockets, MAC addresses, gratuitous ARP.

Why the link layer: a foreign agent must reach a visitor by its MAC address, never by ARP
for its home address (RFC 5944 4.6) - and two visitors with the same home address from
different M-VPNs may share the FA's link (claim 18), where ARP could not tell them apart.
Agent advertisements and solicitations also go out as frames, so they work on a link
where the agent or the mobile node has no address of its own yet.
"""
from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_CSUMNOTREADY = 0x8
AUXDATA = struct.Struct("IIIHHHH")
SIOCGIFHWADDR = 0x8927
SO_ATTACH_FILTER = 26
BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac_of(ifname: str) -> str:
    """MAC address of `ifname` in the calling thread's network namespace."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        info = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    finally:
        s.close()
    return ":".join(f"{b:02x}" for b in info[18:24])


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


class PacketSocket:
    """An AF_PACKET socket on one interface: IPv4 frames in, Ethernet frames out."""

    def __init__(self, ifname: str, proto: int = ETH_P_IP) -> None:
        self.ifname = ifname
        self.mac = mac_of(ifname)
        self._mac_b = mac_bytes(self.mac)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
        self.sock.bind((ifname, proto))
        self.sock.setblocking(False)
        # tells us when a frame's TCP/UDP checksum is still partial (offloaded by a veth
        # peer): such a packet must be completed before we forward it in a tunnel
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> tuple[bytes, str] | None:
        """(IPv4 packet, source MAC) of one received frame, None for our own/none left.

        A packet whose transport checksum the sender left to offload gets it completed
        here, so whatever we forward is valid on the wire.
        """
        try:
            frame, anc, _flags, addr = self.sock.recvmsg(65535, 64)
        except (BlockingIOError, InterruptedError):
            return None
        if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20:
            return None
        if struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
            return None
        pkt = frame[14:]
        for level, kind, data in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUXDATA.size:
                if AUXDATA.unpack_from(data)[0] & TP_STATUS_CSUMNOTREADY:
                    pkt = complete_l4_checksum(pkt)
        return pkt, mac_str(frame[6:12])

    def send_ip(self, packet: bytes, dst_mac: str = BROADCAST) -> None:
        self.sock.send(mac_bytes(dst_mac) + self._mac_b + struct.pack("!H", ETH_P_IP) + packet)

    def gratuitous_arp(self, ip: str, mac: str | None = None) -> None:
        """Broadcast a gratuitous ARP announcing ip -> mac (our own MAC if not given).

        Sent twice, as a request (RFC 5227 announcement) and as a reply whose target
        hardware address equals the sender's: only in these forms does Linux treat it as
        gratuitous and override a fresh cache entry (else its 1 s locktime ignores it, and
        a correspondent keeps sending to the MN's old MAC until its entry times out).
        """
        hw = mac_bytes(mac or self.mac)
        ipb = socket.inet_aton(ip)
        for op, tha in ((1, b"\0" * 6), (2, hw)):
            arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, hw, ipb, tha, ipb)
            self.sock.send(b"\xff" * 6 + hw + struct.pack("!H", ETH_P_ARP) + arp)

    def only_icmp_type(self, icmp_type: int) -> None:
        """Let the kernel pass only IPv4 ICMP messages of one type (classic BPF).

        Why: an agent that only needs advertisements or solicitations must not copy
        every data packet of a busy link into Python.
        """
        self._filter(1, (0x50, 0, 0, 14), icmp_type)            # A = ICMP type

    def only_udp_port(self, port: int) -> None:
        """Let the kernel pass only IPv4 UDP datagrams to destination `port` (classic BPF),
        e.g. DHCP replies to the client port 68 (testbed.mip.dhcp)."""
        self._filter(17, (0x48, 0, 0, 16), port)                # A = UDP destination port

    def _filter(self, proto: int, load: tuple[int, int, int, int], value: int) -> None:
        """IPv4, protocol `proto`, first fragment, then `load` (relative to x = IHL)
        must equal `value`; everything else is dropped in the kernel."""
        prog = [(0x28, 0, 0, 12), (0x15, 0, 8, ETH_P_IP),      # ethertype == IPv4
                (0x30, 0, 0, 23), (0x15, 0, 6, proto),           # IP protocol
                (0x28, 0, 0, 20), (0x45, 4, 0, 0x1FFF),          # not a later fragment
                (0xB1, 0, 0, 14), load,                          # x = IHL; A = the field
                (0x15, 0, 1, value), (0x6, 0, 0, 0x40000), (0x6, 0, 0, 0)]
        buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
        self._bpf = buf  # keep alive while attached
        fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def close(self) -> None:
        self.sock.close()


def ipv4_checksum(hdr: bytes) -> int:
    if len(hdr) % 2:
        hdr += b"\0"
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ip_packet(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    """A minimal IPv4 packet (no options) around `payload`."""
    total = 20 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    ck = ipv4_checksum(hdr)
    return hdr[:10] + struct.pack("!H", ck) + hdr[12:] + payload


def udp_packet(src: str, dst: str, sport: int, dport: int, data: bytes, ttl: int = 64) -> bytes:
    """IPv4/UDP with a correct UDP checksum."""
    length = 8 + len(data)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, length)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + data
    ck = ipv4_checksum(pseudo + udp) or 0xFFFF
    return ip_packet(src, dst, 17, udp[:6] + struct.pack("!H", ck) + udp[8:], ttl)


def parse_ipv4(pkt: bytes) -> tuple[int, str, str, int, bytes] | None:
    """(protocol, src, dst, ttl, payload) of a sane IPv4 packet, else None."""
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 15) * 4
    total = struct.unpack_from("!H", pkt, 2)[0]
    if ihl < 20 or total < ihl or total > len(pkt):
        return None
    return (pkt[9], socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20]), pkt[8],
            pkt[ihl:total])


def complete_l4_checksum(pkt: bytes) -> bytes:
    """Recompute the TCP or UDP checksum of an unfragmented IPv4 packet."""
    if len(pkt) < 20:
        return pkt
    ihl = (pkt[0] & 15) * 4
    total = struct.unpack_from("!H", pkt, 2)[0]
    proto = pkt[9]
    off = {6: 16, 17: 6}.get(proto)
    if off is None or struct.unpack_from("!H", pkt, 6)[0] & 0x3FFF or total > len(pkt) or total < ihl + off + 2:
        return pkt
    l4 = bytearray(pkt[ihl:total])
    l4[off:off + 2] = b"\0\0"
    pseudo = pkt[12:20] + struct.pack("!BBH", 0, proto, len(l4))
    ck = ipv4_checksum(pseudo + bytes(l4))
    if proto == 17 and ck == 0:
        ck = 0xFFFF
    l4[off:off + 2] = struct.pack("!H", ck)
    return pkt[:ihl] + bytes(l4) + pkt[total:]
