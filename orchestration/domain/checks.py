"""Checks of a whole lab file at the level of the domain, before anything is compiled.

Each problem is ``(path, message)``: the path inside the file (``workgroups.W[2]``) and a
message that says what is wrong and how to fix it. orchestration.topology.TopologyError
turns them into ``file: path: message`` lines.
"""
from __future__ import annotations

import ipaddress
from typing import Callable

from ..checks.model import check_nodes, check_points
from ..topology import PRIVATE_RANGES, PUBLIC_RANGES
from . import access, homedomain, internet, testing
from .compiler import lan, sg_node
from .model import LabFile
from .mesh import mesh_problems, node_names

Problems = list[tuple[str, str]]


def _known(names) -> str:  # type: ignore[no-untyped-def]
    names = sorted(names)
    return f"known: {', '.join(names)}" if names else "none declared"


def check_lab(lab: LabFile) -> Problems:
    """Every domain-level fault of ``lab`` (empty list when it can be compiled)."""
    out: Problems = []
    add: Callable[[str, str], None] = lambda p, m: out.append((p, m))  # noqa: E731
    _references(lab, add)
    out += access.problems(lab)
    if out:
        return out  # the checks below assume the references resolve
    _addresses(lab, add)
    _workgroups(lab, add)
    out += mesh_problems(lab, _all_node_names(lab, mesh=False) - set(lab.nodes))
    _mobility(lab, add)
    _names(lab, add)
    _schedule(lab, add)
    out += internet.problems(lab) + testing.problems(lab)
    return out


def _references(lab: LabFile, add: Callable[[str, str], None]) -> None:
    for kind, group in (("mobile_nodes", lab.mobile_nodes), ("hosts", lab.hosts), ("users", lab.users)):
        for n, x in group.items():
            if x.mvpn not in lab.mvpns:
                add(f"{kind}.{n}.mvpn", f"unknown M-VPN {x.mvpn!r}; declare it under 'mvpns' ({_known(lab.mvpns)})")
    for m, mv in lab.mvpns.items():
        if mv.home_agent and mv.home_agent.operator not in lab.operators:
            add(f"mvpns.{m}.home_agent.operator", f"unknown operator HA {mv.home_agent.operator!r}; declare it under "
                f"'operators' ({_known(lab.operators)})")
    if lab.msm and lab.msm.operator and lab.msm.operator not in lab.operators:
        add("msm.operator", f"unknown operator HA {lab.msm.operator!r}; declare it under 'operators' ({_known(lab.operators)})")


def _addresses(lab: LabFile, add: Callable[[str, str], None]) -> None:
    for kind, group in (("mobile_nodes", lab.mobile_nodes), ("hosts", lab.hosts), ("users", lab.users)):
        for n, x in group.items():
            realm = lab.mvpns[x.mvpn].realm
            if x.address is not None and x.address not in realm:
                add(f"{kind}.{n}.address", f"{x.address} is outside M-VPN {x.mvpn}'s realm {realm}; "
                    f"pick an address in {realm} or change the M-VPN")
    # unique within one realm (realms may overlap across M-VPNs, claim 1)
    seen: dict[tuple[str, ipaddress.IPv4Address], str] = {}
    for kind, group in (("mobile_nodes", lab.mobile_nodes), ("hosts", lab.hosts), ("users", lab.users)):
        for n, x in group.items():
            if x.address is None:
                continue
            k = (x.mvpn, x.address)
            if k in seen:
                add(f"{kind}.{n}.address", f"{x.address} is already used in M-VPN {x.mvpn} by {seen[k]}; "
                    "addresses are unique inside one M-VPN (leave it out to derive a free one)")
            seen[k] = f"{kind}.{n}"
    inet = lab.internet.subnet
    if not any(inet.subnet_of(r) for r in PUBLIC_RANGES):
        add("internet.subnet", f"{inet} is not inside an RFC 5737 range; use 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24")
    sg_owner: dict[ipaddress.IPv4Address, str] = {}
    for m, mv in lab.mvpns.items():
        if not any(mv.realm.subnet_of(r) for r in PRIVATE_RANGES):
            add(f"mvpns.{m}.realm", f"{mv.realm} is not an RFC 1918 range; use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        for where, a in ((f"mvpns.{m}.sg.address", mv.sg.address if mv.sg else None),
                         (f"mvpns.{m}.home_agent.address", mv.home_agent.address if mv.home_agent else None)):
            if a is None:
                continue
            if a not in inet:
                add(where, f"{a} is not on the emulated Internet {inet}; use an address in {inet}")
            if a in sg_owner and sg_owner[a] != f"mvpns.{m}.sg":  # an SG in its virtual HA shares its address
                add(where, f"{a} is already the public address of {sg_owner[a]}; every SG and HA needs its own "
                    "(the SG address is the realm index, claims 3, 6)")
            sg_owner[a] = where.rsplit(".", 1)[0]
    for o, op in lab.operators.items():
        if op.address and op.address in sg_owner:
            add(f"operators.{o}.address", f"{op.address} is already used by {sg_owner[op.address]}")
        if op.address and op.address not in inet:
            add(f"operators.{o}.address", f"{op.address} is not on the emulated Internet {inet}")
    if lab.msm and lab.msm.address:
        if lab.msm.address in sg_owner:
            add("msm.address", f"{lab.msm.address} is already used by {sg_owner[lab.msm.address]}")
        if lab.msm.address not in inet:
            add("msm.address", f"{lab.msm.address} is not on the emulated Internet {inet}; use an address in {inet}")
    for n, a in lab.access_networks.items():
        if not any(a.subnet.subnet_of(r) for r in PUBLIC_RANGES):
            add(f"access_networks.{n}.subnet", f"{a.subnet} is not inside an RFC 5737 range")
        elif a.subnet.overlaps(inet):
            add(f"access_networks.{n}.subnet", f"{a.subnet} overlaps the emulated Internet {inet}; use another RFC 5737 range")


def _workgroups(lab: LabFile, add: Callable[[str, str], None]) -> None:
    zone = lab.zone.rstrip(".")
    users = {n: m.mvpn for n, m in lab.mobile_nodes.items()} | {n: u.mvpn for n, u in lab.users.items()}
    fqdns: dict[str, str] = {}
    for kind, table in (("mobile_nodes", lab.mobile_nodes), ("users", lab.users)):
        for n, x in table.items():
            fqdn = x.fqdn or f"{n}.{zone}"
            if fqdn in fqdns:  # the MSM keeps one user per FQDN and would refuse its seed
                add(f"{kind}.{n}.fqdn", f"FQDN {fqdn} is already {fqdns[fqdn]}'s; give {n} its own 'fqdn'")
            fqdns.setdefault(fqdn, n)
    for w, members in lab.workgroups.items():
        for i, mem in enumerate(members):
            name = mem if mem in users else fqdns.get(mem)
            if name is None:
                add(f"workgroups.{w}[{i}]", f"member {mem!r} is no user; declare it under 'mobile_nodes' or 'users' "
                    f"({_known(users)})")
            elif lab.mvpns[users[name]].sg is None and lab.mvpns[users[name]].home_agent is None:
                add(f"workgroups.{w}[{i}]", f"member {mem!r} is in M-VPN {users[name]}, which has no SG; "
                    f"give mvpns.{users[name]}.sg a public address (claim 3) or a home_agent (claim 15)")
        if members and lab.msm is None:
            add(f"workgroups.{w}", "workgroups are kept by the MSM; add 'msm: {}' (address derived) or 'msm: {address: ...}'")
    for n, x in lab.mobile_nodes.items():
        if x.workgroup is None:
            continue
        if x.workgroup not in lab.workgroups:
            add(f"mobile_nodes.{n}.workgroup", f"unknown workgroup {x.workgroup!r}; declare it under 'workgroups' "
                f"({_known(lab.workgroups)})")
        elif n not in lab.workgroups[x.workgroup] and (x.fqdn or f"{n}.{zone}") not in lab.workgroups[x.workgroup]:
            add(f"mobile_nodes.{n}.workgroup", f"{n} signs on to {x.workgroup} but is not a member; add {n} to "
                f"workgroups.{x.workgroup}")


def _mobility(lab: LabFile, add: Callable[[str, str], None]) -> None:
    for p, msg in homedomain.problems(lab):
        add(p, msg)
    for n, x in lab.mobile_nodes.items():
        mv = lab.mvpns[x.mvpn]
        places = {"home"} | set(mv.msrs) | set(lab.access_networks)
        if x.at is not None and x.at not in places:
            add(f"mobile_nodes.{n}.at", f"no network {x.at!r} for M-VPN {x.mvpn}; use one of {', '.join(sorted(places))}")
        if x.mip and mv.home_agent is None:
            add(f"mobile_nodes.{n}.mip", f"Mobile IP needs a home agent; give mvpns.{x.mvpn}.home_agent an operator HA")
    for n, h in lab.hosts.items():
        mv = lab.mvpns[h.mvpn]
        places = {"home"} | set(mv.msrs)
        if h.at is not None and h.at not in places:
            add(f"hosts.{n}.at", f"no network {h.at!r} for M-VPN {h.mvpn}; use one of {', '.join(sorted(places))}")


def _names(lab: LabFile, add: Callable[[str, str], None]) -> None:
    """Every generated node and segment name is made once."""
    owner: dict[str, str] = {}

    def claim(name: str, who: str) -> None:
        if name in owner:
            add(who, f"name {name!r} is also used by {owner[name]}; rename one of them")
        else:
            owner[name] = who

    if lab.internet and (lab.mvpns and any(mv.sg for mv in lab.mvpns.values()) or lab.operators or lab.access_networks):
        claim(lab.internet.router, "internet.router")
    if lab.msm and not lab.msm.operator:
        claim(lab.msm.node, "msm.node")
    for m, mv in lab.mvpns.items():
        if mv.sg and not mv.home_agent:  # an SG in a virtual HA runs on the operator HA node
            claim(sg_node(lab, m), f"mvpns.{m}.sg")
        for i, r in enumerate(mv.msrs):
            claim(r, f"mvpns.{m}.msrs[{i}]")
    for kind, group in (("operators", lab.operators), ("mobile_nodes", lab.mobile_nodes), ("hosts", lab.hosts)):
        for n in group:
            claim(n, f"{kind}.{n}")
    for n, a in lab.access_networks.items():
        claim(a.router or (f"fa-{n}" if a.fa else f"rt-{n}"), f"access_networks.{n}")
    segs: dict[str, str] = {"inet": "the Internet segment"}
    for m, mv in lab.mvpns.items():
        segs[lan(m)] = f"mvpns.{m}"
        for r in mv.msrs:
            segs[homedomain.cell_name(mv, r)] = f"mvpns.{m}.msrs"
    for n in lab.access_networks:
        if n in segs:
            add(f"access_networks.{n}", f"segment name {n!r} is also {segs[n]}; rename the access network")
        segs[n] = f"access_networks.{n}"


def _schedule(lab: LabFile, add: Callable[[str, str], None]) -> None:
    movable = set(lab.mobile_nodes) | set(lab.hosts) | set(lab.aodv.mobile_nodes if lab.aodv else {})
    for i, ev in enumerate(lab.schedule):
        p = f"schedule[{i}]"
        if (ev.move is None) == (ev.link is None):
            add(p, "give exactly one of 'move: NODE, to: NETWORK' or 'link: NODE, up: true|false'")
            continue
        if ev.move is not None:
            if ev.move not in movable:
                add(f"{p}.move", f"{ev.move!r} is no mobile node or host ({_known(movable)})")
                continue
            x = lab.mobile_nodes.get(ev.move) or lab.hosts.get(ev.move)
            places = ({"home"} | set(lab.mvpns[x.mvpn].msrs) | set(lab.access_networks)) if x else set(lab.aodv.cells)  # type: ignore[union-attr]
            if ev.to is None:
                add(f"{p}.to", f"a move needs 'to:' ({', '.join(sorted(places))})")
            elif ev.to not in places:
                add(f"{p}.to", f"no network {ev.to!r} that {ev.move} can move to; use one of {', '.join(sorted(places))}")
        else:
            if ev.link not in movable:
                add(f"{p}.link", f"{ev.link!r} is no mobile node or host ({_known(movable)})")
            if ev.up is None:
                add(f"{p}.up", "a link event needs 'up: true' or 'up: false'")
    ats = [ev.at for ev in lab.schedule]
    if ats != sorted(ats):
        add("schedule", "entries must be in time order ('at' never decreasing)")
    known = _all_node_names(lab)
    for i, c in enumerate(lab.checks):
        for n in check_nodes(c):
            if n not in known:
                add(f"checks[{i}]", f"unknown node {n!r} in check {c.name!r} ({_known(known)})")
    events = {ev.name for ev in lab.schedule if ev.name}
    for i, where, name in check_points(lab.checks):
        if name not in events:
            add(f"checks[{i}]", f"no schedule entry named {name!r} to count {where}; add 'name: {name}' to it, "
                f"or count from start / to end (named entries: {_known(events)})")


def _all_node_names(lab: LabFile, mesh: bool = True) -> set[str]:
    names = set(lab.operators) | set(lab.mobile_nodes) | set(lab.hosts) | set(lab.nodes)
    names |= {n for n, _ in access.names(lab.access)} if lab.access else set()
    for m, mv in lab.mvpns.items():
        names |= set(mv.msrs)
        if mv.sg:
            names.add(sg_node(lab, m))
    if lab.msm and not lab.msm.operator:
        names.add(lab.msm.node)
    names.add(lab.internet.router)
    names |= {a.router or (f"fa-{n}" if a.fa else f"rt-{n}") for n, a in lab.access_networks.items()}
    names |= node_names(lab.aodv) if mesh else set()
    return names
