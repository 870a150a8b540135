"""The access plane of an M-VPN in a lab file (claims 40-62): who may attach at a sink.

One sink (an MSR) serves a radio cell and sits on the M-VPN's core LAN with the MSM,
whose DIAMETER server decides each hello (claims 41-45); an AODV neighbour of the sink
holds prefixes the sink can only learn by route discovery (routing proxy, claims 57-62);
an FA of another M-VPN takes visitors' IP-IP tunnels (claims 46-49); the nodes on the cell
claim to be MSM users, with a shared secret (claim 40) or a certificate (claims 50-56), or
attach by DHCP (claims 57-62). orchestration.domain.access derives the plumbing.

    access:
      mvpn: A
      cell: {name: radio, subnet: 10.10.0.0/24}
      core: {subnet: 10.10.1.0/24, hosts: {h1: 10.10.1.10}}
      neighbour: {name: d1, link: 10.10.30.0/30, announce: [10.10.31.0/24]}
      fa: {mvpn: B, hosts: {hb: 10.20.0.1}, visitors: {v1: {address: 10.10.0.77, home: 10.20.0.9}}}
      nodes:
        mn1: {address: 10.10.0.5, secret: secret-one}
        p1: {dhcp: true, secret: secret-p1}
"""
from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field

Addr = ipaddress.IPv4Address


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Cell(_Strict):
    """The sink's radio cell: a segment of the M-VPN's realm."""

    name: str | None = Field(None, description="segment name (default cell-<sink>)")
    subnet: ipaddress.IPv4Network


class Core(_Strict):
    """The M-VPN's core LAN: the sink, the MSM, home hosts (and the FA of the visitors)."""

    name: str | None = Field(None, description="segment name (default lan-<mvpn>)")
    subnet: ipaddress.IPv4Network
    hosts: dict[str, Addr | None] = Field({}, description="home hosts on the core LAN (address derived if null)")


class AccessMsm(_Strict):
    """The MSM on the core LAN: portal/CA and the DIAMETER server the sink asks (claims 41, 56)."""

    name: str = "msm"
    address: Addr | None = None
    test_certs: bool = Field(False, description="the operator may issue test certificates (e.g. expired ones)")


class Neighbour(_Strict):
    """An AODV router linked to the sink only; ``announce`` lies behind it (claims 57-62)."""

    name: str
    link: ipaddress.IPv4Network = Field(description="the point-to-point link (a /30): sink .1, neighbour .2")
    announce: list[ipaddress.IPv4Network] = []


class Visitor(_Strict):
    """A node of the FA's M-VPN visiting the cell: its cell address and its home address (claims 46-49)."""

    address: Addr
    home: Addr


class VisitorFa(_Strict):
    """The FA of another M-VPN on the core LAN, the end of the visitors' IP-IP tunnels."""

    name: str = "fa"
    mvpn: str
    address: Addr | None = Field(None, description="on the core LAN (derived if unset)")
    hosts: dict[str, Addr | None] = Field({}, description="hosts on its M-VPN's LAN")
    visitors: dict[str, Visitor] = {}


class AccessNode(_Strict):
    """A node on the cell that claims to be an MSM user of the M-VPN."""

    address: Addr | None = None
    user: str | None = Field(None, description="the MSM user it claims to be (default: its name)")
    secret: str | None = Field(None, description="shared secret of its hello authenticator, known to the MSM (claim 40)")
    dhcp: bool = Field(False, description="attaches with DHCP only: starts without an address (claims 57-62)")


class AccessPlane(_Strict):
    """Who may attach at ``sink`` (claims 40-62). The sink's agents are not started: they need
    certificates from the running MSM (a scenario starts them)."""

    mvpn: str
    sink: str = "msr1"
    cell: Cell
    core: Core
    msm: AccessMsm = AccessMsm()
    neighbour: Neighbour | None = None
    fa: VisitorFa | None = None
    nodes: dict[str, AccessNode] = {}


__all__ = ["AccessPlane", "AccessNode", "AccessMsm", "Cell", "Core", "Neighbour", "Visitor", "VisitorFa"]
