"""An AODV mesh of MSRs declared by its links: ``aodv:`` in a lab file (claims 25-39, 63-70).

A mesh is the mobility routing core without M-VPN plumbing: MSRs joined by point-to-point
veth links, each with a /32 node address (RFC 3561 routes hosts, not subnets), radio cells
where mobile nodes attach, and correspondent hosts behind a gateway MSR that announces
their subnet. The compiler derives every address, interface, sysctl and AODV agent config::

    aodv:
      prefix: 10.20.0.0/16            # node addresses, in order of first appearance
      links: [m1-m2, m2-m3, m3-m4]    # or chain: [m1, m2, m3, m4]
      cells: [m3, m4]                 # radio cell segment cell-<msr>, interface 'cell'
      mobile_nodes: {mn: {at: m4, address: 10.20.1.5}}
      hosts: {h: {at: m1, address: 198.51.100.10/24}}
      weights: {m4: 5}                # a hop towards m4 costs 5 (weighted search, claims 63-66)
      start: false                    # configs only: a scenario starts the agents itself

What it makes, for MSR ``a`` linked to ``b``: interface ``to-b`` in a and ``to-a`` in b (no
link subnet), ``ip addr add <a>/32 dev to-b``, the AODV sysctls, and
``/etc/testbed/aodv.yaml`` (testbed.aodv.config.AgentConfig) with ``interfaces`` = every
interface of the node and ``managed_prefixes`` = [prefix]. A mobile node gets interface
``eth0`` in its MSR's cell; a host gets ``eth0`` on a link ``to-<host>`` of its gateway,
which announces the host's subnet (``announced_prefixes``); mobile nodes manage it too.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..topology import check_item_names

if TYPE_CHECKING:  # the compiler imports this module; import it back only when building
    from .compiler import Compiler
    from .model import LabFile

Problems = list[tuple[str, str]]
AGENT_FILE = "/etc/testbed/aodv.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeshMobile(_Strict):
    """A mobile node of the mesh (claim 25): AODV role ``mn`` in the cell of MSR ``at``."""

    at: str = Field(description="the MSR in whose radio cell it starts (must be in 'cells')")
    address: ipaddress.IPv4Address | None = Field(None, description="/32 node address in the prefix (derived if unset)")
    options: dict[str, Any] = Field({}, description="AgentConfig fields for this node, over the mesh's")


class MeshHost(_Strict):
    """A correspondent host (no agent) on a point-to-point link to gateway MSR ``at``."""

    at: str = Field(description="the gateway MSR; it announces the host's subnet into the mesh")
    address: ipaddress.IPv4Interface = Field(description="host address with the link's prefix, e.g. 198.51.100.10/24; "
                                             "the gateway takes the first other address of that subnet")


class Mesh(_Strict):
    """An AODV mesh (RFC 3561 agent testbed.aodv): MSRs, their links and per-node options."""

    prefix: ipaddress.IPv4Network = Field(description="node addresses (/32 each) and the managed prefix")
    chain: list[str] = Field([], description="MSRs joined in this order (a-b, b-c, ...)")
    links: list[str | list[str]] = Field([], description="point-to-point links 'a-b' (or [a, b] for names with '-')")
    cells: list[str] = Field([], description="MSRs with a radio cell (segment cell-<msr>)")
    addresses: dict[str, ipaddress.IPv4Address] = Field({}, description="node -> address, instead of a derived one")
    mobile_nodes: dict[str, MeshMobile] = {}
    hosts: dict[str, MeshHost] = {}
    start: bool = Field(True, description="start the agents at bring-up; false: configs only (a scenario starts them)")
    handover: bool = Field(False, description="sink handover extension (claims 26-39)")
    link_layer_detection: bool = Field(True, description="carrier loss ends a neighbour at once")
    hello_enabled: bool = True
    weights: dict[str, int] = Field({}, description="MSR -> cost of a hop towards it (default 1); turns on "
                                    "weighted search (claims 63-66)")
    options: dict[str, Any] = Field({}, description="further AgentConfig fields for every node (nested dicts merge)")
    node_options: dict[str, dict[str, Any]] = Field({}, description="node -> AgentConfig fields for that node only")

    @field_validator("mobile_nodes", "hosts")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_item_names(v)

    # --- derived views (valid once mesh_problems found nothing) -----------------------------
    def edges(self) -> list[tuple[str, str]]:
        """Every link as (a, b): the chain's hops, then ``links``; malformed entries skipped."""
        out = list(zip(self.chain, self.chain[1:]))
        for x in self.links:
            parts = x.split("-") if isinstance(x, str) else list(x)
            if len(parts) == 2:
                out.append((parts[0], parts[1]))
        return out

    def msrs(self) -> list[str]:
        """MSR names in order of first appearance (the order addresses are derived in)."""
        return list(dict.fromkeys(n for e in self.edges() for n in e))

    def neighbours(self, n: str) -> list[str]:
        """MSRs linked to MSR ``n`` by an edge (``edges``), either direction; [] for a name on no
        edge. Valid once mesh_problems found nothing.
        """
        return [b for a, b in self.edges() if a == n] + [a for a, b in self.edges() if b == n]


def node_names(mesh: Mesh | None) -> set[str]:
    """Every node a mesh makes (MSRs, mobile nodes, hosts)."""
    return set() if mesh is None else set(mesh.msrs()) | set(mesh.mobile_nodes) | set(mesh.hosts)


def _known(names: list[str] | set[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def mesh_problems(lab: "LabFile", others: set[str]) -> Problems:
    """Faults of ``lab.aodv`` as (path, message with the fix); ``others`` are the names of
    the nodes the rest of the lab makes (a mesh node may not reuse one)."""
    m = lab.aodv
    if m is None:
        return []
    out: Problems = []
    add = out.append
    if not m.chain and not m.links:
        add(("aodv", "a mesh needs MSRs: give 'chain: [a, b, ...]' or 'links: [a-b, ...]'"))
    if len(m.chain) == 1:
        add(("aodv.chain", "a chain needs at least two MSRs"))
    first: dict[str, int] = {}
    for i, n in enumerate(m.chain):
        if n in first:
            add((f"aodv.chain[{i}]", f"{n!r} is already at aodv.chain[{first[n]}]; a chain visits each MSR once "
                 "(close a ring or add a shortcut under 'links')"))
        first.setdefault(n, i)
    seen: dict[frozenset[str], str] = {frozenset(e): f"aodv.chain[{i}]-[{i + 1}]" for i, e in enumerate(zip(m.chain, m.chain[1:]))}
    for i, x in enumerate(m.links):
        p = f"aodv.links[{i}]"
        parts = x.split("-") if isinstance(x, str) else list(x)
        if len(parts) != 2 or not all(parts):
            add((p, f"{x!r} is no link; write 'a-b', or [a, b] when a name contains '-'"))
            continue
        if parts[0] == parts[1]:
            add((p, f"a link from {parts[0]!r} to itself; name two different MSRs"))
        key = frozenset(parts)
        if key in seen:
            add((p, f"{parts[0]}-{parts[1]} is already linked by {seen[key]}; remove one"))
        seen.setdefault(key, p)
    msrs = m.msrs()
    for n in msrs:
        try:
            check_item_names({n: None})
        except ValueError as e:
            add(("aodv", str(e)))
        for peer in m.neighbours(n):
            if len(f"to-{peer}") > 15:
                add(("aodv", f"interface 'to-{peer}' of {n} is longer than Linux's 15 characters; "
                     "shorten the MSR name to at most 12 characters"))
    unknown = lambda p, n: add((p, f"unknown MSR {n!r} (known: {_known(msrs)}); add it to aodv.chain or aodv.links"))  # noqa: E731
    for i, n in enumerate(m.cells):
        if n not in msrs:
            unknown(f"aodv.cells[{i}]", n)
    for field in ("weights", "node_options", "addresses"):
        for n in getattr(m, field):
            if n not in msrs and not (field != "weights" and n in m.mobile_nodes):
                unknown(f"aodv.{field}.{n}", n)
    for n, mn in m.mobile_nodes.items():
        if mn.at not in m.cells:
            add((f"aodv.mobile_nodes.{n}.at", f"{mn.at!r} has no radio cell (cells: {_known(m.cells)}); "
                 f"add it to aodv.cells or start {n} at one of them"))
    for n, h in m.hosts.items():
        if h.at not in msrs:
            unknown(f"aodv.hosts.{n}.at", h.at)
        if h.address.network.overlaps(m.prefix):
            add((f"aodv.hosts.{n}.address", f"{h.address.network} overlaps the mesh prefix {m.prefix}; "
                 "put the host in another subnet (it is reached through its gateway)"))
        elif h.address.network.prefixlen > 30:
            add((f"aodv.hosts.{n}.address", f"give the host link's prefix length (at most /30), e.g. {h.address.ip}/24"))
    given: dict[ipaddress.IPv4Address, str] = {}
    pinned = {**{n: a for n, a in m.addresses.items()}, **{n: x.address for n, x in m.mobile_nodes.items() if x.address}}
    for n, a in pinned.items():
        p = f"aodv.mobile_nodes.{n}.address" if n in m.mobile_nodes and n not in m.addresses else f"aodv.addresses.{n}"
        if a not in m.prefix:
            add((p, f"{a} is outside the mesh prefix {m.prefix}; pick an address in it"))
        elif a in given:
            add((p, f"{a} is already {given[a]}'s address; leave it out to derive a free one"))
        given.setdefault(a, n)
    if len(msrs) + len(m.mobile_nodes) > max(0, m.prefix.num_addresses - 2):
        add(("aodv.prefix", f"{m.prefix} has too few addresses for {len(msrs) + len(m.mobile_nodes)} nodes; use a larger prefix"))
    names: dict[str, str] = {}
    for where, group in (("aodv.links", msrs), ("aodv.mobile_nodes", list(m.mobile_nodes)), ("aodv.hosts", list(m.hosts))):
        for n in group:
            if n in names or n in others:
                add((f"{where}.{n}" if where != "aodv.links" else where,
                     f"node name {n!r} is also {names.get(n, 'a node elsewhere in the lab')}; rename one of them"))
            names.setdefault(n, where)
    return out


def merge_options(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base`` (AODV AgentConfig dicts): nested dicts
    merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_options(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def addresses(m: Mesh) -> dict[str, ipaddress.IPv4Address]:
    """node -> /32 address: the given ones, then MSRs and mobile nodes in order, lowest free first."""
    from .addressing import Pool

    out = dict(m.addresses) | {n: x.address for n, x in m.mobile_nodes.items() if x.address}
    pool = Pool(m.prefix, out.values())
    for n in m.msrs() + list(m.mobile_nodes):
        if n not in out:
            out[n] = pool.take()
    return out


def build(c: "Compiler") -> None:
    """Add the mesh's nodes, cells, links and AODV configs to compilation ``c``."""
    from . import agents
    from .addressing import Pool
    from .compiler import AODV_SYSCTLS, cell

    m = c.lab.aodv
    if m is None:
        return
    addr = addresses(m)
    ifs: dict[str, list[str]] = {}
    announced: dict[str, list[str]] = {}
    for r in m.msrs():
        c.node(r, "msr", description="MSR of the AODV mesh (claim 25)", sysctls=dict(AODV_SYSCTLS))
        ifs[r] = []
    for a, b in m.edges():
        c.nodes[a]["links"].append({"peer": b, "name": f"to-{b}", "peer_name": f"to-{a}"})
        ifs[a].append(f"to-{b}")
        ifs[b].append(f"to-{a}")
    for r in m.cells:
        c.segments[cell(r)] = {"description": f"radio cell of MSR {r}"}
        c.nodes[r]["links"].append({"segment": cell(r), "name": "cell"})
        ifs[r].append("cell")
    for h, x in m.hosts.items():
        gw = Pool(x.address.network, [x.address.ip]).take()
        c.nodes[x.at]["links"].append({"peer": h, "name": f"to-{h}", "address": f"{gw}/{x.address.network.prefixlen}",
                                       "peer_address": str(x.address), "peer_name": "eth0"})
        c.node(h, "host", description=f"correspondent host behind the mesh gateway {x.at}",
               routes=[{"to": str(m.prefix), "via": str(gw)}])
        announced.setdefault(x.at, []).append(str(x.address.network))
    for n, x in m.mobile_nodes.items():
        c.node(n, "mn", description=f"mobile node of the AODV mesh, starts in {x.at}'s cell", sysctls=dict(AODV_SYSCTLS))
        c.nodes[n]["links"].append({"segment": cell(x.at), "name": "eth0"})
        c.ports[n] = f"{cell(x.at)}:{n}"
        ifs[n] = ["eth0"]
    hosts_nets = [str(x.address.network) for x in m.hosts.values()]
    for n, names in ifs.items():
        mobile = n in m.mobile_nodes
        c.nodes[n]["setup"] += [f"ip addr add {addr[n]}/32 dev {i} && ip link set {i} up" for i in names]
        d = agents.aodv(str(addr[n]), "mn" if mobile else "msr", names, [str(m.prefix)] + (hosts_nets if mobile else []),
                        m.handover, m.hello_enabled, {})
        d["link_layer_detection"] = m.link_layer_detection
        if n in announced:
            d["announced_prefixes"] = announced[n]
        if m.weights and not mobile:
            d["weighted_search"] = {"enabled": True, "fanout": 1,
                                    "weights": {str(addr[p]): m.weights.get(p, 1) for p in m.neighbours(n)}}
        d = merge_options(merge_options(d, m.options), m.node_options.get(n, {}))
        if mobile:
            d = merge_options(d, m.mobile_nodes[n].options)
        c.agent(n, "aodv", d)
        if m.start:
            c.nodes[n]["start"].append(agents.AGENTS["aodv"][2].format(path=AGENT_FILE))
            if mobile:
                sink = m.mobile_nodes[n].at
                c.nodes[n]["start_after"].append({"node": sink, "file": agents.STATUS["aodv"], "key": "counters",
                                                  "what": f"the AODV agent of its sink {sink}"})
