"""Topology files: the pydantic schema and the checks that need the whole file.

A topology is refused before anything starts. Every problem is reported with the file,
the path inside it (``nodes.sg-a.links[1].address``), what is wrong and how to fix it,
because a lab that half-starts on a typo costs more time than reading one clear line.

Two passes: pydantic checks the shape of each field (types, names, ranges); then
``_check_references`` checks what spans fields: links to missing nodes or segments,
addresses outside their subnet, duplicate addresses inside one realm (realms may overlap,
so duplicates are only an error within the same realm), gateways that are not on a
connected subnet, and that every address is in a range the testbed may use.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
ITEM_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
IFNAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,14}$")
RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit)$")

# The only ranges a lab may use: documentation (RFC 5737) for the emulated Internet and
# private (RFC 1918) inside M-VPNs. Anything else could be mistaken for a real host.
PUBLIC_RANGES = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
PRIVATE_RANGES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
INTERNET = "internet"


class Role(str, Enum):
    """What a node is for; decides its default sysctls and image."""

    mn = "mn"
    msr = "msr"
    sg = "sg"
    msm = "msm"
    fa = "fa"
    ha = "ha"
    router = "router"
    host = "host"


FORWARDING_ROLES = {Role.msr, Role.sg, Role.fa, Role.ha, Role.router}


class TopologyError(Exception):
    """A topology that cannot be built; ``problems`` holds one line per fault."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems]
        super().__init__(f"{len(problems)} problem(s) in the topology:\n" + "\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class MVPN(_Strict):
    """A mobile VPN with its private address realm (realms of different M-VPNs may overlap)."""

    realm: ipaddress.IPv4Network
    description: str = ""

    @field_validator("realm")
    @classmethod
    def _private(cls, v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if not any(v.subnet_of(r) for r in PRIVATE_RANGES):
            raise ValueError(f"{v} is not an RFC 1918 range; use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        return v


class Impairment(_Strict):
    """Loss in percent (nftables random drop) and a rate limit (tbf). No delay: the kernel has no netem."""

    loss: float = Field(0.0, ge=0, le=100, description="percent of packets dropped on egress")
    rate: str | None = Field(None, description="tbf rate such as 10mbit")

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None and not RATE.match(v):
            raise ValueError(f"rate {v!r} is not like 10mbit, 512kbit or 1gbit")
        return v


class Segment(Impairment):
    """A shared broadcast domain (a bridge) that several nodes attach to."""

    mvpn: str | None = Field(None, description="the M-VPN whose realm this segment is in; unset for public or visited networks")
    subnet: ipaddress.IPv4Network | None = None
    description: str = ""


class Link(Impairment):
    """One interface of a node: either on a segment or a point-to-point veth to a peer node."""

    segment: str | None = None
    peer: str | None = None
    address: ipaddress.IPv4Interface | None = None
    peer_address: ipaddress.IPv4Interface | None = None
    name: str | None = Field(None, description="interface name inside the node (default eth<N>)")
    peer_name: str | None = None
    realm: str | None = Field(None, description="for point-to-point links: the M-VPN whose realm the private addresses are in")

    @field_validator("name", "peer_name")
    @classmethod
    def _ifname(cls, v: str | None) -> str | None:
        if v is not None and not IFNAME.match(v):
            raise ValueError(f"interface name {v!r} must be 1-15 letters, digits, '-' or '_', starting with a letter")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> "Link":
        if (self.segment is None) == (self.peer is None):
            raise ValueError("give exactly one of 'segment' (shared segment) or 'peer' (point-to-point link)")
        if self.segment is not None and (self.peer_address or self.peer_name):
            raise ValueError("'peer_address' and 'peer_name' belong to point-to-point links, not segment links")
        return self


class Route(_Strict):
    """A static route: ``to`` a CIDR or ``default``, ``via`` a gateway on a connected subnet."""

    to: str
    via: ipaddress.IPv4Address | None = None
    dev: str | None = None
    metric: int | None = Field(None, ge=0)

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        if v != "default":
            try:
                ipaddress.ip_network(v, strict=True)
            except ValueError as e:
                raise ValueError(f"{v!r} is not 'default' or a network such as 10.0.0.0/24 ({e})") from None
        return v

    @model_validator(mode="after")
    def _target(self) -> "Route":
        if self.via is None and self.dev is None:
            raise ValueError("a route needs 'via' (gateway address) or 'dev' (interface)")
        return self


class Ready(_Strict):
    """A condition on another node's status file (testbed.common.ready): the node's
    ``start`` commands run only once it holds, or bring-up fails naming it after
    ``timeout_s`` seconds."""

    node: str
    file: str = Field(description="absolute path of the status file (JSON) inside that node")
    key: str | None = Field(None, description="dotted key that must exist (and be true, or equal 'equals')")
    equals: str | int | bool | None = None
    timeout_s: float = Field(90.0, gt=0, le=600)
    what: str = Field("", description="what is waited for, named when it times out")


class Node(_Strict):
    """One container."""

    role: Role
    mvpn: str | None = None
    image: str | None = Field(None, description="override the role's image")
    links: list[Link] = []
    routes: list[Route] = []
    sysctls: dict[str, str | int] = {}
    env: dict[str, str] = {}
    volumes: list[str] = Field([], description="paths inside the node kept in the lab's folder across node restarts")
    files: dict[str, str] = Field({}, description="files written into the node before 'setup' runs: path -> content")
    setup: list[str] = Field([], description="shell commands run to completion after wiring, in order")
    start: list[str] = Field([], description="long-running commands started in the background after setup")
    start_after: list[Ready] = Field([], description="status conditions on other nodes that must hold before 'start' runs")
    description: str = ""

    @field_validator("volumes")
    @classmethod
    def _abs(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"volume {p!r} must be an absolute path inside the node")
        return v

    @field_validator("files")
    @classmethod
    def _abs_files(cls, v: dict[str, str]) -> dict[str, str]:
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"file {p!r} must be an absolute path inside the node")
        return v


class Topology(_Strict):
    """A whole lab: M-VPNs, segments and nodes."""

    name: str = Field(description="default lab name: 1-8 lowercase letters/digits, starting with a letter")
    description: str = ""
    mvpns: dict[str, MVPN] = {}
    segments: dict[str, Segment] = {}
    nodes: dict[str, Node]

    @field_validator("name")
    @classmethod
    def _lab_name(cls, v: str) -> str:
        check_lab_name(v)
        return v

    @field_validator("nodes", "segments")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_item_names(v)

    @field_validator("mvpns", mode="before")
    @classmethod
    def _mvpn_names(cls, v: Any) -> Any:
        # M-VPN names are written as A, B, C in the claims; accept upper case there.
        if isinstance(v, dict):
            for k in v:
                if not re.match(r"^[A-Za-z][A-Za-z0-9-]{0,30}$", str(k)):
                    raise ValueError(f"M-VPN name {k!r} must be letters, digits and '-'")
        return v


def check_item_names(v: dict[str, Any]) -> dict[str, Any]:
    """Node, segment and other item names become interface and container names."""
    for k in v:
        if not ITEM_NAME.match(k):
            raise ValueError(f"name {k!r} must be lowercase letters, digits and '-', starting with a letter, at most 31 characters")
    return v


def check_lab_name(name: str) -> None:
    """Lab names prefix every interface and namespace, so they must be short and plain."""
    if not LAB_NAME.match(name):
        raise ValueError(
            f"lab name {name!r} must be 1-8 lowercase letters or digits starting with a letter "
            "(it prefixes interface names, which Linux limits to 15 characters)"
        )


# ---------------------------------------------------------------------------------------
# Resolved view: what the engine builds from a valid topology.


@dataclass(frozen=True)
class Endpoint:
    """One end of a wire as the engine builds it: a node's interface with its address."""

    node: str
    ifname: str
    address: ipaddress.IPv4Interface | None
    realm: str
    path: str  # where the address is written in the file, for error messages


@dataclass(frozen=True)
class Wire:
    """A veth pair: either node-to-node (``b`` set) or node-to-segment (``segment`` set)."""

    key: str  # stable name used by the CLI: "<segment>:<node>" or "<a>--<b>"
    a: Endpoint
    b: Endpoint | None
    segment: str | None
    impair: Impairment


def _p2p_realm(addr: ipaddress.IPv4Interface | None, explicit: str | None, node: Node, fallback: str) -> str:
    if addr is not None and any(addr.ip in r for r in PUBLIC_RANGES):
        return INTERNET
    return explicit or node.mvpn or fallback


def wires(topo: Topology) -> list[Wire]:
    """Every veth the topology needs, with interface names assigned (eth0, eth1, ... per node
    in the order links appear in the file; a point-to-point link takes the next free name on
    its peer as well)."""
    counters: dict[str, int] = {n: 0 for n in topo.nodes}
    taken: dict[str, set[str]] = {n: {l.name for l in nd.links if l.name} for n, nd in topo.nodes.items()}
    for nd in topo.nodes.values():
        for l in nd.links:
            if l.peer and l.peer_name and l.peer in taken:
                taken[l.peer].add(l.peer_name)

    def next_name(node: str) -> str:
        while True:
            name = f"eth{counters[node]}"
            counters[node] += 1
            if name not in taken[node]:
                taken[node].add(name)
                return name

    out: list[Wire] = []
    for name, node in topo.nodes.items():
        for i, link in enumerate(node.links):
            lp = f"nodes.{name}.links[{i}]"
            ifname = link.name or next_name(name)
            if link.segment is not None:
                seg = topo.segments[link.segment]
                if link.address is not None and any(link.address.ip in r for r in PUBLIC_RANGES):
                    realm = INTERNET
                else:
                    realm = seg.mvpn or f"segment:{link.segment}"
                imp = Impairment(loss=max(link.loss, seg.loss), rate=link.rate or seg.rate)
                out.append(Wire(f"{link.segment}:{name}", Endpoint(name, ifname, link.address, realm, f"{lp}.address"),
                                None, link.segment, imp))
            else:
                assert link.peer is not None
                peer = topo.nodes[link.peer]
                pname = link.peer_name or next_name(link.peer)
                fallback = f"link:{'--'.join(sorted((name, link.peer)))}"
                key = f"{name}--{link.peer}"
                if _dup_pair(out, name, link.peer):
                    key = f"{key}.{ifname}"
                out.append(Wire(key,
                                Endpoint(name, ifname, link.address, _p2p_realm(link.address, link.realm, node, fallback), f"{lp}.address"),
                                Endpoint(link.peer, pname, link.peer_address, _p2p_realm(link.peer_address, link.realm, peer, fallback), f"{lp}.peer_address"),
                                None, Impairment(loss=link.loss, rate=link.rate)))
    return out


def _dup_pair(done: list[Wire], a: str, b: str) -> bool:
    return any(w.key in (f"{a}--{b}", f"{b}--{a}") for w in done)


# ---------------------------------------------------------------------------------------
# Loading and checking.


def _loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and part.startswith("kind:"):
            continue  # a tag of a union (orchestration.checks.model.AnyCheck), not a field
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_topology(data: Any, source: str = "<topology>") -> Topology:
    """Validate already-loaded YAML/JSON data; raise TopologyError naming every fault."""
    if not isinstance(data, dict):
        raise TopologyError(source, [("", "the file must be a mapping with 'name' and 'nodes' at the top")])
    try:
        topo = Topology.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = [p for p in err["loc"] if p not in ("function-after[_one_kind(), Link]",)]
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field; remove it or check its spelling"
            elif err["type"] == "missing":
                msg = "required field is missing"
            problems.append((_loc(loc), msg))
        raise TopologyError(source, problems) from None
    problems = _check_references(topo)
    if problems:
        raise TopologyError(source, problems)
    return topo


def read_yaml_file(p: Path) -> Any:
    """A YAML file's data (unique keys, orchestration.yamlfile); TopologyError naming the
    file, line and column when it is missing or not valid YAML."""
    from .yamlfile import YamlError, load_yaml

    if not p.is_file():
        raise TopologyError(str(p), [("", "no such file")])
    try:
        return load_yaml(p)
    except YamlError as e:
        raise TopologyError(str(p), [("", f"{e.where}: not valid YAML: {e.problem}")]) from None


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file. A lab file at the level of the domain (top-level
    ``kind: lab``) is compiled to a topology first (orchestration.domain). Duplicate keys are
    refused with their line (orchestration.yamlfile)."""
    p = Path(path)
    data = read_yaml_file(p)
    if isinstance(data, dict) and data.get("kind") == "lab":
        from .domain import compile_lab

        return compile_lab(data, str(p)).topology
    return parse_topology(data, str(p))


def _range_problem(addr: ipaddress.IPv4Interface) -> str | None:
    if any(addr.ip in r for r in PUBLIC_RANGES + PRIVATE_RANGES):
        return None
    return (f"{addr} is outside the ranges a lab may use; use RFC 5737 (192.0.2.0/24, 198.51.100.0/24, "
            "203.0.113.0/24) on the emulated Internet or RFC 1918 inside M-VPNs")


def _check_references(topo: Topology) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    add = lambda path, msg: problems.append((path, msg))  # noqa: E731

    for sname, seg in topo.segments.items():
        if seg.mvpn is not None and seg.mvpn not in topo.mvpns:
            add(f"segments.{sname}.mvpn", f"unknown M-VPN {seg.mvpn!r}; declare it under 'mvpns' ({_known(topo.mvpns)})")
        if seg.mvpn in topo.mvpns and seg.subnet is not None and not seg.subnet.subnet_of(topo.mvpns[seg.mvpn].realm):
            add(f"segments.{sname}.subnet", f"{seg.subnet} is outside M-VPN {seg.mvpn}'s realm {topo.mvpns[seg.mvpn].realm}")

    for nname, node in topo.nodes.items():
        base = f"nodes.{nname}"
        if node.mvpn is not None and node.mvpn not in topo.mvpns:
            add(f"{base}.mvpn", f"unknown M-VPN {node.mvpn!r}; declare it under 'mvpns' ({_known(topo.mvpns)})")
        for i, link in enumerate(node.links):
            lp = f"{base}.links[{i}]"
            if link.segment is not None and link.segment not in topo.segments:
                add(f"{lp}.segment", f"unknown segment {link.segment!r}; declare it under 'segments' ({_known(topo.segments)})")
            if link.peer is not None:
                if link.peer == nname:
                    add(f"{lp}.peer", "a link cannot join a node to itself")
                elif link.peer not in topo.nodes:
                    add(f"{lp}.peer", f"unknown node {link.peer!r}; declare it under 'nodes' ({_known(topo.nodes)})")
            if link.realm is not None and link.realm not in topo.mvpns:
                add(f"{lp}.realm", f"unknown M-VPN {link.realm!r}")
            for field, addr in (("address", link.address), ("peer_address", link.peer_address)):
                if addr is None:
                    continue
                rp = _range_problem(addr)
                if rp:
                    add(f"{lp}.{field}", rp)
                if addr.ip == addr.network.network_address or (addr.network.prefixlen < 31 and addr.ip == addr.network.broadcast_address):
                    add(f"{lp}.{field}", f"{addr.ip} is the network or broadcast address of {addr.network}; pick a host address")
            seg = topo.segments.get(link.segment or "")
            if seg is not None and seg.subnet is not None and link.address is not None:
                if link.address.ip not in seg.subnet:
                    add(f"{lp}.address", f"{link.address} is outside segment {link.segment}'s subnet {seg.subnet}; use an address in {seg.subnet}")
                elif link.address.network != seg.subnet:
                    add(f"{lp}.address", f"prefix /{link.address.network.prefixlen} differs from segment {link.segment}'s subnet {seg.subnet}; write it as {link.address.ip}/{seg.subnet.prefixlen}")
            if link.address and link.peer_address and link.address.network != link.peer_address.network:
                add(f"{lp}.peer_address", f"{link.peer_address} is not in the same subnet as {link.address}; both ends of a point-to-point link share one subnet")
            if link.address and link.peer_address and link.address.ip == link.peer_address.ip:
                add(f"{lp}.peer_address", "both ends have the same address")
        for i, r in enumerate(node.start_after):
            if r.node not in topo.nodes:
                add(f"{base}.start_after[{i}].node", f"unknown node {r.node!r}; declare it under 'nodes' ({_known(topo.nodes)})")
            elif r.node == nname:
                add(f"{base}.start_after[{i}].node", "a node cannot wait for itself; wrap the start command in python3 -m testbed.common.ready instead")
        names = [l.name for l in node.links if l.name]
        for dup in {n for n in names if names.count(n) > 1}:
            add(f"{base}.links", f"interface name {dup!r} is used twice")

    if problems:
        return problems  # the checks below need consistent references

    cycle = start_cycle(topo)
    if cycle:
        add(f"nodes.{cycle[0]}.start_after", f"start order has a cycle: {' -> '.join(cycle)}; remove one of these waits")

    ws = wires(topo)
    # interface-name clashes caused by peer_name
    seen_if: dict[tuple[str, str], str] = {}
    for w in ws:
        for ep in (w.a, w.b):
            if ep is None:
                continue
            if (ep.node, ep.ifname) in seen_if:
                add(f"nodes.{ep.node}.links", f"interface {ep.ifname} is created twice ({seen_if[(ep.node, ep.ifname)]} and {w.key}); give one a different name")
            seen_if[(ep.node, ep.ifname)] = w.key

    # duplicate addresses per realm (realms may overlap; inside one realm an address is unique)
    owners: dict[tuple[str, str], str] = {}
    for w in ws:
        for ep in (w.a, w.b):
            if ep is None or ep.address is None:
                continue
            k = (ep.realm, str(ep.address.ip))
            if k in owners:
                where = "the Internet" if ep.realm == INTERNET else f"realm {ep.realm}"
                add(ep.path, f"{ep.address.ip} is already used in {where} by {owners[k]}; addresses must be unique within one realm")
            else:
                owners[k] = ep.path

    # gateways must be on a connected subnet of the node
    for nname, node in topo.nodes.items():
        nets = [ep.address.network for w in ws for ep in (w.a, w.b) if ep and ep.node == nname and ep.address]
        ifnames = {ep.ifname for w in ws for ep in (w.a, w.b) if ep and ep.node == nname}
        for i, r in enumerate(node.routes):
            if r.via is not None and nets and not any(r.via in n for n in nets):
                add(f"nodes.{nname}.routes[{i}].via", f"gateway {r.via} is not on any subnet of {nname} ({', '.join(map(str, nets))})")
            if r.via is not None and not nets:
                add(f"nodes.{nname}.routes[{i}].via", f"{nname} has no addressed link, so gateway {r.via} cannot be reached")
            if r.dev is not None and r.dev not in ifnames:
                add(f"nodes.{nname}.routes[{i}].dev", f"{nname} has no interface {r.dev!r} ({', '.join(sorted(ifnames)) or 'none'})")
    return problems


def start_levels(topo: Topology) -> list[list[str]]:
    """Nodes in start order: level 0 waits for nobody, level n for nodes of levels < n.
    Raises ValueError on a cycle (see :func:`start_cycle`)."""
    deps = {n: {r.node for r in nd.start_after if r.node in topo.nodes} for n, nd in topo.nodes.items()}
    levels: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(deps):
        level = [n for n in deps if n not in done and deps[n] <= done]
        if not level:
            raise ValueError("start order has a cycle")
        levels.append(level)
        done.update(level)
    return levels


def start_cycle(topo: Topology) -> list[str]:
    """One cycle of start_after waits as a node list (first node repeated at the end), or []."""
    deps = {n: [r.node for r in nd.start_after if r.node in topo.nodes] for n, nd in topo.nodes.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        stack.append(n)
        for d in deps[n]:
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[n] = 2
        return []

    for n in deps:
        if n not in state and (c := visit(n)):
            return c
    return []


def _known(d: dict[str, Any]) -> str:
    return "known: " + ", ".join(sorted(d)) if d else "none declared"


def endpoints_of(topo: Topology, node: str) -> list[Endpoint]:
    """The interfaces of one node, in creation order."""
    return [ep for w in wires(topo) for ep in (w.a, w.b) if ep is not None and ep.node == node]

