"""IP-IP data plane in tc BPF (bpf/ipip_tc.bpf.c) for kernels without the ipip module.

Per peer P a veth pair: `ifname` (e.g. `ip-P`, where routes point, movable into a realm
namespace like a TUN) and its twin `bt<ifname>` in the endpoint's own namespace. What
leaves `ip-P` enters the twin, whose tc ingress program adds the outer header and sends
it out of the device of our route to P. IP-IP from P arriving on that device is stripped
by the decap program and redirected through the twin, so it arrives on `ip-P`: the device
names the realm, as the SG's filter expects (claims 4, 6).

The object comes from the node image (/opt/testbed-bpf, compiled at image build time) or
is compiled here from the source with clang (hosts running the netns tests).
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed.tunnel.libbpf import BPF_TC_INGRESS, BpfError, BpfObject
from testbed.common.tun import set_sysctl

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "bpf" / "ipip_tc.bpf.c"
IMAGE_OBJECT = Path("/opt/testbed-bpf/ipip_tc.bpf.o")
CACHE_DIR = Path(os.environ.get("TESTBED_BPF_CACHE", "/var/cache/testbed-bpf"))
TC_HANDLE = 0x1b1   # our filters' handle and priority on every device we attach to
TC_PRIORITY = 7
TWIN_PREFIX = "bt"
IFF_NOARP = 0x80
TWIN_MTU = 65535    # adjust_room checks the growing packet against the twin's MTU
STATS = ("unknown_peer_dropped", "malformed_outer_dropped", "outer_fragments_passed")

Addr4 = ctypes.c_ubyte * 4
Mac = ctypes.c_ubyte * 6


class TxPeer(ctypes.Structure):
    """struct tx_peer of ipip_tc.bpf.c (keyed by the twin's ifindex)."""
    _fields_ = [("local", Addr4), ("remote", Addr4), ("out_ifindex", ctypes.c_uint32),
                ("pad", ctypes.c_uint32), ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("non_ipv4", ctypes.c_uint64), ("errors", ctypes.c_uint64)]


class RxPeer(ctypes.Structure):
    """struct rx_peer of ipip_tc.bpf.c (keyed by the peer's public address)."""
    _fields_ = [("twin_ifindex", ctypes.c_uint32), ("dev_mac", Mac), ("twin_mac", Mac),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("malformed", ctypes.c_uint64), ("errors", ctypes.c_uint64)]


def compile_object(source: Path = SOURCE, cache: Path = CACHE_DIR) -> Path:
    """Compile `source` with clang into `cache/<sha>.o` (once per source text) and return it.

    Raises BpfError if clang is missing or the compile fails.
    """
    clang = shutil.which("clang")
    if not clang:
        raise BpfError("no compiled BPF object and no clang to build one (apt install clang libbpf-dev)")
    text = source.read_bytes()
    out = cache / f"ipip_tc-{hashlib.sha256(text).hexdigest()[:12]}.o"
    if out.is_file():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    arch = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True).stdout.strip() \
        or "x86_64-linux-gnu"
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([clang, "-O2", "-g", "-Wall", "-target", "bpf", f"-I/usr/include/{arch}",
                           "-c", str(source), "-o", str(tmp)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BpfError(f"clang {source}: {proc.stderr.strip()[-800:]}")
    tmp.replace(out)
    return out


def find_object() -> Path:
    """The compiled object: $TESTBED_IPIP_BPF_OBJ, the image's, or compiled from source."""
    env = os.environ.get("TESTBED_IPIP_BPF_OBJ")
    if env:
        return Path(env)
    if IMAGE_OBJECT.is_file():
        return IMAGE_OBJECT
    return compile_object()


_loaded: BpfObject | None = None


def load() -> BpfObject:
    """Load the object once per process (the probe's load is the one the data plane uses)."""
    global _loaded
    if _loaded is None:
        _loaded = BpfObject(find_object())
    return _loaded


_active_local: str | None = None  # the local address of this process's BpfDataPlane
_claim = threading.Lock()         # check and set of _active_local (virtual HAs start in parallel)


def bpf_unavailable(local: str | None = None) -> str | None:
    """None if the tc-BPF data plane can run here for `local`, else why not (mode selection
    probe). One process serves one local address in bpf mode (the object's maps are the
    process's): a second endpoint with another address (e.g. two virtual HAs in one
    process, claim 16) is told so and takes the next mode."""
    if local is not None and _active_local not in (None, str(IPv4Address(local))):
        return f"this process already runs the bpf plane for {_active_local}"
    try:
        load()
    except (BpfError, OSError) as exc:
        return str(exc)
    return None


def _mac(ipr: IPRoute, index: int) -> bytes:
    return bytes.fromhex(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS").replace(":", ""))


def route_device(ipr: IPRoute, dst: str, src: str) -> str:
    """Name of the device of our route to `dst` from `src` (`ip route get` through `ipr`, in
    the namespace `ipr` was opened in). Raises BpfError."""
    try:
        oif = ipr.route("get", dst=dst, src=src)[0].get_attr("RTA_OIF")
        return ipr.get_links(oif)[0].get_attr("IFLA_IFNAME")
    except (NetlinkError, LookupError, TypeError) as exc:
        raise BpfError(f"no route to peer {dst} from {src}: {exc}") from None


def address_devices(ipr: IPRoute, addr: str) -> list[str]:
    """Devices holding `addr` (where IP-IP for us may arrive)."""
    idx = {a["index"] for a in ipr.get_addr(family=socket.AF_INET, address=addr)
           if (a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")) == addr}
    return [ln.get_attr("IFLA_IFNAME") for ln in ipr.get_links() if ln["index"] in idx
            and ln.get_attr("IFLA_IFNAME") != "lo"]


class BpfDataPlane:
    """Peers of one endpoint in the shared maps; decap attached where peers' packets arrive."""

    def __init__(self, local: str) -> None:
        global _active_local
        self.local = str(IPv4Address(local))
        with _claim:   # two endpoints probing at once: only one may take the process's maps
            why = bpf_unavailable(self.local)
            if why:
                raise BpfError(why)
            self.obj = load()
            _active_local = self.local
        self.obj.update("local_addr", ctypes.c_uint32(0), Addr4(*IPv4Address(self.local).packed))
        self.decap_devices: dict[str, int] = {}
        self.out_devices: dict[str, str] = {}   # peer address -> device of our route to it
        self.frames: dict[str, bytes] = {}      # peer ifname -> Ethernet header twin -> ifname
        self._inject: socket.socket | None = None
        # one rtnetlink socket for the plane's life, opened in the endpoint's namespace: the
        # status thread (another namespace for a virtual HA) refreshes routes through it, and
        # a new IPRoute per call costs the mobile node's loop tens of ms of Python
        self._ipr = IPRoute()
        self._nl = threading.Lock()
        self._routes_checked = 0.0
        with self._nl:
            devs = address_devices(self._ipr, self.local)
        for dev in devs:
            self._attach_decap(dev)

    def _index(self, ifname: str) -> int:
        """ifindex of `ifname` in the plane's namespace. Raises OSError (ENODEV), as
        socket.if_nametoindex would."""
        with self._nl:
            found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            raise OSError(errno.ENODEV, f"no interface {ifname}")
        return found[0]

    def _attach_decap(self, dev: str) -> None:
        if dev in self.decap_devices:
            return
        idx = self._index(dev)
        self.obj.tc_attach("ipip_decap", idx, BPF_TC_INGRESS, handle=TC_HANDLE, priority=TC_PRIORITY)
        self.decap_devices[dev] = idx
        log.info("tc-BPF decap on %s", dev)

    @staticmethod
    def twin_name(ifname: str) -> str:
        twin = f"{TWIN_PREFIX}{ifname}"
        if len(twin) > 15:
            raise ValueError(f"interface name {ifname!r}: at most 13 characters in bpf mode "
                             f"(its twin {twin!r} must fit 15)")
        return twin

    def add_peer(self, ifname: str, addr: str) -> None:
        """Create `ifname` + twin, fill both maps, attach encap. Raises BpfError, TunError."""
        twin = self.twin_name(ifname)
        # rtnetlink, not `ip` (issue 14: a peer is added on a mobile node's move, where
        # seven `ip` processes cost ~20 ms)
        with self._nl:
            ipr = self._ipr
            for stale in ipr.link_lookup(ifname=twin):   # a stale pair of ours (names are ours)
                ipr.link("del", index=stale)
            try:
                ipr.link("add", ifname=ifname, kind="veth", peer={"ifname": twin})
            except NetlinkError as exc:
                raise BpfError(f"peer {addr}: cannot create {ifname}/{twin}: {exc}") from None
            dev_idx, tw_idx = ipr.link_lookup(ifname=ifname)[0], ipr.link_lookup(ifname=twin)[0]
            # routes "dev ifname": no neighbour to resolve
            ipr.link("set", index=dev_idx, flags=IFF_NOARP, mask=IFF_NOARP)
            for dev in (ifname, twin):
                set_sysctl(dev, "ipv6/conf/IF/disable_ipv6", "1")
            ipr.link("set", index=tw_idx, mtu=TWIN_MTU, state="up")
            dev_mac, twin_mac = _mac(ipr, dev_idx), _mac(ipr, tw_idx)
        peer_key = Addr4(*IPv4Address(addr).packed)
        self.frames[ifname] = dev_mac + twin_mac + b"\x08\x00"
        self.obj.update("rx_peers", peer_key,
                        RxPeer(twin_ifindex=tw_idx, dev_mac=Mac(*dev_mac), twin_mac=Mac(*twin_mac)))
        with self._nl:
            out_dev = route_device(self._ipr, addr, self.local)
        self._set_route(ifname, addr, out_dev)
        self.obj.tc_attach("ipip_encap", tw_idx, BPF_TC_INGRESS, handle=TC_HANDLE, priority=TC_PRIORITY)

    def _set_route(self, ifname: str, addr: str, out_dev: str) -> None:
        """Point the peer's encapsulated packets at `out_dev`; decap listens there too."""
        self._attach_decap(out_dev)
        self.obj.update("tx_peers", ctypes.c_uint32(self._index(self.twin_name(ifname))),
                        TxPeer(local=Addr4(*IPv4Address(self.local).packed),
                               remote=Addr4(*IPv4Address(addr).packed), out_ifindex=self._index(out_dev)))
        self.out_devices[addr] = out_dev

    def refresh_routes(self, peers: dict[str, str], every_s: float = 5.0) -> None:
        """Follow route changes towards peers {addr: ifname}, at most once per `every_s`
        (the program sends out of a fixed device; the kernel picks the next hop there).
        Counters survive: only the device changes when a route moved."""
        now = time.monotonic()
        if now - self._routes_checked < every_s:
            return
        self._routes_checked = now
        for addr, ifname in peers.items():
            try:
                with self._nl:
                    dev = route_device(self._ipr, addr, self.local)
            except BpfError as exc:
                log.warning("peer %s: %s", addr, exc)
                continue
            if dev != self.out_devices.get(addr):
                old = self.lookup_tx(ifname)
                self._set_route(ifname, addr, dev)
                if old is not None:  # keep the peer's counters across the move
                    new = self.lookup_tx(ifname)
                    for f in ("packets", "bytes", "non_ipv4", "errors"):
                        setattr(new, f, getattr(old, f))
                    self.obj.update("tx_peers", ctypes.c_uint32(self._index(self.twin_name(ifname))), new)
                log.info("peer %s now via %s", addr, dev)

    def lookup_tx(self, ifname: str) -> TxPeer | None:
        try:
            return self.obj.lookup("tx_peers", ctypes.c_uint32(self._index(self.twin_name(ifname))), TxPeer)
        except OSError:
            return None

    def inject(self, ifname: str, inner: bytes | memoryview) -> bool:
        """Hand an inner packet to the peer's device `ifname` as the decap program would
        (sent into the twin, so it arrives on `ifname`): the slow path for IP-IP that came
        in outer fragments, which the program passes to the stack before reassembly and the
        endpoint reads back reassembled from a raw socket. Returns False if not sent.

        The packet socket is unbound (protocol 0): binding one would wait for an RCU grace
        period, and each frame names its device in sendto."""
        head = self.frames.get(ifname)
        if head is None:
            return False
        if self._inject is None:
            self._inject = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._inject.sendto(head + bytes(inner), (self.twin_name(ifname), 0))
            return True
        except OSError as exc:
            log.debug("inject into %s: %s", ifname, exc)
            return False

    def remove_peer(self, ifname: str, addr: str) -> None:
        twin = self.twin_name(ifname)
        self.frames.pop(ifname, None)
        self.obj.delete("rx_peers", Addr4(*IPv4Address(addr).packed))
        self.out_devices.pop(addr, None)
        try:
            self.obj.delete("tx_peers", ctypes.c_uint32(self._index(twin)))
        except OSError:
            pass
        with self._nl:   # deleting the twin takes ifname along, wherever it lives
            for idx in self._ipr.link_lookup(ifname=twin):
                try:
                    self._ipr.link("del", index=idx)
                except NetlinkError as exc:
                    log.debug("delete %s: %s", twin, exc)

    def counters(self, ifname: str, addr: str) -> dict[str, int]:
        """Per-peer counters in PeerCounters' names (zeros if the peer's entries are gone)."""
        rx = self.obj.lookup("rx_peers", Addr4(*IPv4Address(addr).packed), RxPeer)
        tx = self.lookup_tx(ifname)
        return {"packets_in": rx.packets if rx else 0, "bytes_in": rx.bytes if rx else 0,
                "malformed_dropped": rx.malformed if rx else 0, "write_errors": rx.errors if rx else 0,
                "packets_out": tx.packets if tx else 0, "bytes_out": tx.bytes if tx else 0,
                "non_ipv4_dropped": tx.non_ipv4 if tx else 0, "send_errors": tx.errors if tx else 0}

    def stats(self) -> dict[str, int]:
        out = {}
        for i, name in enumerate(STATS):
            v = self.obj.lookup("stats", ctypes.c_uint32(i), ctypes.c_uint64)
            out[name] = int(v.value) if v is not None else 0
        return out

    def close(self) -> None:
        """Detach decap from the devices we attached it to (peers are removed by the caller)."""
        global _active_local
        _active_local = None
        if self._inject is not None:
            self._inject.close()
            self._inject = None
        with self._nl:
            self._ipr.close()
        for dev, idx in self.decap_devices.items():
            try:
                self.obj.tc_detach(idx, BPF_TC_INGRESS, handle=TC_HANDLE, priority=TC_PRIORITY)
            except BpfError as exc:
                log.debug("detach from %s: %s", dev, exc)
        self.decap_devices = {}
