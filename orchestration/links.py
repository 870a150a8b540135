"""Wires between nodes: veth pairs, segment bridges, addresses, routes and impairments.

All of it is netlink from the host (pyroute2), into namespaces named by ``netns.py``.
A veth is created with both ends already in their target namespaces, so a crash never
leaves a half-moved interface in the host's namespace. Segment bridges live in the lab's
switch namespace; a node's port on a segment is the switch end of its veth, and moving a
node to another segment is just giving that port another bridge as master: this is how
a mobile node's radio handover is emulated, with its addresses and sockets intact.
"""
from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .netns import entered, switch_ns
from .topology import Impairment, Route

# Routes installed by the testbed carry this protocol number so they are told apart from
# routes the agents (AODV, Mobile IP) install later.
RTPROT_TESTBED = 4  # "static"


def bridge_name(lab: str, index: int) -> str:
    """The bridge of the lab's ``index``-th segment in its switch namespace: ``<lab>.b<hex>``
    (at most 15 characters, IFNAMSIZ, for lab names of up to 8 and 0xfffff segments)."""
    return f"{lab}.b{index:x}"


def port_name(lab: str, seq: int) -> str:
    """The switch end of a node's segment veth. The ``p`` keeps it apart from bridge names:
    a bare hex number collided with ``<lab>.b0`` at port 0xb0 (176 ports, a 200-node lab).
    At most 15 characters (IFNAMSIZ) for lab names of 8 and up to 0xfffff ports."""
    return f"{lab}.p{seq:x}"


@dataclass
class Port:
    """A node's interface as wired: where its other end is. Saved in the lab state."""

    key: str
    node: str
    ifname: str
    segment: str | None = None
    switch_if: str | None = None
    peer_node: str | None = None
    peer_if: str | None = None


class Wiring:
    """An open set of netlink sockets, one per namespace, reused for a batch of changes."""

    def __init__(self, lab: str):
        self.lab = lab
        self._ns: dict[str, IPRoute] = {}
        # (namespace, ifname) -> ifindex, for this batch: each wire otherwise asked the
        # kernel for the same indexes (bridge, port, node end) up to five times.
        self._index: dict[tuple[str, str], int] = {}

    def __enter__(self) -> "Wiring":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every netlink socket of the batch; the object can be reused (sockets reopen)."""
        for ipr in self._ns.values():
            ipr.close()
        self._ns.clear()

    def ns(self, name: str) -> IPRoute:
        """The batch's netlink socket inside namespace ``name`` (made on first use).

        Raises OSError (via ``entered``) when the namespace does not exist."""
        if name not in self._ns:
            with entered(name):  # the socket is made (and stays) in that namespace
                self._ns[name] = IPRoute()
        return self._ns[name]

    def forget(self, name: str) -> None:
        """Drop the socket and cached interface indexes of namespace ``name`` (it went away
        or will be recreated, e.g. a restarted node)."""
        ipr = self._ns.pop(name, None)
        if ipr is not None:
            ipr.close()
        self._index = {k: v for k, v in self._index.items() if k[0] != name}

    def index(self, ns: str, ifname: str) -> int:
        """The interface's index in ``ns`` (asked once per batch). Raises LookupError."""
        key = (ns, ifname)
        if key not in self._index:
            found = self.ns(ns).link_lookup(ifname=ifname)
            if not found:
                raise LookupError(f"no interface {ifname} in namespace {ns}")
            self._index[key] = found[0]
        return self._index[key]

    # --- creation -------------------------------------------------------------------
    def add_bridge(self, name: str) -> None:
        """Create (if missing) and bring up bridge ``name`` in the switch namespace, without
        STP or forwarding delay. Raises NetlinkError when the kernel refuses it."""
        sw = self.ns(switch_ns(self.lab))
        if not sw.link_lookup(ifname=name):
            # No STP and no forwarding delay: a port is usable at once, as after a radio attach.
            sw.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0)
        sw.link("set", index=self.index(switch_ns(self.lab), name), state="up")

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        """Create a veth with each end directly inside its namespace."""
        host = self.ns(ns_a)
        try:
            host.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": ns_b})
        except NetlinkError as e:
            raise RuntimeError(f"cannot create veth {ns_a}/{if_a} <-> {ns_b}/{if_b}: {e}") from None

    def set_master(self, switch_if: str, bridge: str | None) -> None:
        """Enslave switch-side port ``switch_if`` to ``bridge``, or free it when ``bridge`` is None
        (a node leaving a segment). Raises LookupError for an unknown interface."""
        sw = switch_ns(self.lab)
        idx = self.index(sw, switch_if)
        master = self.index(sw, bridge) if bridge else 0
        self.ns(sw).link("set", index=idx, master=master)

    def set_up(self, ns: str, ifname: str, up: bool = True) -> None:
        """Set ``ifname`` in ``ns`` administratively up (or down). Raises LookupError."""
        self.ns(ns).link("set", index=self.index(ns, ifname), state="up" if up else "down")

    def is_up(self, ns: str, ifname: str) -> bool:
        """True when ``ifname`` in ``ns`` has IFF_UP set. Raises LookupError."""
        link = self.ns(ns).get_links(self.index(ns, ifname))[0]
        return "UP" in (link.get("flags_names") or []) or bool(link["flags"] & 1)

    def address(self, ns: str, ifname: str, addr: ipaddress.IPv4Interface) -> None:
        """Add IPv4 ``addr`` (address/prefix, broadcast derived) to ``ifname``; an address already
        there is fine (re-wiring is idempotent). Raises LookupError, NetlinkError otherwise."""
        ipr = self.ns(ns)
        try:
            ipr.addr("add", index=self.index(ns, ifname), address=str(addr.ip), prefixlen=addr.network.prefixlen,
                     broadcast=str(addr.network.broadcast_address))
        except NetlinkError as e:
            if e.code != 17:  # EEXIST: already there (idempotent re-wiring)
                raise

    def loopback_up(self, ns: str) -> None:
        """Bring ``lo`` up in ``ns`` (a fresh namespace has it down)."""
        self.set_up(ns, "lo")

    def route(self, ns: str, r: Route) -> None:
        """Install (replace) route ``r`` of the topology in ``ns`` with the testbed's routing
        protocol number, so ``ip route`` shows which routes the lab made.

        Raises RuntimeError naming the route and namespace when the kernel refuses it
        (e.g. a gateway not on any connected subnet)."""
        ipr = self.ns(ns)
        kw: dict[str, object] = {"dst": "0.0.0.0/0" if r.to == "default" else r.to, "proto": RTPROT_TESTBED}
        if r.via is not None:
            kw["gateway"] = str(r.via)
        if r.dev is not None:
            kw["oif"] = self.index(ns, r.dev)
        if r.metric is not None:
            kw["priority"] = r.metric
        try:
            ipr.route("replace", **kw)
        except NetlinkError as e:
            raise RuntimeError(f"route {r.to} in {ns}: {e}") from None

    # --- impairment -------------------------------------------------------------------
    def impair(self, ns: str, ifname: str, imp: Impairment, bridge_family: bool = False) -> None:
        """Rate with tbf; loss with an nftables random drop on egress (no netem on this kernel)."""
        idx = self.index(ns, ifname)
        ipr = self.ns(ns)
        try:
            ipr.tc("del", index=idx)
        except NetlinkError:
            pass
        if imp.rate:
            ipr.tc("add", "tbf", idx, rate=imp.rate, burst=32 * 1024, latency="100ms")
        table = f"impair_{ifname.replace('.', '_').replace('-', '_')}"
        family = "bridge" if bridge_family else "inet"
        hook = "forward" if bridge_family else "postrouting"
        rules = f"table {family} {table}\ndelete table {family} {table}\n"
        if imp.loss > 0:
            per_10k = int(round(imp.loss * 100))
            rules += (f"table {family} {table} {{\n chain egress {{\n  type filter hook {hook} priority 0; policy accept;\n"
                      f"  oifname \"{ifname}\" numgen random mod 10000 < {per_10k} counter drop\n }}\n}}\n")
        r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"nft in {ns}: {r.stderr.strip()}")
