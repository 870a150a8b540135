"""Configuration of the Mobile IP agents (`python3 -m testbed.mip {ha,fa,mn} --config FILE`).

Bad input is refused by pydantic with a message naming the field (e.g.
`home_agents.0.mobile_nodes.10.0.0.5.spi: Input should be greater than or equal to 256`).
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from testbed.mip.security import SecurityAssociation


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MnSecurity(_Base):
    """MN-HA mobility security association (HMAC-MD5, timestamps)."""
    spi: int = Field(ge=256, le=0xFFFFFFFF)  # SPIs 0-255 are reserved (RFC 5944 1.6)
    key: str | None = None                   # shared secret as text ...
    key_hex: str | None = None               # ... or as hex

    @model_validator(mode="after")
    def _one_key(self):
        if (self.key is None) == (self.key_hex is None):
            raise ValueError("give exactly one of key, key_hex")
        if self.key_hex is not None:
            bytes.fromhex(self.key_hex)
        return self

    def sa(self) -> SecurityAssociation:
        key = self.key.encode() if self.key is not None else bytes.fromhex(self.key_hex or "")
        return SecurityAssociation(spi=self.spi, key=key)


class IpsecConfig(_Base):
    """Claim 24: extra IPsec tunnel MN <-> HA inside the CCoA tunnel (strongSwan, PSK = MN-HA key)."""
    workdir: str = Field(min_length=1)   # charon's config, VICI socket and log (not under /run)
    # What the SA carries: "home_prefix" = H <-> home prefix only; "all" = everything the MN
    # sends from H while on the CCoA (e.g. the workgroup ESP to another M-VPN's SG, so the
    # workgroup IPsec tunnel runs inside this one, claim 24). Both ends must agree.
    protect: Literal["home_prefix", "all"] = "home_prefix"


class HomeAgentConfig(_Base):
    """One (virtual) home agent."""
    name: str = Field(min_length=1, max_length=8, pattern=r"^[a-z0-9]+$")
    address: IPv4Address                 # HA address = tunnel endpoint and UDP 434
    home_prefix: IPv4Network
    home_interfaces: list[str] = []      # proxy ARP, gratuitous ARP, advertisements here
    netns: str | None = None             # virtual HA: its own network namespace
    interfaces: dict[str, IPv4Interface] = {}  # virtual HA: moved into netns with this address
    routes: list[str] = []               # virtual HA: extra `ip route` specs inside netns
    max_lifetime: int = Field(default=600, ge=1, le=65534)
    reverse_tunnel: Literal["allowed", "mandatory", "refused"] = "allowed"
    replay_tolerance: float = Field(default=7.0, gt=0)
    advertise: bool = True
    ipsec_ccoa: IpsecConfig | None = None  # claim 24: accept IPsec from MNs using a CCoA
    #: this HA's IP-IP data plane; None: the agent's tunnel_mode. "userspace" where another
    #: IP-IP endpoint shares the HA's address and namespace (the SG of its M-VPN, claim 15):
    #: the tc-BPF decap drops IP-IP from every peer not in its own map, so the SG would no
    #: longer hear its peers; userspace endpoints each take only their own peers' packets
    tunnel_mode: Literal["auto", "kernel", "bpf", "userspace"] | None = None
    mobile_nodes: dict[IPv4Address, MnSecurity]

    @model_validator(mode="after")
    def _homes_in_prefix(self):
        for h in self.mobile_nodes:
            if h not in self.home_prefix:
                raise ValueError(f"mobile_nodes.{h}: outside home_prefix {self.home_prefix}")
        return self


class OperatorConfig(_Base):
    """Operator HA (claims 16-19): the backbone side of the virtual HAs' namespaces."""
    backbone_interface: str              # public interface; proxy ARP for virtual HA addresses
    link_prefix: IPv4Network = IPv4Network("172.31.255.0/24")  # /30s backbone <-> virtual HA
    # claims 20-22: public addresses of services on the backbone (e.g. the MSM's portal and
    # DNS), reached from every realm through a NAPT to the virtual HA's public address
    services: list[IPv4Address] = []


class HaAgentConfig(_Base):
    home_agents: list[HomeAgentConfig] = Field(min_length=1)
    operator: OperatorConfig | None = None
    tunnel_mode: Literal["auto", "kernel", "bpf", "userspace"] = "auto"
    adv_interval: float = Field(default=1.0, gt=0)
    status_file: str = "/run/testbed/mip-ha.json"
    status_interval: float = Field(default=1.0, gt=0, le=1.0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _unique(self):
        names = [h.name for h in self.home_agents]
        addrs = [h.address for h in self.home_agents]
        if len(set(names)) != len(names):
            raise ValueError("home_agents: names must be unique")
        if len(set(addrs)) != len(addrs):
            raise ValueError("home_agents: addresses must be unique (the dispatcher selects by it)")
        if len(self.home_agents) > 1 and any(h.netns is None for h in self.home_agents):
            raise ValueError("home_agents: several virtual HAs need a netns each (realms may overlap)")
        return self


class FaAgentConfig(_Base):
    address: IPv4Address                 # care-of address and router address on `interface`
    interface: str                       # the visited link
    prefix_len: int = Field(default=24, ge=0, le=32)
    max_lifetime: int = Field(default=600, ge=1, le=65534)
    reverse_tunnel: Literal["allowed", "mandatory"] = "mandatory"
    adv_interval: float = Field(default=1.0, gt=0)
    adv_lifetime: int = Field(default=9, ge=1, le=65535)
    pending_timeout: float = Field(default=7.0, gt=0)
    #: requests relayed and not yet answered (issue 11 section 4): the FA cannot check an
    #: MN's credentials, so more are denied with 66 "insufficient resources" (RFC 5944 3.7.2)
    max_pending: int = Field(default=1024, ge=1)
    home_agents: list[IPv4Address] = []  # if given: relay only to these
    status_file: str = "/run/testbed/mip-fa.json"
    status_interval: float = Field(default=1.0, gt=0, le=1.0)
    log_level: str = "INFO"


class AodvHomeConfig(_Base):
    """Claim 14: the home domain is an AODV network of sinks (MSRs); attached to one of
    them (read from the MN's own AODV agent's status file) the MN is at home, AODV moves
    it between the sinks and Mobile IP only deregisters."""
    status_file: str = "/run/testbed/aodv.json"
    sinks: list[IPv4Address] = Field(min_length=1)
    max_age: float = Field(default=1.5, gt=0)   # an older status file says nothing
    #: the AODV agent's `handover.leave_socket`: told "left" once we registered away, so
    #: its catch-alls stop holding our traffic at once (issue 14); None = not told
    leave_socket: str | None = None


class MnAgentConfig(_Base):
    home_address: IPv4Address
    home_prefix: IPv4Network
    home_gateway: IPv4Address
    home_agent: IPv4Address
    security: MnSecurity
    interface: str = "eth0"
    lifetime: int = Field(default=60, ge=1, le=65534)
    renew_fraction: float = Field(default=0.7, gt=0, lt=1)
    reverse_tunnel: bool = True
    agent_timeout: float = Field(default=3.0, gt=0)  # no advertisement this long -> agent lost
    #: agents remembered from advertisements (anyone on the link can send one); older than
    #: agent_timeout are forgotten first, then new advertisers are ignored and counted
    max_agents: int = Field(default=64, ge=1)
    #: no agent heard: how long after a solicitation a co-located CoA may be used. 0 (the
    #: default, issue 14): at once; an FA or our HA heard later still takes over
    solicit_wait: float = Field(default=0.0, ge=0)
    retransmit: float = Field(default=1.0, gt=0)
    use_ccoa: bool = True                 # claim 23: no FA -> co-located care-of address
    #: ask the visited network for the co-located care-of address by DHCP at every
    #: carrier-up, in parallel with the agent solicitation (testbed.mip.dhcp); the lease
    #: is dropped when the carrier goes. False: a CCoA is whatever address appears on the link
    ccoa_dhcp: bool = False
    ipsec_to_ha: IpsecConfig | None = None  # claim 24: IPsec to the HA while on a CCoA
    aodv_home: AodvHomeConfig | None = None  # claim 14: home = attached to a home sink (AODV)
    tunnel_mode: Literal["auto", "kernel", "bpf", "userspace"] = "auto"
    status_file: str = "/run/testbed/mip-mn.json"
    status_interval: float = Field(default=1.0, gt=0, le=1.0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _home(self):
        if self.home_address not in self.home_prefix:
            raise ValueError(f"home_address: {self.home_address} outside home_prefix {self.home_prefix}")
        return self
