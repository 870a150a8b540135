"""Home domains whose gateway is a virtual HA: what the compiler derives for claims 14-15 and 24.

- **SG inside the virtual HA** (claim 15): an M-VPN with both ``sg`` and ``home_agent`` runs
  its SG agent in the virtual HA's network namespace (``vha-<m>``) on the operator HA node,
  on the virtual HA's public address; config ``/etc/testbed/sg-<m>.yaml``, status
  ``/run/testbed/sg-<m>.json``, its own enrolment token file.
- **Home sinks** (claim 14): with ``home_sinks: true`` the M-VPN's MSRs also sit on the home
  LAN (interface ``home``), answer ARP there for the MNs they serve (proxy ARP) and announce
  the home LAN's hosts and the Internet to their MNs over AODV, so that a move between two
  sinks is AODV's handover and only a move out of the home domain is Mobile IP's.
- **Roaming MN** (claims 14, 23-24): an MN that runs AODV at a home sink and Mobile IP counts
  as at home while a home sink serves it (``aodv_home``), takes the catch-all routes only
  with a sink, and with ``ipsec_to_ha`` adds the IPsec SA to its virtual HA on a CCoA.

Every function takes the running orchestration.domain.compiler.Compiler and edits its nodes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import agents
from .enrolment import enrol_command, portal_url
from .model import LabFile, Mvpn

if TYPE_CHECKING:
    from .compiler import Compiler

LEAVE_SOCKET = "/run/testbed/aodv-leave.sock"
RP_FILTER_OFF = "net.ipv4.conf.{i}.rp_filter=0"


def cell_name(mv: Mvpn, msr: str) -> str:
    """Segment name of an MSR's radio cell: ``mvpns.X.cells`` or ``cell-<msr>``."""
    from .compiler import cell

    return mv.cells.get(msr) or cell(msr)


def sg_in_ha(lab: LabFile, m: str) -> bool:
    """M-VPN ``m``'s SG runs inside its virtual HA (claim 15)."""
    mv = lab.mvpns[m]
    return mv.sg is not None and mv.home_agent is not None


def sg_status(lab: LabFile, m: str) -> str:
    """Status file of M-VPN ``m``'s SG agent on its node."""
    return f"/run/testbed/sg-{m.lower()}.json" if sg_in_ha(lab, m) else agents.STATUS["sg"]


def sg_in_virtual_ha(c: "Compiler", m: str, peers: dict[str, str]) -> str:
    """Config, token and start script of M-VPN ``m``'s SG inside its virtual HA on the
    operator HA node; returns the start command, which the compiler appends after the
    MSM's (the SG enrols at the MSM, claim 15)."""
    lab, mv = c.lab, c.lab.mvpns[m]
    assert mv.sg is not None and mv.home_agent is not None
    node, low = mv.home_agent.operator, m.lower()
    c.node(node, "ha")
    ns, addr, pki = f"vha-{low}", str(mv.sg.address), f"/etc/testbed/sg-{low}"
    portal = portal_url(str(c.msm_address())) if lab.msm else "http://127.0.0.1:1"
    data = agents.sg(m, addr, str(mv.realm), portal, peers, "unused", pki)
    del data["ipsec"]["lan_interface"]  # no LAN interface of its own: the virtual HA's namespace
    data["ipsec"]["workdir"] = f"/var/lib/testbed/sg-{low}"
    data["status_file"] = sg_status(lab, m)
    c.agent(node, "sg", data, path=f"/etc/testbed/sg-{low}.yaml")
    token = f"/etc/testbed/enrol-sg-{low}.token"
    lines = [f"# the SG of M-VPN {m} inside virtual HA {low} (claim 15): namespace {ns}, made by the HA agent",
             "set -e",
             f"for i in $(seq 150); do ip -n {ns} -4 addr show dev lo 2>/dev/null | grep -q {addr} && break; sleep 0.2; done"]
    if lab.msm:
        c.token(node, m, "sg", path=token)
        lines.append(enrol_command(portal, f"sg-{low}.{lab.zone.rstrip('.')}", "sg", pki, san_ip=addr, netns=ns,
                                   token_file=token))
    lines.append(f"exec nsenter --net=/run/netns/{ns} python3 -m testbed.sg --config /etc/testbed/sg-{low}.yaml")
    c.nodes[node]["files"][f"/etc/testbed/start-sg-{low}.sh"] = "\n".join(lines) + "\n"
    return f"sh /etc/testbed/start-sg-{low}.sh"


def home_sink(c: "Compiler", m: str, msr: str, ifs: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Join MSR ``msr`` to M-VPN ``m``'s home LAN as a sink (claim 14); returns the AODV
    agent's ``managed_prefixes`` and extra fields. Its AODV interfaces carry the /32 node
    address only; the home LAN's hosts and the Internet are announced, never the whole
    home prefix (the sink would then answer route requests for its own MNs)."""
    from .compiler import lan

    lab, mv = c.lab, c.lab.mvpns[m]
    nd = c.nodes[msr]
    nd["links"].insert(0, {"segment": lan(m), "address": f"{c.addr[msr]}/{mv.realm.prefixlen}", "name": "home"})
    nd["routes"].append({"to": "default", "via": str(c.gateway[m])})
    off = " ".join(RP_FILTER_OFF.format(i=i) for i in ifs)
    # proxy ARP answered at once (proxy_delay 0; the kernel's default waits up to 0.8 s,
    # which the HA's first packets after a return home would wait for: issue 14 moves)
    nd["setup"].append("unshare -m sh -c 'mount -o remount,rw /proc/sys && "
                       f"sysctl -qw net.ipv4.conf.home.proxy_arp=1 net.ipv4.neigh.home.proxy_delay=0 {off}'")
    hosts = [f"{c.addr[h]}/32" for h, x in lab.hosts.items() if x.mvpn == m and x.at in (None, "home")]
    announced = hosts + ([str(lab.internet.subnet)] if c.needs_internet() else [])
    return [], {"announced_prefixes": announced, **mv.aodv.extra}


def roaming_aodv(c: "Compiler", n: str) -> dict[str, Any]:
    """Extra AODV fields of an MN that also runs Mobile IP (claim 14): routes for the realm
    and the Internet come from a sink only while one serves it; the leave socket tells the
    agent when Mobile IP takes over."""
    managed = [str(c.lab.mvpns[c.lab.mobile_nodes[n].mvpn].realm)]
    if c.needs_internet():
        managed.append(str(c.lab.internet.subnet))
    return {"managed_prefixes": managed, "status_interval_ms": 100,
            "handover": {"enabled": True, "catchall_only_with_sink": True, "leave_socket": LEAVE_SOCKET}}


def roaming_mip(c: "Compiler", n: str, runs_aodv: bool) -> dict[str, Any]:
    """Extra Mobile IP MN fields: at home = served by a home sink (claim 14), and the IPsec SA
    to the HA on a co-located care-of address (claim 24)."""
    x = c.lab.mobile_nodes[n]
    mv = c.lab.mvpns[x.mvpn]
    out: dict[str, Any] = {"solicit_wait": 0}
    if runs_aodv and mv.home_sinks:
        out["aodv_home"] = {"status_file": agents.STATUS["aodv"], "sinks": [str(c.addr[r]) for r in mv.msrs],
                            "leave_socket": LEAVE_SOCKET}
    if x.ipsec_to_ha:
        out["ipsec_to_ha"] = {"workdir": "/var/lib/testbed/mip-ipsec", "protect": "all"}
    return out


def ha_ipsec(c: "Compiler", m: str) -> dict[str, Any]:
    """Extra fields of M-VPN ``m``'s virtual HA: accept IPsec from its MNs on a CCoA (claim 24)."""
    if any(x.mvpn == m and x.ipsec_to_ha for x in c.lab.mobile_nodes.values()):
        return {"ipsec_ccoa": {"workdir": f"/var/lib/testbed/mip-ipsec-{m.lower()}", "protect": "all"}}
    return {}


def roam_nft(c: "Compiler", n: str) -> None:
    """An MN with both Mobile IP and a workgroup agent: the workgroup agent's namespaces'
    IKE/ESP (169.254/16) leave through the Mobile IP tunnel, the SA to the HA or AODV's
    buffer device with the fixed home address (a masquerade binding is forgotten at every
    link flap; a plain snat binding survives the moves)."""
    path = "/etc/testbed/roam.nft"
    c.nodes[n]["files"][path] = f"""# derived by orchestration.domain.homedomain: {n}'s workgroup tunnels keep its home address
table ip roam_nat {{
    chain post {{
        type nat hook postrouting priority 110; policy accept;
        oifname {{ "mipha", "ipsec0", "aodv0" }} ip saddr 169.254.0.0/16 snat to {c.addr[n]}
    }}
}}
"""
    c.nft_files.append((n, path))
    c.nodes[n]["setup"].append(f"nft -f {path}")


def problems(lab: LabFile) -> list[tuple[str, str]]:
    """Faults of the derivations above, as ``(path, message and fix)``."""
    out = []
    for m, mv in lab.mvpns.items():
        if sg_in_ha(lab, m):
            assert mv.sg is not None and mv.home_agent is not None
            if mv.home_agent.address is not None and mv.home_agent.address != mv.sg.address:
                out.append((f"mvpns.{m}.home_agent.address", f"the SG of M-VPN {m} runs inside its virtual HA "
                            f"(claim 15) and uses its address, but sg is {mv.sg.address} and home_agent "
                            f"{mv.home_agent.address}; give both the same address or leave home_agent.address out"))
            if mv.sg.node is not None and mv.sg.node != mv.home_agent.operator:
                out.append((f"mvpns.{m}.sg.node", f"the SG of M-VPN {m} runs inside its virtual HA on node "
                            f"{mv.home_agent.operator!r} (claim 15); leave sg.node out"))
        for r in mv.cells:
            if r not in mv.msrs:
                out.append((f"mvpns.{m}.cells.{r}", f"{r!r} is no MSR of M-VPN {m}; use one of {mv.msrs or 'none'}"))
        if mv.home_sinks and not (mv.sg or mv.home_agent):
            out.append((f"mvpns.{m}.home_sinks", f"home sinks need the home LAN's gateway; give M-VPN {m} an sg or "
                        "a home_agent"))
    for n, x in lab.mobile_nodes.items():
        mv = lab.mvpns[x.mvpn]
        if x.at in mv.msrs and (x.workgroup or (x.mip if x.mip is not None else mv.home_agent)) and not mv.home_sinks:
            out.append((f"mobile_nodes.{n}.at", "an MN at an MSR that also signs on or runs Mobile IP needs the MSRs "
                        f"joined to the home LAN; set mvpns.{x.mvpn}.home_sinks: true or start it at 'home'"))
        if x.ipsec_to_ha and not (x.mip if x.mip is not None else mv.home_agent):
            out.append((f"mobile_nodes.{n}.ipsec_to_ha", "the IPsec SA to the HA rides on Mobile IP (claim 24); "
                        f"give mvpns.{x.mvpn}.home_agent an operator HA"))
    return out
