"""Compile a lab file (orchestration.domain.model.LabFile) into a low-level Topology.

What is derived, in this order:
1. addresses the file leaves out (orchestration.domain.addressing), realm by realm;
2. nodes and segments: per M-VPN its home LAN, its SG (claims 3-4), its MSR chain with one
   radio cell each (claim 25); the MSM (claims 5, 20-21); operator HAs with their virtual
   HAs (claims 16-19); access networks with an FA or a plain router (claims 18, 23); the
   Internet segment and its backbone router with the NAPT for the realms' portal traffic
   (claim 22, orchestration.domain.napt);
3. every agent config (orchestration.domain.agents), validated through the agent's model;
4. enrolment tokens (``seed.tokens`` and one token file per node, orchestration.domain.enrolment);
5. the start order: ``start_after`` conditions on other nodes' status files, and
   ``python3 -m testbed.common.ready`` wrappers for waits inside a node;
6. the low-level ``nodes:``/``segments:`` of the lab file merged over the result (escape hatch).

The result is checked again by orchestration.topology.parse_topology, like any topology.
"""
from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Any

from ..topology import Topology, parse_topology
from . import access, agents, homedomain, internet, napt, testing
from .addressing import Pool, link_subnets
from . import enrolment
from .enrolment import TOKEN_FILE, Secrets, enrol_command, portal_url
from .model import LabFile
from . import mesh

AODV_SYSCTLS = {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0,
                "net.ipv4.conf.all.send_redirects": 0, "net.ipv4.conf.default.send_redirects": 0}
INET = "inet"


def lan(mvpn: str) -> str:
    """Segment name of an M-VPN's home LAN."""
    return f"lan-{mvpn.lower()}"


def cell(msr: str) -> str:
    """Segment name of an MSR's radio cell."""
    return f"cell-{msr}"


def sg_node(lab: LabFile, mvpn: str) -> str:
    """Node of an M-VPN's SG: the operator HA when it runs in a virtual HA (claim 15)."""
    sg, ha = lab.mvpns[mvpn].sg, lab.mvpns[mvpn].home_agent
    if sg and ha:
        return ha.operator
    return (sg.node if sg and sg.node else f"sg-{mvpn.lower()}")


def ha_name(mvpn: str) -> str:
    """Name of an M-VPN's virtual HA (testbed.mip: 1-8 of [a-z0-9])."""
    return mvpn.lower()


@dataclass
class Compiled:
    """What the compiler made: the topology the engine runs, the agent files in it, the
    tokens, and where each node's movable interface starts (for the schedule)."""

    lab: LabFile
    source: str
    topology: Topology
    agent_files: list[agents.AgentFile]
    tokens: list[dict[str, Any]]
    ports: dict[str, str] = field(default_factory=dict)  # node -> port key "<segment>:<node>"
    nft_files: list[tuple[str, str]] = field(default_factory=list)  # (node, path)
    addresses: dict[str, str] = field(default_factory=dict)  # node -> its realm address (checks name nodes)


class Compiler:
    """One compilation; ``run()`` returns the low-level topology as a dict and fills
    ``agent_files``, ``tokens``, ``ports``."""

    def __init__(self, lab: LabFile, secrets: Secrets):
        self.lab = lab
        self.secrets = secrets
        self.nodes: dict[str, dict[str, Any]] = {}
        self.segments: dict[str, dict[str, Any]] = {}
        self.agent_files: list[agents.AgentFile] = []
        self.tokens: list[dict[str, Any]] = []
        self.ports: dict[str, str] = {}
        self.nft_files: list[tuple[str, str]] = []
        self.addr: dict[str, ipaddress.IPv4Address] = {}  # node -> realm address (MNs, hosts, MSRs)
        self.gateway: dict[str, ipaddress.IPv4Address] = {}  # mvpn -> home LAN gateway
        self.public: dict[str, ipaddress.IPv4Address] = {}  # node or vha name -> Internet address
        self.access_router: dict[str, tuple[str, ipaddress.IPv4Address]] = {}  # net -> (node, inet address)
        self.after_msm: list[tuple[str, str]] = []  # (node, start command) that enrol at the MSM on its node

    # --- helpers ------------------------------------------------------------------------
    def node(self, name: str, role: str, **kw: Any) -> dict[str, Any]:
        """Node ``name`` as a low-level topology dict, created with ``role`` and empty links,
        routes, files, setup, start and start_after on first use; keywords ``kw`` are set on it
        (overwriting). Returns the same dict on every call, for the passes to append to.
        """
        nd = self.nodes.setdefault(name, {"role": role, "links": [], "routes": [], "files": {}, "setup": [],
                                          "start": [], "start_after": []})
        for k, v in kw.items():
            nd[k] = v
        return nd

    def agent(self, node: str, kind: str, data: dict[str, Any], path: str | None = None) -> agents.AgentFile:
        """Add the agent config ``data`` of ``kind`` (sg, mn, aodv, mip-ha, ...) for ``node``:
        recorded in ``agent_files`` and written as YAML into the node's files at its path
        (``path`` or the agent's default). Returns the AgentFile. KeyError when ``node`` has not
        been made yet (``node``) or ``kind`` is unknown.
        """
        f = agents.AgentFile(kind, node, data, path)
        self.agent_files.append(f)
        self.nodes[node]["files"][f.path] = f.text()
        return f

    def token(self, node: str, identity: str, kind: str, path: str = TOKEN_FILE) -> None:
        """A one-time enrolment token for ``identity`` of ``kind`` (mn, sg, msr): recorded in
        ``tokens`` for the MSM's seed (ttl_s 3600, i.e. one hour) and written to ``path`` on
        ``node`` (TOKEN_FILE by default). KeyError when ``node`` has not been made yet.
        """
        tok = self.secrets.token(identity, kind)
        self.tokens.append({"identity": identity, "kind": kind, "token": tok, "ttl_s": 3600})
        self.nodes[node]["files"][path] = tok + "\n"

    def needs_internet(self) -> bool:
        """Whether the lab needs the emulated Internet segment: any M-VPN with an SG, any
        operator, access network or workgroup, or an MSM.
        """
        lab = self.lab
        return bool(any(m.sg for m in lab.mvpns.values()) or lab.operators or lab.access_networks
                    or lab.workgroups or lab.msm)

    def users(self) -> dict[str, tuple[str, ipaddress.IPv4Address, str]]:
        """MSM users: name -> (mvpn, private address, fqdn): mobile nodes of M-VPNs with an
        SG, and the declared users."""
        out = {}
        for n, m in self.lab.mobile_nodes.items():
            if self.lab.mvpns[m.mvpn].sg is not None or self.lab.mvpns[m.mvpn].home_agent is not None:
                out[n] = (m.mvpn, self.addr[n], m.fqdn or f"{n}.{self.lab.zone.rstrip('.')}")
        for n, u in self.lab.users.items():
            out[n] = (u.mvpn, u.address, u.fqdn or f"{n}.{self.lab.zone.rstrip('.')}")
        return out

    def msm_address(self) -> ipaddress.IPv4Address | None:
        """The MSM's public address (set by ``addresses``), or None when the lab has no MSM."""
        return self.public.get("@msm")

    def msm_node(self) -> str | None:
        """The node the MSM runs on: its operator's HA node when it runs there, else its own
        node; None when the lab has no MSM.
        """
        m = self.lab.msm
        if m is None:
            return None
        return m.operator or m.node

    # --- passes -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every pass in order (module docstring: addresses, Internet, M-VPNs, AODV mesh,
        operators, access networks, mobile nodes, hosts, access plane, MSM last, backbone NAPT,
        testing section, merge of the low-level nodes/segments) and return the topology as a
        dict (name, description, mvpns, segments, nodes) for parse_topology; fills
        ``agent_files``, ``tokens``, ``ports``, ``nft_files`` on the way.
        Raises PoolExhausted (a ValueError) when a subnet has no address left to derive.
        """
        self.addresses()
        self.internet()
        for name in self.lab.mvpns:
            self.mvpn(name)
        mesh.build(self)
        for name in self.lab.operators:
            self.operator(name)
        for name in self.lab.access_networks:
            self.access(name)
        for name in self.lab.mobile_nodes:
            self.mobile_node(name)
        for name in self.lab.hosts:
            self.host(name)
        if self.lab.access:
            access.compile_plane(self)
        self.msm()  # last: its seed lists every token handed out above
        for node, cmd in self.after_msm:  # SGs in virtual HAs enrol at an MSM on their node (claim 15)
            self.nodes[node]["start"].append(cmd)
        self.backbone()
        testing.after_msm(self)
        self.merge()
        topo: dict[str, Any] = {"name": self.lab.name, "description": self.lab.description,
                                "mvpns": {m: {"realm": str(v.realm), "description": v.description}
                                          for m, v in self.lab.mvpns.items()},
                                "segments": self.segments, "nodes": self.nodes}
        return topo

    def addresses(self) -> None:
        """Pass 1: fill ``addr`` (realm address of each MSR, mobile node and host), ``gateway``
        (home LAN gateway of each M-VPN with an SG or HA: the realm's lowest free address) and
        ``public`` (Internet addresses: backbone router = highest free when ``needs_internet``, SGs as given, operators,
        virtual HAs ``@vha-<m>``, the MSM ``@msm``) and ``access_router``. Addresses the file
        gives are reserved first, per realm and for the Internet (addressing.Pool).
        Raises PoolExhausted when a subnet is full.
        """
        lab = self.lab
        pools: dict[str, Pool] = {}
        for m, mv in lab.mvpns.items():
            given = [x.address for x in list(lab.mobile_nodes.values()) + list(lab.hosts.values())
                     if x.mvpn == m and x.address] + [u.address for u in lab.users.values() if u.mvpn == m]
            pools[m] = Pool(mv.realm, given)
            if mv.sg or mv.home_agent:
                self.gateway[m] = pools[m].take()
            for r in mv.msrs:
                self.addr[r] = pools[m].take()
        for group in (lab.mobile_nodes, lab.hosts):
            for n, x in group.items():
                self.addr[n] = x.address or pools[x.mvpn].take()
        # the emulated Internet
        given = [mv.sg.address for mv in lab.mvpns.values() if mv.sg]
        given += [mv.home_agent.address for mv in lab.mvpns.values() if mv.home_agent and mv.home_agent.address]
        given += [o.address for o in lab.operators.values() if o.address]
        if lab.msm and lab.msm.address:
            given.append(lab.msm.address)
        given += list(lab.internet.hosts.values())
        inet = Pool(lab.internet.subnet, given)
        self.inet = inet
        if self.needs_internet():
            self.public[lab.internet.router] = inet.last()
        for m, mv in lab.mvpns.items():
            if mv.sg:
                self.public[sg_node(lab, m)] = mv.sg.address
        for o, op in lab.operators.items():
            self.public[o] = op.address or inet.take()
        for m, mv in lab.mvpns.items():
            if mv.home_agent:
                self.public[f"@vha-{m}"] = mv.home_agent.address or (mv.sg.address if mv.sg else None) or inet.take()
        if lab.msm is not None:
            self.public["@msm"] = lab.msm.address or inet.take()
        for n, a in lab.access_networks.items():
            self.access_router[n] = (a.router or (f"fa-{n}" if a.fa else f"rt-{n}"), inet.take())

    def inet_link(self, node: str, addr: ipaddress.IPv4Address, ifname: str = "inet") -> None:
        """Attach ``node`` to the Internet at ``addr``: a link on the INET segment named
        ``ifname`` with the subnet's prefix, or with ``internet.routers`` its own /30 to its
        router (internet.attach_sg).
        """
        if self.lab.internet.routers:  # a routed Internet: the SG's own /30 to its router
            return internet.attach_sg(self, node, addr)
        self.nodes[node]["links"].append({"segment": INET, "address": str(self.inet.iface(addr)), "name": ifname})

    def inet_routes(self, node: str, default: bool = True) -> None:
        """Routes of an Internet node on the single segment: each access network via its router,
        and with ``default`` a default route via the backbone router. Nothing with a routed
        Internet (``internet.routers``; attach_sg routed it).
        """
        rt = self.nodes[node]["routes"]
        if self.lab.internet.routers:  # internet.attach_sg routed it
            return
        for net, (_, via) in self.access_router.items():
            rt.append({"to": str(self.lab.access_networks[net].subnet), "via": str(via)})
        if default:
            rt.append({"to": "default", "via": str(self.public[self.lab.internet.router])})

    def internet(self) -> None:
        """Pass 2: the emulated Internet when ``needs_internet``: the INET segment with the
        backbone router (IP forwarding on) and the plain hosts, or the chain of routers of
        ``internet.routers`` (internet.build_routers).
        """
        if not self.needs_internet():
            return
        if self.lab.internet.routers:
            return internet.build_routers(self)
        self.segments[INET] = {"subnet": str(self.lab.internet.subnet), "description": "the emulated Internet"}
        bb = self.lab.internet.router
        self.node(bb, "router", description="backbone router of the emulated Internet", sysctls={"net.ipv4.ip_forward": 1})
        self.inet_link(bb, self.public[bb])
        self.inet_routes(bb, default=False)
        internet.build_hosts(self)

    def mvpn(self, m: str) -> None:
        """Pass 3 for M-VPN ``m``: its home LAN segment when anything lives at home, its SG
        (``sg``; for an SG inside a virtual HA, claim 15, a start command the operator's node runs
        after the MSM) and its MSR chain (``msrs``).
        """
        mv = self.lab.mvpns[m]
        home_needed = mv.sg or mv.home_agent or any(
            x.mvpn == m and x.at in (None, "home") for x in list(self.lab.mobile_nodes.values()) + list(self.lab.hosts.values()))
        if home_needed:
            self.segments[lan(m)] = {"mvpn": m, "subnet": str(mv.realm), "description": f"home LAN of M-VPN {m}"}
        if mv.sg and mv.home_agent:
            self.after_msm.append((mv.home_agent.operator, homedomain.sg_in_virtual_ha(self, m, self.sg_peers(m))))
        elif mv.sg:
            self.sg(m)
        self.msrs(m)

    def sg(self, m: str) -> None:
        """M-VPN ``m``'s SG node (claims 3-4): home LAN gateway address, Internet link and
        routes, the SG agent config with its workgroup peers (``sg_peers``), the edge nft file.
        With an MSM: an enrolment token and a start script that enrols (certificate with the
        public address as SAN IP) and then starts the agent after the MSM is up; without one,
        no SG agent (a plain gateway with its edge filter). AssertionError if ``m`` has no SG.
        """
        lab, mv = self.lab, self.lab.mvpns[m]
        assert mv.sg is not None
        name = sg_node(lab, m)
        nd = self.node(name, "sg", mvpn=m, description=f"security gateway of M-VPN {m} (claims 3-4)",
                       sysctls={"net.ipv4.ip_forward": 1})
        nd["links"].append({"segment": lan(m), "address": f"{self.gateway[m]}/{mv.realm.prefixlen}", "name": "lan"})
        self.inet_link(name, mv.sg.address)
        self.inet_routes(name)
        peers = self.sg_peers(m)
        portal = portal_url(str(self.msm_address())) if lab.msm else "http://127.0.0.1:1"
        self.agent(name, "sg", agents.sg(m, str(mv.sg.address), str(mv.realm), portal, peers, "lan"))
        nd["files"]["/etc/testbed/edge.nft"] = napt.sg_edge(m, "lan", "inet")
        self.nft_files.append((name, "/etc/testbed/edge.nft"))
        nd["setup"].append("nft -f /etc/testbed/edge.nft")
        if lab.msm:
            self.token(name, m, "sg")
            enrol = enrol_command(portal, f"sg-{m.lower()}.{lab.zone.rstrip('.')}", "sg", "/etc/testbed/sg",
                                  san_ip=str(mv.sg.address))
            nd["files"]["/etc/testbed/start-sg.sh"] = f"set -e\n{enrol}\nexec python3 -m testbed.sg --config /etc/testbed/sg.yaml\n"
            nd["start"].append("sh /etc/testbed/start-sg.sh")
            self.wait_msm(name)
        else:  # no portal to follow and no CA to enrol at: a plain gateway with its edge filter, no SG agent
            self.agent_files = [f for f in self.agent_files if (f.node, f.agent) != (name, "sg")]
            del nd["files"][agents.AGENTS["sg"][0]]

    def sg_peers(self, m: str) -> dict[str, str]:
        """M-VPN -> public SG address of every M-VPN sharing a workgroup with ``m`` (claim 4)."""
        lab, peers = self.lab, {}
        for members in lab.workgroups.values():
            mvpns = {self._member_mvpn(x) for x in members} - {None}
            if m in mvpns:
                for o in mvpns - {m}:
                    if lab.mvpns[o].sg:  # type: ignore[index]
                        peers[o] = str(lab.mvpns[o].sg.address)  # type: ignore[index, union-attr]
        return peers

    def _member_mvpn(self, member: str) -> str | None:
        if member in self.lab.mobile_nodes:
            return self.lab.mobile_nodes[member].mvpn
        if member in self.lab.users:
            return self.lab.users[member].mvpn
        for n, (mv, _, fqdn) in self.users().items():
            if fqdn == member:
                return mv
        return None

    def wait_msm(self, node: str) -> None:
        """Make ``node`` start after the MSM's status file exists (timeout 120 s), unless there is
        no MSM or it runs on ``node`` itself.
        """
        msm = self.msm_node()
        if msm and msm != node:
            self.nodes[node]["start_after"].append({"node": msm, "file": agents.STATUS["msm"],
                                                    "what": "the MSM (portal, DNS, CA)", "timeout_s": 120})

    def msrs(self, m: str) -> None:
        """M-VPN ``m``'s MSR chain (claim 25): per MSR a radio-cell segment, a node with AODV
        sysctls, a link to the next MSR (nx/pv), its realm address as /32 on each interface and
        an AODV agent (role msr) managing the realm, or the home sink's prefixes.
        """
        mv = self.lab.mvpns[m]
        for i, r in enumerate(mv.msrs):
            self.segments[homedomain.cell_name(mv, r)] = {"description": f"radio cell of MSR {r} (M-VPN {m})"}
            nd = self.node(r, "msr", mvpn=m, description=f"mobile service router of M-VPN {m} (AODV, claim 25)",
                           sysctls=dict(AODV_SYSCTLS))
            ifs = ["cell"]
            nd["links"].append({"segment": homedomain.cell_name(mv, r), "name": "cell"})
            if i > 0:
                ifs.append("pv")  # the link to the previous MSR is created by that MSR (peer_name)
            if i + 1 < len(mv.msrs):
                nd["links"].append({"peer": mv.msrs[i + 1], "name": "nx", "peer_name": "pv", "realm": m})
                ifs.append("nx")
            nd["setup"].append(" && ".join(f"ip addr add {self.addr[r]}/32 dev {i_}" for i_ in ifs))
            a = mv.aodv
            managed, extra = homedomain.home_sink(self, m, r, ifs) if mv.home_sinks else ([str(mv.realm)], a.extra)
            self.agent(r, "aodv", agents.aodv(str(self.addr[r]), "msr", ifs, managed, a.handover, a.hello_enabled, extra))
            nd["start"].append(agents.AGENTS["aodv"][2].format(path=agents.AGENTS["aodv"][0]))

    def operator(self, o: str) -> None:
        """Operator ``o``'s HA node (claims 16-19): Internet link, one home interface per M-VPN
        whose virtual HA it hosts (kept down until the dispatcher moves it into the virtual
        HA's namespace), and the mip-ha agent config listing each virtual HA with its mobile
        nodes (SPI, MN-HA key: RFC 5944 3.5) and the MSM as a backbone service when it runs here.
        """
        lab = self.lab
        nd = self.node(o, "ha", description="operator home agent: dispatcher, virtual HAs, backbone (claims 16-19)")
        self.inet_link(o, self.public[o])
        self.inet_routes(o, default=False)
        has = []
        for m, mv in lab.mvpns.items():
            if not mv.home_agent or mv.home_agent.operator != o:
                continue
            ifname = f"home-{m.lower()}"
            gw = f"{self.gateway[m]}/{mv.realm.prefixlen}"
            nd["links"].append({"segment": lan(m), "address": gw, "name": ifname})
            # down until the dispatcher moves it into the virtual HA's namespace: in the
            # backbone namespace a realm could reach the backbone's services without NAPT
            nd["setup"].append(f"ip link set {ifname} down")
            mns = {str(self.addr[n]): {"spi": self.spi(n), "key": self.secrets.key(f"mip:{m}:{n}")}
                   for n, x in lab.mobile_nodes.items() if x.mvpn == m and self.runs_mip(n)}
            has.append({"name": ha_name(m), "address": str(self.public[f"@vha-{m}"]), "netns": f"vha-{ha_name(m)}",
                        "home_prefix": str(mv.realm), "interfaces": {ifname: gw}, "home_interfaces": [ifname],
                        "mobile_nodes": mns, **homedomain.ha_ipsec(self, m)})
        services = [str(self.msm_address())] if lab.msm and lab.msm.operator == o else []
        self.agent(o, "mip-ha", agents.mip_ha(has, "inet", services))
        nd["start"].append(agents.AGENTS["mip-ha"][2].format(path=agents.AGENTS["mip-ha"][0]))

    def spi(self, n: str) -> int:
        """The MN-HA security parameter index of mobile node ``n`` (RFC 5944 3.5: > 255)."""
        mvpn = self.lab.mobile_nodes[n].mvpn
        return 300 + [k for k, v in self.lab.mobile_nodes.items() if v.mvpn == mvpn].index(n)

    def runs_mip(self, n: str) -> bool:
        """Whether mobile node ``n`` runs the Mobile IP MN agent: its ``mip`` flag when given,
        else whether its M-VPN has a home agent. KeyError for an unknown node.
        """
        x = self.lab.mobile_nodes[n]
        return x.mip if x.mip is not None else self.lab.mvpns[x.mvpn].home_agent is not None

    def msm(self) -> None:
        """The MSM (claims 5, 13, 20-21), last of the node passes: on its operator's HA node
        (address on lo) or its own node on the Internet; its agent config seeded with the
        M-VPNs, users, workgroups and every token handed out so far. Nothing without an MSM.
        """
        lab = self.lab
        if lab.msm is None:
            return
        testing.before_msm(self)  # tokens the seed must list, SG peers and tunnel mode of the testing: section
        addr = self.msm_address()
        assert addr is not None
        if lab.msm.operator:
            name = lab.msm.operator
            nd = self.nodes[name]
            nd["setup"].insert(0, f"ip addr replace {addr}/32 dev lo")
            bind: str | None = str(addr)
        else:
            name = lab.msm.node
            nd = self.node(name, "msm", description="mobile service manager: portal, DNS, CA (claims 5, 13, 20-21)")
            self.inet_link(name, addr)
            self.inet_routes(name)
            bind = None
        nd.setdefault("volumes", []).append("/var/lib/msm")
        users = self.users()
        # an M-VPN without SG is known by its virtual HA's address, its gateway to the Internet
        mvpns = [{"name": m, "realm": str(mv.realm),
                  "sg_public": str(mv.sg.address if mv.sg else self.public[f"@vha-{m}"])}
                 for m, mv in lab.mvpns.items() if mv.sg or mv.home_agent]
        seed_users = [{"fqdn": f, "mvpn": mv, "private_address": str(a)} for mv, a, f in users.values()]
        wgs = {w: [users[x][2] if x in users else x for x in members] for w, members in lab.workgroups.items()}
        data = agents.msm(str(addr), lab.zone, mvpns, seed_users, wgs, self.tokens if enrolment.TOKENS else [], bind)
        if lab.msm.log_level != "INFO":
            data["log_level"] = lab.msm.log_level
        self.agent(name, "msm", data)
        nd["start"].append(agents.AGENTS["msm"][2].format(path=agents.AGENTS["msm"][0]))

    def access(self, n: str) -> None:
        """Access network ``n``: its segment and its router, a foreign agent (claim 18) when the
        network has ``fa``, else a plain router with a DHCP server (udhcpd) that hands visitors
        a co-located care-of address (claim 23); routes to the other access networks and the
        backbone. Raises PoolExhausted when the subnet is too small.
        """
        a = self.lab.access_networks[n]
        rname, inet_addr = self.access_router[n]
        self.segments[n] = {"subnet": str(a.subnet), "description": f"public access network{' with a shared FA' if a.fa else ''}"}
        pool = Pool(a.subnet)
        own = pool.take()
        nd = self.node(rname, "fa" if a.fa else "router", sysctls={"net.ipv4.ip_forward": 1},
                       description=f"{'foreign agent (claim 18)' if a.fa else 'router'} of access network {n}")
        nd["links"].append({"segment": n, "address": str(pool.iface(own)), "name": "acc"})
        self.inet_link(rname, inet_addr)
        others = {k: v for k, v in self.access_router.items() if k != n}
        for net, (_, via) in others.items():
            nd["routes"].append({"to": str(self.lab.access_networks[net].subnet), "via": str(via)})
        nd["routes"].append({"to": "default", "via": str(self.public[self.lab.internet.router])})
        if a.fa:
            self.agent(rname, "mip-fa", agents.mip_fa(str(own), "acc", a.subnet.prefixlen))
            nd["start"].append(agents.AGENTS["mip-fa"][2].format(path=agents.AGENTS["mip-fa"][0]))
        else:   # a hotspot: its DHCP server gives visitors their co-located care-of address (claim 23)
            first = pool.take()
            nd["files"][agents.UDHCPD_CONF] = agents.udhcpd_conf("acc", str(first), str(pool.last()),
                                                                 str(a.subnet.netmask), str(own))
            nd["setup"].append("touch /var/lib/testbed/udhcpd.leases")
            nd["start"].append(agents.UDHCPD_START)

    def attach(self, name: str, at: str | None, mvpn: str, ifname: str = "eth0") -> str:
        """Link a node where it starts; returns the segment."""
        mv = self.lab.mvpns[mvpn]
        seg = homedomain.cell_name(mv, at) if at in mv.msrs else (at if at in self.lab.access_networks else lan(mvpn))
        self.nodes[name]["links"].append({"segment": seg, "name": ifname})
        self.ports[name] = f"{seg}:{name}"
        return seg

    def mobile_node(self, n: str) -> None:
        """Mobile node ``n``: linked where it starts (``attach``); an AODV agent when it has one
        or starts at an MSR (claim 25), else a realm address on the home LAN; the Mobile IP MN
        agent when ``runs_mip`` (RFC 5944); the workgroup member agent with its enrolment and
        start conditions when it has a ``workgroup`` (claims 7-11); testbed.mip.probe's TCP
        echo server on port ``serve``.
        """
        lab, x = self.lab, self.lab.mobile_nodes[n]
        mv = lab.mvpns[x.mvpn]
        at_msr = x.at in mv.msrs
        runs_aodv = x.aodv is not None or at_msr
        nd = self.node(n, "mn", mvpn=x.mvpn, description=f"mobile node of M-VPN {x.mvpn}")
        seg = self.attach(n, x.at, x.mvpn)
        link = nd["links"][-1]
        mip = self.runs_mip(n)
        if runs_aodv:
            nd["sysctls"] = dict(AODV_SYSCTLS)
            nd["setup"].append(f"ip addr add {self.addr[n]}/32 dev eth0")
            a = x.aodv or mv.aodv
            extra = {**homedomain.roaming_aodv(self, n), **a.extra} if mip else a.extra
            self.agent(n, "aodv", agents.aodv(str(self.addr[n]), "mn", ["eth0"], [str(mv.realm)], a.handover,
                                              a.hello_enabled, extra))
            nd["start"].append(agents.AGENTS["aodv"][2].format(path=agents.AGENTS["aodv"][0]))
            if at_msr:
                assert x.at is not None
                nd["start_after"].append({"node": x.at, "file": agents.STATUS["aodv"], "key": "counters",
                                          "what": f"the AODV agent of its sink {x.at}"})
        elif seg == lan(x.mvpn):
            link["address"] = f"{self.addr[n]}/{mv.realm.prefixlen}"
            if x.mvpn in self.gateway:
                nd["routes"].append({"to": "default", "via": str(self.gateway[x.mvpn])})
        if mip:
            assert mv.home_agent is not None
            self.agent(n, "mip-mn", {**agents.mip_mn(str(self.addr[n]), str(mv.realm), str(self.gateway[x.mvpn]),
                                                     str(self.public[f"@vha-{x.mvpn}"]), self.spi(n),
                                                     self.secrets.key(f"mip:{x.mvpn}:{n}")),
                                     **homedomain.roaming_mip(self, n, runs_aodv)})
            nd["start"].append(agents.AGENTS["mip-mn"][2].format(path=agents.AGENTS["mip-mn"][0]))
        if x.workgroup:
            users = self.users()
            fqdn = users[n][2]
            portal = portal_url(str(self.msm_address()))
            self.agent(n, "mn", agents.mn(fqdn, x.workgroup, portal, "eth0", enrol_self=not enrolment.TOKENS))
            cmd = agents.AGENTS["mn"][2].format(path=agents.AGENTS["mn"][0])
            if enrolment.TOKENS:
                self.token(n, fqdn, "mn")
                cmd = f"sh -c {shlex.quote(enrol_command(portal, fqdn, 'mn', '/var/lib/testbed/mn/pki') + ' && exec ' + cmd)}"
            if mip:  # sign on once Mobile IP has found home: the portal is reached through the home NAPT
                cmd = (f"python3 -m testbed.common.ready --file {agents.STATUS['mip-mn']} --key mode --equals home "
                       f"--timeout 90 --what 'Mobile IP at home' -- {cmd}")
            nd["start"].append(cmd)
            sgn = sg_node(lab, x.mvpn)
            nd["start_after"].append({"node": sgn, "file": homedomain.sg_status(lab, x.mvpn),
                                      "what": f"the SG of M-VPN {x.mvpn}", "timeout_s": 180})
            if mip:
                homedomain.roam_nft(self, n)
        elif lab.msm and enrolment.TOKENS and n in self.users() and any(
                n in ms or self.users()[n][2] in ms for ms in lab.workgroups.values()):
            self.token(n, self.users()[n][2], "mn")  # a member without sign-on agent may enrol by hand
        if x.serve:
            nd["start"].append(f"python3 -m testbed.mip.probe server --port {x.serve}")

    def host(self, n: str) -> None:
        """Correspondent host ``n`` of an M-VPN: linked where it starts; on the home LAN with
        its realm address/prefix and a default route via the gateway, elsewhere its address
        as /32; testbed.mip.probe's TCP echo server on port ``serve``.
        """
        x = self.lab.hosts[n]
        mv = self.lab.mvpns[x.mvpn]
        nd = self.node(n, "host", mvpn=x.mvpn, description=f"correspondent host in M-VPN {x.mvpn}")
        seg = self.attach(n, x.at, x.mvpn)
        if seg == lan(x.mvpn):
            nd["links"][-1]["address"] = f"{self.addr[n]}/{mv.realm.prefixlen}"
            if x.mvpn in self.gateway:
                nd["routes"].append({"to": "default", "via": str(self.gateway[x.mvpn])})
        else:
            nd["setup"].append(f"ip addr add {self.addr[n]}/32 dev eth0")
        if x.serve:
            nd["start"].append(f"python3 -m testbed.mip.probe server --port {x.serve}")

    def backbone(self) -> None:
        """The NAPT links from the backbone router to each standalone SG (claim 22)."""
        lab = self.lab
        if lab.msm is None:
            return
        sgs = [m for m, mv in lab.mvpns.items() if mv.sg and not mv.home_agent]  # virtual HAs: the operator's NAPT
        if not sgs:
            return
        bb = lab.internet.router
        subnets = link_subnets([mv.realm for mv in lab.mvpns.values()], len(sgs))
        links = []
        for i, (m, net) in enumerate(zip(sgs, subnets), start=1):
            hosts = list(net.hosts())
            sg_a, bb_a = hosts[0], hosts[1]
            ifname = f"to-{m.lower()}"
            sgn = sg_node(lab, m)
            self.nodes[bb]["links"].append({"peer": sgn, "name": ifname, "peer_name": "napt", "address": f"{bb_a}/30",
                                            "peer_address": f"{sg_a}/30", "realm": m})
            links.append(napt.NaptLink(ifname, i, sg_a, lab.mvpns[m].realm))
            addr = self.msm_address()
            assert addr is not None
            self.nodes[sgn]["setup"].append(napt.sg_portal_route("lan", addr, bb_a, "napt"))
        self.nodes[bb]["files"]["/etc/testbed/napt.nft"] = napt.backbone_napt(links, "inet", self.msm_address(), enrolment.PORTAL_PORT)  # type: ignore[arg-type]
        self.nft_files.append((bb, "/etc/testbed/napt.nft"))
        self.nodes[bb]["setup"] = ["nft -f /etc/testbed/napt.nft"] + napt.backbone_rules(links)
        self.nodes[bb]["description"] += ", NAPT for the realms' portal and DNS traffic (claim 22)"

    def merge(self) -> None:
        """Low-level fields of the lab file over the generated nodes (lists replace, dicts merge)."""
        for n, extra in self.lab.nodes.items():
            nd = self.nodes.setdefault(n, {})
            for k, v in extra.items():
                if isinstance(v, dict) and isinstance(nd.get(k), dict):
                    nd[k] = {**nd[k], **v}
                else:
                    nd[k] = v
        for s, extra in self.lab.segments.items():
            self.segments[s] = {**self.segments.get(s, {}), **extra}
        for nd in self.nodes.values():
            for k in ("links", "routes", "files", "setup", "start", "start_after"):
                if k in nd and not nd[k]:
                    del nd[k]


def compile_model(lab: LabFile, source: str, secrets: Secrets | None = None) -> Compiled:
    """Compile a parsed lab into a Compiled (no checks beyond the low-level topology's)."""
    c = Compiler(lab, secrets or Secrets())
    topo = c.run()
    return Compiled(lab, source, parse_topology(topo, f"{source} (compiled)"), c.agent_files, c.tokens, c.ports,
                    c.nft_files, {n: str(a) for n, a in c.addr.items()})
