"""IP-in-IP (protocol 4) tunnel endpoint with one interface per peer.

Why one interface per peer: the SG's workgroup filter and its routing need to know which
realm a decapsulated packet came from, and the only trustworthy realm index is the outer
source address (claims 4, 6). Terminating every peer on its own device turns that outer
source into the ingress interface name, which nftables (`iifname`) and policy routing
understand without any packet inspection of ours.

Three data planes behind the same API (modes.py chooses; "auto" takes the fastest that runs):
- kernel: an `ipip` device per peer (`local L remote R`), used when the kernel has the
  module (probe by creating one). Fast path; counters read from the device statistics.
- bpf: tc BPF programs (tcbpf.py, bpf/ipip_tc.bpf.c) with a veth pair per peer, for
  kernels without ipip where the node may load BPF. Counters read from the BPF maps.
- userspace: one raw socket (protocol 4) bound to the local public address, one TUN
  device per peer. Received packets are decapsulated by outer source address and written
  to that peer's TUN; packets read from a TUN get an outer header (built by the kernel,
  we send without IP_HDRINCL) towards the peer. Everything else is dropped and counted.

Path MTU (RFC 2003 section 3.1) in every mode: the peer device's MTU (1480) is the tunnel
MTU, so the kernel answers larger DF packets routed into it with ICMP "fragmentation
needed". The userspace plane also copies the inner DF bit to the outer header (a second
raw socket with IP_PMTUDISC_DO carries DF packets) and, when a DF packet does not fit the
path to the peer, drops it and answers ICMP type 3 code 4 with the tunnel MTU (path MTU
- 20) itself; the bpf plane copies DF in the program; a kernel ipip device sets DF itself.

The endpoint is generic (also meant for Mobile IP's HA->CoA tunnels): peers are just
names and addresses, added or removed at runtime.
"""
from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import select
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Callable

from testbed.tunnel import tcbpf
from testbed.tunnel.modes import MODES, ModeChoice, select_mode
from testbed.common.tun import TunError, open_tun, run_ip

log = logging.getLogger(__name__)

IPPROTO_IPIP = 4
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_DO = 2
IP_MTU = 14
SO_ATTACH_FILTER = 26
IP_DF = 0x40          # in the high byte of the flags/fragment offset field
OUTER_LEN = 20
#: the tunnel MTU over a 1500-byte Ethernet path: less the outer IPv4 header (RFC 2003 3.1)
TUNNEL_MTU = 1500 - OUTER_LEN
#: Distinct unknown outer sources counted one by one in the status; the rest only in a total.
UNKNOWN_SOURCES_KEPT = 256
ICMP_RATE = 50        # "fragmentation needed" answers per peer and second (RFC 1812 4.3.2.8)
MIN_MTU = 68          # RFC 791: every IPv4 module must forward 68 bytes unfragmented
BUF_SIZE = 65536
SOCK_BUF = 4 << 20
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
BURST = 64  # packets drained from one fd per wake-up, so one busy peer cannot starve others


@dataclass
class PeerCounters:
    """Per-peer traffic counters (names are what the status JSON shows)."""
    packets_in: int = 0       # decapsulated and delivered to the peer's interface
    bytes_in: int = 0         # inner bytes delivered
    packets_out: int = 0      # encapsulated and sent to the peer
    bytes_out: int = 0        # inner bytes sent
    malformed_dropped: int = 0  # from this peer, but inner packet not a sane IPv4 packet
    non_ipv4_dropped: int = 0   # read from the interface but not IPv4 (cannot go in IP-IP)
    send_errors: int = 0        # kernel refused the outer packet (no route, buffer full)
    write_errors: int = 0       # interface refused the inner packet (down, moved away)
    frag_needed_sent: int = 0   # userspace: DF packets too big for the path, ICMP answered
    frag_needed_suppressed: int = 0  # userspace: the same, ICMP not sent (rate limit, ICMP error)


@dataclass
class Peer:
    name: str
    addr: str
    ifname: str
    netns: str | None = None
    fd: int = -1
    key: bytes = b""
    counters: PeerCounters = field(default_factory=PeerCounters)
    mtu_sock: socket.socket | None = None  # userspace: connected UDP socket to read the path MTU
    icmp_window: tuple[int, int] = (0, 0)  # userspace: (second, ICMP answers sent in it)


_kernel_ipip: dict[str, str | None] = {}   # the probe's answer, per process: the kernel keeps it


def kernel_ipip_unavailable(local: str) -> str | None:
    """None if this kernel can create an `ipip` device (probe: create and delete one), else
    `ip`'s reason. Probed once per process (a mobile node makes an endpoint per move)."""
    if "answer" not in _kernel_ipip:
        _kernel_ipip["answer"] = _probe_kernel_ipip(local)
    return _kernel_ipip["answer"]


def _probe_kernel_ipip(local: str) -> str | None:
    probe = f"tbtipp{os.getpid() % 100000}"
    proc = subprocess.run(["ip", "link", "add", "name", probe, "type", "ipip", "local", local,
                           "remote", "192.0.2.254"], capture_output=True, text=True)
    if proc.returncode == 0:
        subprocess.run(["ip", "link", "del", probe], capture_output=True)
        return None
    return f"no kernel ipip: {proc.stderr.strip() or 'ip link add failed'}"


def kernel_ipip_available(local: str) -> bool:
    """True if this kernel can create an `ipip` device."""
    return kernel_ipip_unavailable(local) is None


def userspace_unavailable() -> str | None:
    """None if a TUN device can be opened (the userspace plane's only need besides NET_RAW)."""
    return None if os.path.exists("/dev/net/tun") else "no /dev/net/tun"


def choose_mode(requested: str, local: str) -> ModeChoice:
    """The data plane for this node (modes.select_mode with the real probes)."""
    return select_mode(requested, {"kernel": lambda: kernel_ipip_unavailable(local),
                                   "bpf": lambda: tcbpf.bpf_unavailable(local),
                                   "userspace": userspace_unavailable})


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of `data` (odd length padded), as a 16-bit int."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


ICMP_ERRORS = (3, 4, 5, 11, 12)  # RFC 1812 4.3.2.7: never answer an ICMP error with one


def frag_needed(src: bytes, inner: bytes | memoryview, mtu: int) -> bytes | None:
    """ICMP Destination Unreachable, code 4 "fragmentation needed and DF set" (RFC 792, next-hop
    MTU field of RFC 1191) from `src` (4 bytes) to the source of IPv4 packet `inner`, quoting its
    header and first 8 data bytes. `mtu` (bytes) is clamped to 68..65535.

    Returns None where RFC 1812 4.3.2.7 forbids an answer: `inner` is an ICMP error or a
    non-first fragment, or is shorter than its own header.
    """
    ihl = (inner[0] & 0x0F) * 4
    if len(inner) < ihl or ihl < 20:
        return None
    if ((inner[6] & 0x1F) << 8 | inner[7]) != 0:
        return None
    if inner[9] == 1 and len(inner) > ihl and inner[ihl] in ICMP_ERRORS:
        return None
    mtu = max(MIN_MTU, min(mtu, 0xFFFF))
    quote = bytes(inner[:ihl + 8])
    icmp = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quote
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(icmp), 0, 0, 64, 1, 0,
                      src, bytes(inner[12:16]))
    return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:] + icmp


def _drop_all_receive(sock: socket.socket) -> None:
    """Attach the classic BPF filter `ret #0`: a send-only raw socket queues no copies."""
    insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
    prog = struct.pack("HL", 1, ctypes.addressof(insn))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def _valid_inner(buf: bytearray | memoryview, start: int, end: int) -> int:
    """Length of the IPv4 packet at buf[start:end], or 0 if it is not a sane IPv4 header.

    Sane: at least 20 bytes, version 4, IHL >= 5 and within the data, total length covering
    the header and not beyond the data (trailing bytes after total length are trimmed).
    """
    avail = end - start
    if avail < 20:
        return 0
    b0 = buf[start]
    ihl = (b0 & 0x0F) * 4
    if b0 >> 4 != 4 or ihl < 20:
        return 0
    total = (buf[start + 2] << 8) | buf[start + 3]
    if total < ihl or total > avail:
        return 0
    return total


class IpipEndpoint:
    """An IP-IP endpoint at `local` with one interface per peer.

    peers: {name: peer public address}. Interface names default to `ifname_prefix + name`
    (at most 15 characters). `mode` is "auto" (kernel if available), "kernel" or "userspace".
    `on_new_peer(peer)` is called after a peer's interface exists (e.g. to move it to a
    namespace and configure addresses); the agent owns addressing and routing.
    """

    def __init__(self, local: str, peers: dict[str, str] | None = None, *,
                 ifname_prefix: str = "ipip-", mode: str = "auto",
                 ifnames: dict[str, str] | None = None,
                 on_new_peer: Callable[[Peer], None] | None = None,
                 threads: int = 1) -> None:
        self.local = str(IPv4Address(local))
        self.mode_choice = choose_mode(mode, self.local)
        self.mode = self.mode_choice.mode
        if self.mode_choice.unavailable:
            log.info("IP-IP mode %s (requested %s; not available: %s)", self.mode, mode,
                     "; ".join(f"{m}: {w}" for m, w in self.mode_choice.unavailable.items()))
        self.ifname_prefix = ifname_prefix
        self.on_new_peer = on_new_peer
        if threads not in (1, 2):
            raise ValueError(f"threads: {threads} is not 1 or 2")
        self.threads = threads
        self.peers: dict[str, Peer] = {}
        self._by_key: dict[bytes, Peer] = {}
        self._by_fd: dict[int, Peer] = {}
        self.unknown_peer_dropped = 0
        # Per outer source, how many IP-IP packets from no known peer were dropped: the
        # evidence a reviewer reads. Any host can send IP-IP from any source, so the table
        # keeps the first UNKNOWN_SOURCES_KEPT sources and only counts the rest.
        self.unknown_sources: dict[str, int] = {}
        self.unknown_sources_untracked = 0
        self.malformed_outer_dropped = 0
        self._lock = threading.Lock()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._sock_df: socket.socket | None = None
        self._ep: select.epoll | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._bpf: tcbpf.BpfDataPlane | None = None
        if self.mode == "bpf":
            try:
                self._bpf = tcbpf.BpfDataPlane(self.local)
            except tcbpf.BpfError as exc:
                # another endpoint of this process took the bpf plane since the probe (e.g.
                # two virtual HAs starting at once): "auto" goes on to userspace
                if mode != "auto":
                    raise
                self.mode_choice.unavailable["bpf"] = str(exc)
                self.mode = self.mode_choice.mode = "userspace"
                log.info("IP-IP mode userspace (bpf taken meanwhile: %s)", exc)
        if self.mode == "userspace":
            self._open_socket()
        self.reassembled_in = 0   # bpf: packets that came in outer fragments (slow path)
        if self.mode == "bpf":
            # outer fragments pass the decap program to the stack, which reassembles them
            # and hands them to raw sockets (no ipip module): read them back here
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
            self._sock.bind((self.local, 0))
            self._sock.setblocking(False)
        for name, addr in (peers or {}).items():
            self.add_peer(name, addr, ifname=(ifnames or {}).get(name))

    # ---- setup -------------------------------------------------------------------------
    def _open_socket(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
        # Large buffers absorb bursts while Python is busy with the other direction; the
        # FORCE variants (CAP_NET_ADMIN) pass over net.core.rmem_max, else fall back.
        for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, SOCK_BUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, plain, SOCK_BUF)
        # Inner DF clear: the kernel may fragment the outer packet (outer DF clear too).
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        sock.bind((self.local, 0))
        sock.setblocking(False)
        self._sock = sock
        # Inner DF set: this socket sets DF on the outer header and refuses (EMSGSIZE) what
        # exceeds the path MTU (RFC 2003 3.1). Send-only: it must not queue received copies.
        df = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
        _drop_all_receive(df)
        try:
            df.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCK_BUF)
        except OSError:
            df.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUF)
        df.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        df.bind((self.local, 0))
        df.setblocking(False)
        self._sock_df = df
        self._ep = select.epoll()
        self._ep.register(sock.fileno(), select.EPOLLIN)
        self._ep.register(self._wake_r, select.EPOLLIN)

    def add_peer(self, name: str, addr: str, ifname: str | None = None) -> Peer:
        """Create the peer's interface and start carrying its traffic."""
        addr = str(IPv4Address(addr))
        ifname = ifname or f"{self.ifname_prefix}{name}"
        if len(ifname) > 15:
            raise ValueError(f"peer {name}: interface name {ifname!r} longer than 15 characters")
        with self._lock:
            if name in self.peers:
                raise ValueError(f"peer {name}: already present")
            if any(p.addr == addr for p in self.peers.values()):
                raise ValueError(f"peer {name}: address {addr} already used by another peer")
            peer = Peer(name=name, addr=addr, ifname=ifname, key=IPv4Address(addr).packed)
            if self.mode == "kernel":
                run_ip(["link", "add", "name", ifname, "type", "ipip", "local", self.local,
                        "remote", addr])
            elif self.mode == "bpf":
                assert self._bpf is not None
                self._bpf.add_peer(ifname, addr)
            else:
                peer.fd = open_tun(ifname)
            self.peers[name] = peer
            self._by_key = {**self._by_key, peer.key: peer}
            if peer.fd >= 0:
                self._by_fd = {**self._by_fd, peer.fd: peer}
                assert self._ep is not None
                self._ep.register(peer.fd, select.EPOLLIN)
        log.info("peer %s at %s on %s (%s)", name, addr, ifname, self.mode)
        if self.on_new_peer:
            self.on_new_peer(peer)
        return peer

    def remove_peer(self, name: str) -> None:
        """Stop carrying a peer's traffic and delete its interface."""
        with self._lock:
            peer = self.peers.pop(name, None)
            if peer is None:
                return
            self._by_key = {k: p for k, p in self._by_key.items() if p is not peer}
            if peer.fd >= 0:
                self._by_fd = {k: p for k, p in self._by_fd.items() if p is not peer}
                assert self._ep is not None
                try:
                    self._ep.unregister(peer.fd)
                except OSError:
                    pass
                os.close(peer.fd)  # a non-persistent TUN disappears with its fd
                if peer.mtu_sock:
                    peer.mtu_sock.close()
            elif self._bpf is not None:
                self._bpf.remove_peer(peer.ifname, peer.addr)
            else:
                run_ip(["link", "del", "dev", peer.ifname], peer.netns, check=False)
        log.info("peer %s removed", name)

    # ---- data plane --------------------------------------------------------------------
    def _count_unknown(self, src: str) -> None:
        """Count a packet from ``src`` (dotted quad), no known peer: per source for the first
        UNKNOWN_SOURCES_KEPT sources, in ``unknown_sources_untracked`` beyond (bounded state)."""
        if src in self.unknown_sources:
            self.unknown_sources[src] += 1
        elif len(self.unknown_sources) < UNKNOWN_SOURCES_KEPT:
            self.unknown_sources[src] = 1
            log.debug("IP-IP from unknown source %s dropped", src)
        else:
            self.unknown_sources_untracked += 1

    def _drain_socket(self, buf: bytearray, mv: memoryview) -> None:
        sock = self._sock
        assert sock is not None
        for _ in range(BURST):
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("raw socket recv: %s", exc)
                return
            b0 = buf[0]
            ihl = (b0 & 0x0F) * 4
            if n < 20 or b0 >> 4 != 4 or ihl < 20 or ihl > n:
                self.malformed_outer_dropped += 1
                continue
            peer = self._by_key.get(bytes(mv[12:16]))
            if peer is None:
                self.unknown_peer_dropped += 1
                self._count_unknown(socket.inet_ntoa(mv[12:16]))
                continue
            c = peer.counters
            total = _valid_inner(buf, ihl, n)
            if not total:
                c.malformed_dropped += 1
                continue
            try:
                os.write(peer.fd, mv[ihl:ihl + total])
            except OSError:
                c.write_errors += 1
                continue
            c.packets_in += 1
            c.bytes_in += total

    def path_mtu(self, peer: Peer) -> int:
        """Path MTU (bytes) towards the peer as the kernel knows it (route MTU, PMTU cache)."""
        if peer.mtu_sock is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.local, 0))
            s.connect((peer.addr, 9))
            peer.mtu_sock = s
        return peer.mtu_sock.getsockopt(socket.IPPROTO_IP, IP_MTU)

    def _frag_needed(self, peer: Peer, inner: memoryview) -> None:
        """Answer a DF packet the path cannot carry: ICMP type 3 code 4 with the tunnel MTU,
        written into the peer's interface towards the inner source (RFC 2003 3.1)."""
        c = peer.counters
        now = int(time.monotonic())
        second, sent = peer.icmp_window
        if second != now:
            second, sent = now, 0
        try:
            mtu = self.path_mtu(peer) - OUTER_LEN
        except OSError:
            mtu = MIN_MTU
        msg = frag_needed(IPv4Address(self.local).packed, inner, mtu) if sent < ICMP_RATE else None
        if msg is None:
            c.frag_needed_suppressed += 1
            return
        try:
            os.write(peer.fd, msg)
        except OSError:
            c.write_errors += 1
            return
        peer.icmp_window = (second, sent + 1)
        c.frag_needed_sent += 1

    def _drain_tun(self, peer: Peer, buf: bytearray, mv: memoryview) -> None:
        sock, sock_df = self._sock, self._sock_df
        assert sock is not None and sock_df is not None
        dest = (peer.addr, 0)
        fd = peer.fd
        c = peer.counters
        for _ in range(BURST):
            try:
                n = os.readv(fd, [buf])
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EBADF):
                    log.debug("read %s: %s", peer.ifname, exc)
                return
            if n < 20 or buf[0] >> 4 != 4:
                c.non_ipv4_dropped += 1
                continue
            df = buf[6] & IP_DF
            try:
                (sock_df if df else sock).sendto(mv[:n], dest)
            except OSError as exc:
                if df and exc.errno == errno.EMSGSIZE:
                    self._frag_needed(peer, mv[:n])
                else:
                    c.send_errors += 1
                continue
            c.packets_out += 1
            c.bytes_out += n

    def _loop(self, ep: select.epoll) -> None:
        assert self._sock is not None
        sockfd = self._sock.fileno()
        buf = bytearray(BUF_SIZE)  # preallocated once per loop; packets are read into it
        mv = memoryview(buf)
        wake = self._wake_r
        while not self._stop:
            for fd, _ev in ep.poll(1.0):
                if fd == sockfd:
                    self._drain_socket(buf, mv)
                elif fd == wake:
                    continue  # stop() or a peer change: re-check the loop condition
                else:
                    peer = self._by_fd.get(fd)
                    if peer is not None:
                        self._drain_tun(peer, buf, mv)

    def serve_forever(self) -> None:
        """Run the userspace data plane until stop() (idle loop for the kernel and bpf modes).

        With threads=2 the decapsulating direction (raw socket -> TUN) and the
        encapsulating one (TUN -> raw socket) run in two threads with their own epoll:
        the read/write system calls release the GIL, so the two directions overlap.
        """
        if self.mode == "bpf":
            self._bpf_slow_path()
            return
        if self.mode != "userspace":
            while not self._stop:
                time.sleep(0.2)
            return
        assert self._ep is not None and self._sock is not None
        if self.threads == 1:
            self._loop(self._ep)
            return
        rx_ep = select.epoll()
        rx_ep.register(self._sock.fileno(), select.EPOLLIN)
        rx_ep.register(self._wake_r, select.EPOLLIN)
        self._ep.unregister(self._sock.fileno())
        rx = threading.Thread(target=self._loop, args=(rx_ep,), name="ipip-rx",
                              daemon=True)
        rx.start()
        try:
            self._loop(self._ep)
        finally:
            rx.join(timeout=3)
            rx_ep.close()
            self._ep.register(self._sock.fileno(), select.EPOLLIN)

    def _bpf_slow_path(self) -> None:
        """bpf mode: IP-IP that arrived in outer fragments, reassembled by the kernel, goes
        to its peer's device through the twin (tcbpf.BpfDataPlane.inject); the decap program
        handles every unfragmented packet itself. Unknown sources are dropped and counted
        as in userspace mode."""
        sock, bpf = self._sock, self._bpf
        assert sock is not None and bpf is not None
        buf = bytearray(BUF_SIZE)
        mv = memoryview(buf)
        while not self._stop:
            r, _, _ = select.select([sock, self._wake_r], [], [], 1.0)
            if sock not in r:
                continue
            for _ in range(BURST):
                try:
                    n = sock.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    log.debug("raw socket recv: %s", exc)
                    break
                ihl = (buf[0] & 0x0F) * 4
                if n < 20 or buf[0] >> 4 != 4 or ihl < 20 or ihl > n:
                    self.malformed_outer_dropped += 1
                    continue
                peer = self._by_key.get(bytes(mv[12:16]))
                total = _valid_inner(buf, ihl, n) if peer is not None else 0
                if peer is None:
                    self.unknown_peer_dropped += 1
                elif not total:
                    self.malformed_outer_dropped += 1
                elif bpf.inject(peer.ifname, mv[ihl:ihl + total]):
                    self.reassembled_in += 1

    def start(self) -> "IpipEndpoint":
        """Run the data plane in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="ipip", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread:
            self._thread.join(timeout=3)

    def close(self) -> None:
        """Stop and delete every peer interface."""
        self.stop()
        for name in list(self.peers):
            self.remove_peer(name)
        for s in (self._sock, self._sock_df):
            if s:
                s.close()
        if self._bpf:
            self._bpf.close()
        if self._ep:
            self._ep.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # ---- status ------------------------------------------------------------------------
    def _kernel_counters(self, peer: Peer) -> PeerCounters:
        proc = run_ip(["-s", "-j", "link", "show", "dev", peer.ifname], peer.netns, check=False)
        try:
            st = json.loads(proc.stdout)[0]["stats64"]
        except (ValueError, LookupError, TypeError):
            return peer.counters
        return PeerCounters(packets_in=st["rx"]["packets"], bytes_in=st["rx"]["bytes"],
                            packets_out=st["tx"]["packets"], bytes_out=st["tx"]["bytes"],
                            malformed_dropped=st["rx"]["errors"],
                            send_errors=st["tx"]["errors"] + st["tx"]["dropped"])

    def status(self) -> dict:
        """Counters as JSON-ready dict: per peer and endpoint-wide drops."""
        peers = {}
        if self._bpf is not None:
            self._bpf.refresh_routes({p.addr: p.ifname for p in list(self.peers.values())})
        for name, p in list(self.peers.items()):
            if self.mode == "kernel":
                c = self._kernel_counters(p).__dict__
            elif self._bpf is not None:
                c = {**PeerCounters().__dict__, **self._bpf.counters(p.ifname, p.addr)}
            else:
                c = p.counters.__dict__
            peers[name] = {"addr": p.addr, "ifname": p.ifname, "netns": p.netns, **c}
        st = {"local": self.local, **self.mode_choice.as_status(), "peers": peers,
              "unknown_peer_dropped": self.unknown_peer_dropped,
              "unknown_sources": dict(self.unknown_sources),
              "unknown_sources_untracked": self.unknown_sources_untracked,
              "malformed_outer_dropped": self.malformed_outer_dropped}
        if self._bpf is not None:
            st.update(self._bpf.stats())
            st["bpf_decap_devices"] = sorted(self._bpf.decap_devices)
            st["reassembled_in"] = self.reassembled_in
        return st


__all__ = ["IpipEndpoint", "Peer", "PeerCounters", "TUNNEL_MTU", "kernel_ipip_available", "choose_mode",
           "frag_needed", "MODES", "TunError"]
