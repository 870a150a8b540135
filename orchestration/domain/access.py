"""Compile a lab's access plane (orchestration.domain.accessmodel, claims 40-62) into nodes.

What is derived: the cell and core segments; the sink on both (cell address = the cell's
first free, core address = the core's first free, the gateway the MSM's DIAMETER server
hands out for the M-VPN); the MSM on the core LAN with its DIAMETER server (users and
secrets from the cell's nodes), no DNS; the AODV neighbour on a point-to-point link with
/32 addresses only (discovery, not a connected route, finds what it announces); the FA of
the visitors' M-VPN with one IP-IP tunnel peer per visitor and the route to the visitors'
home addresses on its LAN, the sink's route to that M-VPN through it; hosts with routes to the cell through the sink.

The sink's own agents (AODV + access sink + DHCP hello server, testbed.access.msr) are not
started here: their certificates come from the running MSM, so the scenario starts them.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import yaml

from testbed.tunnel.config import TunnelConfig

from . import agents
from .addressing import Pool
from .model import LabFile

if TYPE_CHECKING:
    from .compiler import Compiler

DIAMETER_LOG = "/var/log/testbed/msm-diameter.jsonl"
TUNNEL_FILE = "/etc/testbed/tunnel.yaml"


def compile_plane(c: "Compiler") -> None:
    """Add the access plane's segments and nodes to the compiler's topology."""
    from .compiler import lan

    lab, a = c.lab, c.lab.access
    assert a is not None
    m, realm = a.mvpn, lab.mvpns[a.mvpn].realm
    cell_seg, core_seg = a.cell.name or f"cell-{a.sink}", a.core.name or lan(m)
    visitors = a.fa.visitors if a.fa else {}
    cell = Pool(a.cell.subnet, [x.address for x in a.nodes.values() if x.address] + [v.address for v in visitors.values()])
    core = Pool(a.core.subnet, [x for x in a.core.hosts.values() if x] + [x for x in (a.msm.address, a.fa and a.fa.address) if x])
    sink_cell, sink_core = cell.take(), core.take()
    msm_addr = a.msm.address or core.take()
    c.segments[cell_seg] = {"mvpn": m, "subnet": str(a.cell.subnet), "description": f"radio cell of sink {a.sink}"}
    c.segments[core_seg] = {"mvpn": m, "subnet": str(a.core.subnet), "description": f"core LAN of M-VPN {m}"}
    to_cell = {"to": str(a.cell.subnet), "via": str(sink_core)}

    def on(seg: str, pool: Pool, addr: ipaddress.IPv4Address) -> dict[str, Any]:
        return {"segment": seg, "address": str(pool.iface(addr))}

    # the MSM with its DIAMETER server (claims 41-45, 56)
    zone = lab.zone.rstrip(".")
    addrs = {n: x.address or cell.take() for n, x in a.nodes.items()}
    users = {f"{x.user or n}.{zone}": (n, x) for n, x in a.nodes.items()}
    inet = Pool(lab.internet.subnet)  # the MSM's store wants an SG address per M-VPN; none listens here
    mvpns = [{"name": k, "realm": str(v.realm), "sg_public": str(v.sg.address if v.sg else inet.take())}
             for k, v in lab.mvpns.items()]
    seed_users = [{"fqdn": f, "mvpn": m, "private_address": str(addrs[n])} for f, (n, _) in users.items()]
    nd = c.node(a.msm.name, "msm", mvpn=m, description=f"the MSM of M-VPN {m}: portal, CA, DIAMETER server (claims 41, 56)")
    nd["links"].append(on(core_seg, core, msm_addr))
    nd["routes"].append(to_cell)
    data = agents.msm(str(msm_addr), zone, mvpns, seed_users, {}, [])
    data.update({"allow_test_certs": a.msm.test_certs, "dns_enabled": False,
                 "diameter": {"enabled": True, "port": 3868, "exchange_log": DIAMETER_LOG,
                              "secrets": {f: x.secret for f, (_, x) in users.items() if x.secret},
                              "gateways": {m: str(sink_core)}}})
    nd["start"].append(c.agent(a.msm.name, "msm", data).command)

    # the sink: cell, core, and the AODV link to its neighbour (/32 only)
    nd = c.node(a.sink, "msr", mvpn=m, description=f"sink of cell {cell_seg}: access plane and AODV (claims 40-62)")
    nd["links"] += [on(cell_seg, cell, sink_cell), on(core_seg, core, sink_core)]
    if a.neighbour:
        n = a.neighbour
        mine, theirs = list(n.link.hosts())[:2]
        nd["links"].append({"peer": n.name, "address": f"{mine}/{n.link.prefixlen}",
                            "peer_address": f"{theirs}/{n.link.prefixlen}", "realm": m})
        dev = f"eth{len(nd['links']) - 1}"
        nd["setup"].append(f"ip addr flush dev {dev} && ip addr add {mine}/32 dev {dev}")
        nb = c.node(n.name, "msr", mvpn=m, description=f"AODV router behind sink {a.sink}: {', '.join(map(str, n.announce))}")
        lo = "".join(f" && ip addr add {next(p.hosts())}/32 dev lo" for p in n.announce)
        nb["setup"].append(f"ip addr flush dev eth0 && ip addr add {theirs}/32 dev eth0{lo}")
        nb["start"].append(c.agent(n.name, "aodv", {"address": str(theirs), "interfaces": ["eth0"], "managed_prefixes": [str(realm)],
                                 "announced_prefixes": [str(p) for p in n.announce],
                                 "timers": {"hello_interval_ms": 500}, "status_file": agents.STATUS["aodv"]}).command)
    for h, addr in a.core.hosts.items():
        c.node(h, "host", mvpn=m, description=f"home host of M-VPN {m}", links=[on(core_seg, core, addr or core.take())],
               routes=[to_cell])

    # the visitors' FA and its M-VPN's LAN (claims 46-49)
    if a.fa:
        f, fm = a.fa, a.fa.mvpn
        lan_pool = Pool(lab.mvpns[fm].realm, [x for x in f.hosts.values() if x])
        fa_lan, fa_core = lan_pool.last(), f.address or core.take()
        c.segments.setdefault(lan(fm), {"mvpn": fm, "subnet": str(lab.mvpns[fm].realm), "description": f"LAN of M-VPN {fm}"})
        nd = c.node(f.name, "fa", mvpn=fm, description=f"FA of M-VPN {fm}: visitors' IP-IP tunnels end here (claims 46-49)")
        nd["links"] += [on(core_seg, core, fa_core), on(lan(fm), lan_pool, fa_lan)]
        nd["routes"].append(to_cell)
        c.nodes[a.sink]["routes"].append({"to": str(lab.mvpns[fm].realm), "via": str(fa_core)})
        tunnel = {"local": str(fa_core), "mode": "userspace", "status_file": "/run/testbed/tunnel.json",
                  "peers": {v: {"addr": str(x.address), "routes": [f"{x.home}/32"]} for v, x in f.visitors.items()}}
        TunnelConfig.model_validate(tunnel)
        nd["files"][TUNNEL_FILE] = yaml.safe_dump(tunnel, sort_keys=False, default_flow_style=None)
        nd["start"].append(f"python3 -m testbed.tunnel --config {TUNNEL_FILE}")
        for h, addr in f.hosts.items():
            c.node(h, "host", mvpn=fm, description=f"host of M-VPN {fm} behind the FA",
                   links=[on(lan(fm), lan_pool, addr or lan_pool.take())],
                   routes=[{"to": f"{x.home}/32", "via": str(fa_lan)} for x in f.visitors.values()])
        for v, x in f.visitors.items():
            c.node(v, "mn", description=f"visitor from M-VPN {fm} (home address {x.home})",
                   links=[on(cell_seg, cell, x.address)])

    # the nodes on the cell
    for n, x in a.nodes.items():
        nd = c.node(n, "mn", mvpn=m, description=f"node on cell {cell_seg} claiming to be {x.user or n}",
                    links=[on(cell_seg, cell, addrs[n])])
        if x.dhcp:
            nd["setup"].append("ip addr flush dev eth0")  # attaches with DHCP only


def problems(lab: LabFile) -> list[tuple[str, str]]:
    """Faults of the access plane as ``(path, message and fix)``."""
    a, out = lab.access, []
    if a is None:
        return out
    if a.mvpn not in lab.mvpns:
        return [("access.mvpn", f"unknown M-VPN {a.mvpn!r}; declare it under 'mvpns'")]
    realm = lab.mvpns[a.mvpn].realm
    for where, net in (("access.cell.subnet", a.cell.subnet), ("access.core.subnet", a.core.subnet)):
        if not net.subnet_of(realm):
            out.append((where, f"{net} is outside M-VPN {a.mvpn}'s realm {realm}; pick a subnet of {realm}"))
    if a.cell.subnet.overlaps(a.core.subnet):
        out.append(("access.core.subnet", f"{a.core.subnet} overlaps the cell {a.cell.subnet}; use separate subnets"))
    seen: dict[ipaddress.IPv4Address, str] = {}
    cell_addrs = [(f"access.nodes.{n}.address", x.address) for n, x in a.nodes.items()]
    cell_addrs += [(f"access.fa.visitors.{v}.address", x.address) for v, x in (a.fa.visitors if a.fa else {}).items()]
    for where, addr in cell_addrs:
        if addr is None:
            continue
        if addr not in a.cell.subnet:
            out.append((where, f"{addr} is not on the cell {a.cell.subnet}; pick an address in it or leave it out"))
        if addr in seen:
            out.append((where, f"{addr} is already used by {seen[addr]}; every node on the cell needs its own"))
        seen[addr] = where
    for where, addr in [(f"access.core.hosts.{h}", x) for h, x in a.core.hosts.items()] + [
            ("access.msm.address", a.msm.address), ("access.fa.address", a.fa.address if a.fa else None)]:
        if addr is not None and addr not in a.core.subnet:
            out.append((where, f"{addr} is not on the core LAN {a.core.subnet}; pick an address in it or leave it out"))
    if a.neighbour and (a.neighbour.link.prefixlen != 30 or any(a.neighbour.link.overlaps(s)
                                                                   for s in (a.cell.subnet, a.core.subnet))):
        out.append(("access.neighbour.link", f"{a.neighbour.link} must be a /30 apart from the cell and the core LAN"))
    if a.fa:
        if a.fa.mvpn not in lab.mvpns:
            out.append(("access.fa.mvpn", f"unknown M-VPN {a.fa.mvpn!r}; declare it under 'mvpns'"))
        elif a.fa.mvpn == a.mvpn:
            out.append(("access.fa.mvpn", "the visitors come from another M-VPN; name that one"))
        else:
            fr = lab.mvpns[a.fa.mvpn].realm
            for v, x in a.fa.visitors.items():
                if x.home not in fr:
                    out.append((f"access.fa.visitors.{v}.home", f"{x.home} is outside M-VPN {a.fa.mvpn}'s realm {fr}"))
    others = set(lab.mobile_nodes) | set(lab.hosts) | set(lab.operators) | set(lab.nodes)
    owner: dict[str, str] = {}
    for n, where in names(a):
        if n in owner or n in others:
            out.append((where, f"name {n!r} is also used by {owner.get(n, 'another node of the lab')}; rename one"))
        owner.setdefault(n, where)
    return out


def names(a: Any) -> list[tuple[str, str]]:
    """(node name, where the access plane declares it) for every node it makes."""
    out = [(a.sink, "access.sink"), (a.msm.name, "access.msm.name")]
    out += [(h, f"access.core.hosts.{h}") for h in a.core.hosts]
    if a.neighbour:
        out.append((a.neighbour.name, "access.neighbour.name"))
    if a.fa:
        out += [(a.fa.name, "access.fa.name")] + [(h, f"access.fa.hosts.{h}") for h in a.fa.hosts]
        out += [(v, f"access.fa.visitors.{v}") for v in a.fa.visitors]
    return out + [(n, f"access.nodes.{n}") for n in a.nodes]
