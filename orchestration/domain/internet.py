"""The emulated Internet beyond one segment: a chain of routers, and hosts on the Internet.

``internet.routers: {r1: [A, B], r2: [C]}`` replaces the single Internet segment and its
backbone router with routers joined in a chain (r1 -- r2 -- ...); each SG listed under a
router gets a /30 point-to-point link to it, the /30 that holds the SG's public address
(claim 3; the other host address of that /30 is the router's end). Router-to-router links
take the next free /30s of ``internet.subnet``. Every router gets a route to every /30 it is
not attached to, through its neighbour in the chain, and no default route: no router knows
a private realm (claim 1). Used by the ``realms`` scenario.

``internet.hosts: {x: 198.51.100.66}`` adds plain hosts on the Internet segment (a
correspondent, or an anonymous intruder with no certificate and no token), default route
via the backbone router.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Callable

from .model import LabFile

if TYPE_CHECKING:  # the compiler imports this module
    from .compiler import Compiler

Problems = list[tuple[str, str]]
SG_IF = "inet"  # the SG's end of its router link: the name the SG edge filter matches


def sg_link(address: ipaddress.IPv4Address) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """The /30 that holds an SG's public ``address`` and the router's end of it."""
    net = ipaddress.IPv4Network(f"{address}/30", strict=False)
    return net, next(a for a in net.hosts() if a != address)


def router_of(lab: LabFile) -> dict[str, str]:
    """M-VPN -> the Internet router its SG is attached to (empty without ``internet.routers``)."""
    return {m: r for r, mvpns in lab.internet.routers.items() for m in mvpns}


def problems(lab: LabFile) -> Problems:
    """Faults in ``internet.routers`` and ``internet.hosts`` as ``(path, message and fix)``."""
    out: Problems = []
    add: Callable[[str, str], None] = lambda p, m: out.append((p, m))  # noqa: E731
    inet = lab.internet.subnet
    taken = {n for n in list(lab.mobile_nodes) + list(lab.hosts) + list(lab.operators)}
    if lab.internet.routers:
        for what, present in (("msm", lab.msm is not None), ("operators", bool(lab.operators)),
                              ("access_networks", bool(lab.access_networks)), ("internet.hosts", bool(lab.internet.hosts))):
            if present:
                add("internet.routers", f"a routed Internet carries only SGs for now, not {what}; drop "
                    f"'internet.routers' to put everything on one Internet segment, or drop '{what}'")
        seen: dict[str, str] = {}
        nets: dict[ipaddress.IPv4Network, str] = {}
        for r, mvpns in lab.internet.routers.items():
            if r in taken:
                add(f"internet.routers.{r}", f"name {r!r} is also a node of the lab; rename the router")
            for i, m in enumerate(mvpns):
                p = f"internet.routers.{r}[{i}]"
                if m not in lab.mvpns:
                    add(p, f"unknown M-VPN {m!r}; declare it under 'mvpns'")
                elif lab.mvpns[m].sg is None:
                    add(p, f"M-VPN {m} has no SG to attach; give mvpns.{m}.sg a public address")
                elif m in seen:
                    add(p, f"M-VPN {m} is already attached to router {seen[m]}; list it under one router only")
                else:
                    seen[m] = r
                    a = lab.mvpns[m].sg.address  # type: ignore[union-attr]
                    net, _ = sg_link(a)
                    if a in (net.network_address, net.broadcast_address):
                        add(f"mvpns.{m}.sg.address", f"{a} is not a host address of its /30 {net}; use "
                            f"{net.network_address + 1} or {net.network_address + 2}")
                    elif net in nets:
                        add(f"mvpns.{m}.sg.address", f"{a} shares the /30 {net} with the SG of M-VPN {nets[net]}; "
                            "each SG needs its own /30 on a routed Internet (e.g. 192.0.2.1, .5, .9)")
                    nets[net] = m
        for m, mv in lab.mvpns.items():
            if mv.sg and m not in seen and not out:
                add(f"mvpns.{m}.sg", f"the SG of M-VPN {m} is attached to no router; list {m} under one of "
                    f"internet.routers ({', '.join(lab.internet.routers)})")
    for h, a in lab.internet.hosts.items():
        if h in taken or h in lab.internet.routers or h == lab.internet.router:
            add(f"internet.hosts.{h}", f"name {h!r} is also a node of the lab; rename the host")
        if a not in inet:
            add(f"internet.hosts.{h}", f"{a} is not on the emulated Internet {inet}; use an address in {inet}")
        owners = [f"mvpns.{m}.sg" for m, mv in lab.mvpns.items() if mv.sg and mv.sg.address == a]
        owners += ["msm"] if lab.msm and lab.msm.address == a else []
        if owners:
            add(f"internet.hosts.{h}", f"{a} is already the address of {owners[0]}; pick a free address in {inet}")
    return out


def build_routers(c: "Compiler") -> None:
    """The router chain: nodes, router-to-router links and every router's routes."""
    lab = c.lab
    chain = list(lab.internet.routers)
    used = [sg_link(lab.mvpns[m].sg.address)[0] for m in router_of(lab)]  # type: ignore[union-attr]
    free = (n for n in lab.internet.subnet.subnets(new_prefix=30) if not any(n.overlaps(u) for u in used))
    attached: list[tuple[ipaddress.IPv4Network, set[int]]] = []  # each /30 and the chain positions on it
    for r in chain:
        c.node(r, "router", sysctls={"net.ipv4.ip_forward": 1},
               description="router of the emulated Internet: routes only public /30s, no private realm")
    for m, r in router_of(lab).items():
        attached.append((sg_link(lab.mvpns[m].sg.address)[0], {chain.index(r)}))  # type: ignore[union-attr]
    near: dict[tuple[int, int], ipaddress.IPv4Address] = {}  # (router, neighbour) -> neighbour's address
    for i in range(len(chain) - 1):
        net = next(free)
        lo, hi = list(net.hosts())
        c.nodes[chain[i]]["links"].append({"peer": chain[i + 1], "address": f"{lo}/30", "peer_address": f"{hi}/30"})
        near[(i, i + 1)], near[(i + 1, i)] = hi, lo
        attached.append((net, {i, i + 1}))
    for i, r in enumerate(chain):
        for net, at in attached:
            if i in at:
                continue
            step = i + 1 if min(at) > i else i - 1
            c.nodes[r]["routes"].append({"to": str(net), "via": str(near[(i, step)])})


def attach_sg(c: "Compiler", node: str, address: ipaddress.IPv4Address) -> None:
    """An SG's link to its Internet router and its default route through it."""
    m = c.nodes[node]["mvpn"]
    net, rtr = sg_link(address)
    c.nodes[node]["links"].append({"peer": router_of(c.lab)[m], "address": f"{address}/30",
                                   "peer_address": f"{rtr}/30", "name": SG_IF})
    c.nodes[node]["routes"].append({"to": "default", "via": str(rtr)})


def build_hosts(c: "Compiler") -> None:
    """Plain hosts on the Internet segment (no agent), default route via the backbone router."""
    for h, a in c.lab.internet.hosts.items():
        c.node(h, "host", description="host on the emulated Internet (no certificate, no token)")
        c.inet_link(h, a, ifname="eth0")
        c.inet_routes(h)
