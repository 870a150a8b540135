"""Home agent runtime: registrations on UDP 434, HA->CoA tunnels, interception of packets.

One HomeAgent object is one (virtual) home agent. Its control thread runs inside the
HA's network namespace (netns=None: the current one), so the UDP socket, the IP-IP
endpoint (testbed/tunnel/ipip.py, userspace where the kernel lacks ipip), its TUN devices
and every `ip` command it runs belong to that namespace - that is how several virtual HAs
with overlapping realms share one process without meeting (claim 16).

Data plane per binding (home address H at care-of address C):
- one IP-IP peer per care-of address (TUN `mip<hex C>`), shared by all MNs behind one FA;
- `ip route replace H/32 dev mip<hex C>`: the HA intercepts by routing (it is the home
  network's gateway, claim 15) and by proxy ARP on its home interfaces for hosts on the
  home link, announced with a gratuitous ARP (RFC 5944 4.6);
- reverse tunnel (RFC 3024): what arrives from C comes out of that TUN with source H and
  is forwarded by the kernel; strict rp_filter on the TUN drops inner sources that are not
  bound to C (a visitor cannot inject packets with another MN's home address).
"""
from __future__ import annotations

import json
import logging
import select
import socket
import subprocess
import threading
import time
from collections import Counter

from testbed.mip import messages as m
from testbed.mip.config import HomeAgentConfig
from testbed.mip.linklayer import PacketSocket, ip_packet, parse_ipv4
from testbed.mip.registration import Decision, RegistrationProcessor
from testbed.mip.netlink import Netlink
from testbed.mip.netns import thread_in_netns
from testbed.mip.sysctl import set_sysctl as write_proc_sys
from testbed.tunnel.ipip import TUNNEL_MTU, IpipEndpoint, Peer

log = logging.getLogger(__name__)

CONTROL_MARK = 0x42  # = testbed.common.strongswan.SOCKET_FWMARK: bypasses charon's table 220


def coa_ifname(coa: str) -> str:
    return "mip" + socket.inet_aton(coa).hex()


def iface_address(ifname: str) -> str | None:
    proc = subprocess.run(["ip", "-4", "-j", "addr", "show", "dev", ifname], capture_output=True, text=True)
    try:
        for a in json.loads(proc.stdout)[0].get("addr_info", []):
            return a["local"]
    except (ValueError, LookupError):
        pass
    return None


class HomeAgent:
    def __init__(self, cfg: HomeAgentConfig, tunnel_mode: str = "auto", adv_interval: float = 1.0) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.address = str(cfg.address)
        self.tunnel_mode = tunnel_mode
        self.adv_interval = adv_interval
        self.proc = RegistrationProcessor(
            self.address, str(cfg.home_prefix),
            {str(h): s.sa() for h, s in cfg.mobile_nodes.items()},
            max_lifetime=cfg.max_lifetime, reverse_tunnel=cfg.reverse_tunnel,
            replay_tolerance=cfg.replay_tolerance)
        self.counters: Counter[str] = self.proc.counters
        self.endpoint: IpipEndpoint | None = None
        self.links: dict[str, PacketSocket] = {}
        #: care-of addresses whose bindings went in this request: their tunnels are
        #: deleted after the reply (`_remove_unused_peers`)
        self._unused_peers: list[str] = []
        self.link_addrs: dict[str, str | None] = {}
        self.sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: str | None = None
        self.adv_seq = 0
        self.last_latency_ms: float | None = None
        self.ipsec = None
        self.nl: Netlink | None = None   # made in our thread: it then lives in our netns

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> "HomeAgent":
        self._thread = thread_in_netns(self.cfg.netns, self._run, f"ha-{self.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _open(self) -> None:
        write_proc_sys("net.ipv4.ip_forward", "1")
        write_proc_sys("net.ipv4.conf.all.rp_filter", "0")
        # tunnel TUNs made later inherit strict reverse-path filtering (see _setup_peer)
        write_proc_sys("net.ipv4.conf.default.rp_filter", "1")
        self.nl = Netlink()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.address, m.MIP_PORT))
        # Registration replies must reach the MN's home address by the Mobile IP routes,
        # never through an IPsec SA charon routed it into (claim 24; table 220 is only
        # consulted for packets without this mark).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, CONTROL_MARK)
        self.endpoint = IpipEndpoint(self.address, mode=self.tunnel_mode, ifname_prefix="mip",
                                     on_new_peer=self._setup_peer).start()
        if self.cfg.ipsec_ccoa is not None:
            from testbed.mip.ipsec import HaIpsec
            self.ipsec = HaIpsec(self.name, self.cfg.ipsec_ccoa.workdir, self.address, str(self.cfg.home_prefix),
                                 {h: sa.key for h, sa in self.proc.mns.items()},
                                 protect=self.cfg.ipsec_ccoa.protect)
            self.ipsec.start()
        for ifname in self.cfg.home_interfaces:
            write_proc_sys(f"net.ipv4.conf.{ifname}.forwarding", "1")
            write_proc_sys(f"net.ipv4.neigh.{ifname}.proxy_delay", "0")  # intercept at once
            self.links[ifname] = PacketSocket(ifname)
            self.links[ifname].only_icmp_type(10)   # agent solicitations

    def _run(self) -> None:
        try:
            self._open()
        except Exception as exc:  # reported in status, the process keeps the other HAs
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("HA %s cannot start: %s", self.name, self.error)
            self.ready.set()
            return
        log.info("HA %s at %s (home %s, netns %s, tunnel %s)", self.name, self.address,
                 self.cfg.home_prefix, self.cfg.netns, self.endpoint.mode if self.endpoint else "-")
        self.ready.set()
        next_adv = 0.0
        next_expire = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self.cfg.advertise and self.links and now >= next_adv:
                    self._advertise()
                    next_adv = now + self.adv_interval
                if now >= next_expire:
                    for b in self.proc.bindings.expire():
                        log.info("binding %s -> %s expired", b.home, b.coa)
                        self.counters["bindings_expired"] += 1
                        self._unroute(b.home, b.coa)
                    self._remove_unused_peers()
                    next_expire = now + 1.0
                r, _, _ = select.select([self.sock, *self.links.values()], [], [], 0.2)
                for s in r:
                    if s is self.sock:
                        self._receive()
                    elif self._solicited(s) and self.cfg.advertise:
                        self._advertise()   # answer a solicitation at once (RFC 5944 2.3)
                        next_adv = time.monotonic() + self.adv_interval
        finally:
            self._close()

    def _close(self) -> None:
        for b in list(self.proc.bindings.bindings.values()):
            self._unroute(b.home, b.coa)
        self._unused_peers = []   # the endpoint closes them all
        if self.endpoint:
            self.endpoint.close()
        if self.ipsec:
            self.ipsec.stop()
        for link in self.links.values():
            link.close()
        if self.sock:
            self.sock.close()
        if self.nl:
            self.nl.close()

    # ---- registrations -----------------------------------------------------------------
    def _receive(self) -> None:
        assert self.sock is not None
        try:
            data, (src, sport) = self.sock.recvfrom(4096)
        except OSError:
            return
        t0 = time.perf_counter()
        try:
            d = self.proc.handle(data, src)
            self._apply(d)
        except Exception:  # never let one request stop the HA
            self.counters["internal_errors"] += 1
            log.exception("request from %s", src)
            return
        if d.reply is not None:
            try:
                self.sock.sendto(d.reply, (src, sport))
            except OSError as exc:
                self.counters["reply_send_errors"] += 1
                log.debug("reply to %s:%d: %s", src, sport, exc)
        self.last_latency_ms = (time.perf_counter() - t0) * 1000
        self._remove_unused_peers()

    def _remove_unused_peers(self) -> None:
        """Delete the tunnel interfaces of care-of addresses no binding uses any more.

        Why after the reply (issue 14): deleting a TUN device waits for RCU grace periods
        in the kernel (tens of ms on a busy machine); the routes have already left it, so
        the MN's reply and its traffic need not wait for that.
        """
        for coa in self._unused_peers:
            if self.endpoint and not self.proc.bindings.users_of(coa):
                self.endpoint.remove_peer(socket.inet_aton(coa).hex())
        self._unused_peers = []

    def _apply(self, d: Decision) -> None:
        if d.action == "bind":
            renewal = d.previous is not None and d.previous.coa == d.coa
            if not renewal:   # a renewal changes nothing on the data path
                self._route(d.home, d.coa, new=True)   # replaces the /32 of the old binding
            if d.previous is not None and not renewal:
                self._unroute(d.home, d.previous.coa, route=False)
        elif d.action == "deregister" and d.previous is not None:
            self._unroute(d.home, d.previous.coa)

    def _tunnel_mtus(self) -> tuple[int, int | None]:
        """(device MTU, route MTU) of a tunnel to a care-of address. The tunnel MTU is 1480
        (20 bytes of outer header, RFC 2003 3.1). In bpf mode the device is a veth, which
        refuses to receive a packet above its own MTU: a reverse-tunnelled 1500-byte packet
        (reassembled from outer fragments, tcbpf.BpfDataPlane.inject) needs 1500 there, so
        the tunnel MTU goes on the routes instead."""
        if self.endpoint is not None and self.endpoint.mode == "bpf":
            return 1500, TUNNEL_MTU
        return TUNNEL_MTU, None

    def _setup_peer(self, peer: Peer) -> None:
        assert self.nl
        self.nl.link_up(peer.ifname, mtu=self._tunnel_mtus()[0])
        if self.endpoint is not None and self.endpoint.mode != "userspace":
            self.nl.tx_checksum_off(peer.ifname)   # the FA decapsulates in userspace
        # RFC 3024 5.2: what comes out of a reverse tunnel must be from a mobile node
        # bound to that care-of address. Strict reverse-path filtering on the tunnel
        # interface is exactly that check: only the home addresses routed into it pass.
        try:
            with open(f"/proc/sys/net/ipv4/conf/{peer.ifname}/rp_filter") as f:
                strict = f.read().strip() == "1"
        except OSError:
            strict = False
        if not strict:   # inherited from default.rp_filter in Docker: no subprocess needed
            write_proc_sys(f"net.ipv4.conf.{peer.ifname}.rp_filter", "1")

    def _route(self, home: str, coa: str, new: bool) -> None:
        assert self.endpoint is not None
        name = socket.inet_aton(coa).hex()
        if name not in self.endpoint.peers:
            self.endpoint.add_peer(name, coa)
        ifname = self.endpoint.peers[name].ifname
        assert self.nl
        if not self.nl.route_replace(f"{home}/32", ifname, mtu=self._tunnel_mtus()[1]):
            raise RuntimeError(f"route {home}/32 dev {ifname} failed")
        for hif, link in self.links.items():
            self.nl.proxy_replace(home, hif)
            if new:
                link.gratuitous_arp(home)
        log.debug("intercepting %s: route via %s, proxy ARP on %s", home, ifname, list(self.links))

    def _unroute(self, home: str, coa: str, route: bool = True) -> None:
        """Stop intercepting `home` for `coa` (route: also its /32 route, which a new
        binding's route_replace otherwise takes over); the tunnel to `coa` goes after the
        reply (`_remove_unused_peers`)."""
        assert self.nl
        if route:
            self.nl.route_del(f"{home}/32")
            for hif in self.links:
                self.nl.proxy_del(home, hif)
        self._unused_peers.append(coa)

    def _solicited(self, link: PacketSocket) -> bool:
        got = False
        while (f := link.recv()) is not None:
            ip = parse_ipv4(f[0])
            if ip and ip[0] == 1 and ip[4][:1] == b"\x0a":
                self.counters["solicitations"] += 1
                got = True
        return got

    def _advertise(self) -> None:
        """HA-only agent advertisement on the home link: lets an MN detect it is home."""
        self.adv_seq = (self.adv_seq + 1) & 0xFFFF or 256
        for ifname, link in self.links.items():
            if self.adv_seq % 30 == 1 or ifname not in self.link_addrs:
                self.link_addrs[ifname] = iface_address(ifname)   # re-read now and then
            src = self.link_addrs[ifname]
            if not src:
                continue
            flags = m.A_H | (m.A_T if self.cfg.reverse_tunnel != "refused" else 0)
            icmp = m.build_advertisement(router=src, seq=self.adv_seq, reg_lifetime=self.cfg.max_lifetime,
                                         flags=flags, coas=[], adv_lifetime=max(3, int(self.adv_interval * 3)),
                                         prefix_len=self.cfg.home_prefix.prefixlen)
            try:
                link.send_ip(ip_packet(src, "255.255.255.255", 1, icmp, ttl=1))
            except OSError as exc:
                log.debug("advertisement on %s: %s", ifname, exc)

    # ---- status --------------------------------------------------------------------------
    def status(self) -> dict:
        return {"address": self.address, "netns": self.cfg.netns, "home_prefix": str(self.cfg.home_prefix),
                "error": self.error, "bindings": self.proc.bindings.status(),
                "counters": dict(self.counters),
                "last_processing_ms": self.last_latency_ms,
                "tunnel": self.endpoint.status() if self.endpoint else None,
                "ipsec": self.ipsec.status() if self.ipsec else None}
