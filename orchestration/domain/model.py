"""The lab file at the level of the claims: M-VPNs, SGs, the MSM, workgroups, mobile nodes.

A lab file has ``kind: lab`` at the top. It names what the patent's claims name and
leaves the plumbing (segments, addresses, agent configs, nftables, start order) to the
compiler (orchestration.domain.compiler), which produces an ordinary
orchestration.topology.Topology. Every field is optional where a sensible value can be
derived; ``nodes:`` and ``segments:`` take low-level fields (orchestration.topology.Node)
that are merged over what the compiler generated, as an escape hatch.

    kind: lab
    name: twowg
    mvpns:
      A: {realm: 10.0.0.0/24, sg: 198.51.100.1}
      B: {realm: 10.0.0.0/24, sg: 198.51.100.2}
    mobile_nodes:
      a: {mvpn: A, address: 10.0.0.5, workgroup: W}
      b: {mvpn: B, address: 10.0.0.7, workgroup: W}
    workgroups: {W: [a, b]}
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..checks.model import AnyCheck
from ..scenario import Check as DataCheck
from .accessmodel import AccessPlane
from ..topology import LAB_NAME, check_item_names, check_lab_name
from .testing import Testing

from .mesh import Mesh  # noqa: E402 - the aodv: mesh (own line, apart from the other domain imports)

DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def seconds(v: Any) -> float:
    """``2.5``, ``"2.5s"`` or ``"2500ms"`` as seconds; ValueError otherwise."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    m = DURATION.match(str(v).strip())
    if not m:
        raise ValueError(f"{v!r} is not a duration such as 2.5s, 2500ms or 2.5")
    return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)


class Aodv(_Strict):
    """AODV options of a node (RFC 3561 agent, testbed.aodv.config.AgentConfig). Any field
    of that model may be given under ``extra``; the common ones have their own names."""

    handover: bool = Field(True, description="sink handover extension (claims 26-39)")
    hello_enabled: bool = True
    extra: dict[str, Any] = Field({}, description="further testbed.aodv AgentConfig fields, passed through")


class Sg(_Strict):
    """The security gateway of an M-VPN (claims 3-4): its public address on the Internet."""

    address: ipaddress.IPv4Address
    node: str | None = Field(None, description="node name (default sg-<mvpn>)")


class HomeAgent(_Strict):
    """A virtual home agent of the M-VPN inside an operator HA (claims 16-17)."""

    operator: str
    address: ipaddress.IPv4Address | None = Field(None, description="the virtual HA's public address (derived if unset)")


class Mvpn(_Strict):
    """A mobile VPN (claim 1): private realm, SG, home agent, MSRs."""

    realm: ipaddress.IPv4Network
    sg: Sg | None = None
    home_agent: HomeAgent | None = None
    msrs: list[str] = Field([], description="mobile service routers (AODV), joined in a chain in this order")
    aodv: Aodv = Aodv()
    home_sinks: bool = Field(False, description="the MSRs also sit on the home LAN as its sinks: proxy ARP for "
                             "their MNs, the home LAN's gateway as theirs (claim 14; orchestration.domain.homedomain)")
    cells: dict[str, str] = Field({}, description="segment name of an MSR's radio cell (default cell-<msr>)")
    description: str = ""

    @field_validator("sg", mode="before")
    @classmethod
    def _sg_short(cls, v: Any) -> Any:
        return {"address": v} if isinstance(v, str) else v

    @field_validator("home_agent", mode="before")
    @classmethod
    def _ha_short(cls, v: Any) -> Any:
        return {"operator": v} if isinstance(v, str) else v


class Operator(_Strict):
    """An operator home agent (claims 16-22): dispatcher and backbone on ``address``."""

    address: ipaddress.IPv4Address | None = None


class Msm(_Strict):
    """The mobile service manager (claims 5, 13, 20-21): portal, DNS, CA."""

    address: ipaddress.IPv4Address | None = Field(None, description="public address (derived if unset)")
    operator: str | None = Field(None, description="host it on this operator HA's backbone (claim 20)")
    node: str = "msm"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG logs every portal request with its source address (what the NAPT shows, claim 22)")


class User(_Strict):
    """A user of the MSM that is not a node of the lab (claim 5)."""

    mvpn: str
    address: ipaddress.IPv4Address
    fqdn: str | None = None


class MobileNode(_Strict):
    """A mobile node (claims 1, 14, 25): its M-VPN, address, where it starts, what it runs."""

    mvpn: str
    address: ipaddress.IPv4Address | None = None
    workgroup: str | None = Field(None, description="sign on to this workgroup and build its tunnels (claims 5-10)")
    at: str | None = Field(None, description="where it starts: 'home' (default), an MSR name or an access network")
    mip: bool | None = Field(None, description="run Mobile IP (default: when the M-VPN has a home agent)")
    aodv: Aodv | None = Field(None, description="run AODV (default: when it starts at an MSR)")
    fqdn: str | None = None
    ipsec_to_ha: bool = Field(False, description="on a co-located care-of address, an IPsec SA to its virtual HA "
                              "inside the Mobile IP tunnel (claim 24)")
    serve: int | None = Field(None, ge=1, le=65535, description="run testbed.mip.probe's TCP echo server on this port")


class Host(_Strict):
    """A correspondent host inside an M-VPN (no agent), e.g. a server."""

    mvpn: str
    address: ipaddress.IPv4Address | None = None
    at: str | None = None
    serve: int | None = Field(None, ge=1, le=65535, description="run testbed.mip.probe's TCP echo server on this port")


class AccessNetwork(_Strict):
    """A public access network (claims 18, 23): with a foreign agent, or a plain hotspot."""

    subnet: ipaddress.IPv4Network
    fa: bool = Field(False, description="a foreign agent serves it (shared by every HA)")
    router: str | None = Field(None, description="node name of its FA/router (default fa-<name> or rt-<name>)")


class Event(_Strict):
    """One entry of the schedule: at ``at``, move a node or set a link up/down. A ``name``
    makes it a point counter checks can count from or to (``from: before NAME``)."""

    at: float
    name: str | None = None
    move: str | None = None
    to: str | None = None
    link: str | None = None
    up: bool | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> float:
        return seconds(v)


# A lab's checks: every kind of the scenario engine (orchestration.checks.model: command --
# DataCheck --, status, pcap, counter, reach, continuity), each with ``at`` and ``claims``.
Check = AnyCheck


class Internet(_Strict):
    """The emulated Internet (``internet:`` of a lab file): its ``subnet`` (default
    198.51.100.0/24, addresses the file leaves out are taken from it), the backbone
    ``router`` on one segment, or instead ``routers`` in a chain (name -> the M-VPNs whose
    SGs it serves), and plain ``hosts`` (name -> address). Unknown keys and item names that
    are not lowercase letters, digits and '-' are refused (pydantic ValidationError).
    """
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("198.51.100.0/24")
    router: str = Field("bb", description="the backbone router of the emulated Internet")
    routers: dict[str, list[str]] = Field({}, description="instead of one segment: routers in a chain, each with the "
                                          "M-VPNs whose SGs it serves (orchestration.domain.internet)")
    hosts: dict[str, ipaddress.IPv4Address] = Field({}, description="plain hosts on the Internet segment: name -> address")

    @field_validator("routers", "hosts")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_item_names(v)


class LabFile(_Strict):
    """A whole lab at the level of the domain (``kind: lab``)."""

    kind: Literal["lab"]
    name: str
    description: str = ""
    zone: str = Field("mwg.test", description="DNS zone of the MSM; a node's FQDN is <name>.<zone>")
    internet: Internet = Internet()
    msm: Msm | None = None
    operators: dict[str, Operator] = {}
    mvpns: dict[str, Mvpn] = {}
    aodv: Mesh | None = Field(None, description="an AODV mesh of MSRs by its links (orchestration.domain.mesh)")
    users: dict[str, User] = {}
    workgroups: dict[str, list[str]] = {}
    mobile_nodes: dict[str, MobileNode] = {}
    hosts: dict[str, Host] = {}
    access_networks: dict[str, AccessNetwork] = {}
    access: AccessPlane | None = Field(None, description="who may attach at a sink (claims 40-62, orchestration.domain.access)")
    schedule: list[Event] = []
    checks: list[Check] = []
    nodes: dict[str, dict[str, Any]] = Field({}, description="low-level fields merged over generated nodes, or extra nodes")
    segments: dict[str, dict[str, Any]] = Field({}, description="extra low-level segments")
    testing: Testing = Field(Testing(), description="what a test lab adds: peers, tokens, MSM options (domain.testing)")

    @field_validator("name")
    @classmethod
    def _lab_name(cls, v: str) -> str:
        check_lab_name(v)
        return v

    @field_validator("mobile_nodes", "hosts", "operators", "access_networks", "users")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_item_names(v)

    @field_validator("mvpns", mode="before")
    @classmethod
    def _mvpn_names(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for k in v:
                if not re.match(r"^[A-Za-z][A-Za-z0-9]{0,7}$", str(k)):
                    raise ValueError(f"M-VPN name {k!r} must be 1-8 letters or digits, starting with a letter")
        return v


__all__ = ["LabFile", "Mvpn", "Sg", "HomeAgent", "Operator", "Msm", "User", "MobileNode", "Host",
           "AccessNetwork", "Event", "Check", "Aodv", "seconds", "LAB_NAME"]
