"""Configuration of the SG agent (`python3 -m testbed.sg --config FILE`, JSON or YAML).

Example (SG of M-VPN B):

    mvpn: B
    public_address: 198.51.100.2
    realm: [10.0.0.0/24]                 # our M-VPN's private prefixes (IPsec local_ts)
    portal: {url: "http://198.51.100.10:8080"}
    peers: {A: {public: 198.51.100.1}, C: {public: 198.51.100.3}}
    ipsec: {enabled: true, cert: /etc/testbed/sg/cert.pem, key: /etc/testbed/sg/key.pem,
            ca: /etc/testbed/ca.pem}
    status_file: /run/testbed/sg.json
"""
from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from testbed.common.strongswan import ESP_PROPOSALS, IKE_PROPOSALS

NAME = re.compile(r"^[A-Za-z0-9_]{1,8}$")
PROPOSAL = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _proposals(v: list[str]) -> list[str]:
    for p in v:
        if not PROPOSAL.match(p):
            raise ValueError(f"proposal {p!r}: strongSwan algorithm keywords joined by '-', "
                             "e.g. aes128gcm16-prfsha256-ecp256")
    return v


# IKE or ESP proposals in order of preference (strongSwan syntax), at least one.
Proposals = Annotated[list[str], Field(min_length=1), AfterValidator(_proposals)]


class PeerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public: IPv4Address
    routes: list[str] = []  # plain mode only: prefixes routed into this peer's tunnel


class PortalConfig(BaseModel):
    """The MSM portal. Over https:// the node verifies the server against `ca` and presents
    `cert`/`key` as its TLS client certificate (PEM files; an SG defaults to its ipsec ones)."""
    model_config = ConfigDict(extra="forbid")
    url: str
    poll_timeout: float = Field(default=25.0, gt=0, le=300)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


class TunnelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["auto", "kernel", "bpf", "userspace"] = "auto"  # testbed/tunnel/modes.py
    ifname_prefix: str = Field(default="ip-", max_length=6)
    mtu: int = Field(default=1480, ge=576, le=65515)


class IpsecConfig(BaseModel):
    """Per-realm strongSwan responders. Off: plain IP-IP, tunnels stay in our namespace."""
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    identity: IPv4Address | None = None  # our IKE identity; default: public_address
    workdir: str = "/var/lib/testbed/sg"
    netns_prefix: str = Field(default="realm-", max_length=20)
    require_ipsec: bool = True  # realm netns forwards only decrypted traffic inwards
    # LAN interface on which each peer realm's decrypted packets leave with the realm's own
    # source MAC 02:<peer SG public>:00 (realm_mark.py), so targets can answer over the
    # right tunnel when two initiators share a private address. None: off.
    lan_interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    debug: int = Field(default=1, ge=0, le=4)
    # IKE and ESP proposals of every responder, in order of preference (strongSwan syntax).
    proposals: Proposals = IKE_PROPOSALS.split(",")
    esp_proposals: Proposals = ESP_PROPOSALS.split(",")
    # Answers from our LAN to an initiator go back through that initiator's CHILD_SA (a
    # route per filter row into its realm). Off in the patent's design, where the target
    # answers over its own tunnel (claims 12-13); on for stock peers that expect an
    # ordinary bidirectional CHILD_SA (interop matrix, issue 12). Needs initiators' private
    # addresses to be distinct across realms.
    answer_via_sa: bool = False

    @model_validator(mode="after")
    def _creds(self) -> "IpsecConfig":
        if self.enabled:
            for f in ("cert", "key", "ca"):
                if not getattr(self, f):
                    raise ValueError(f"ipsec.{f} is required when ipsec.enabled is true")
        return self


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str = Field(default="tb_workgroup", pattern=r"^[A-Za-z0-9_]{1,32}$")
    hooks: list[Literal["forward", "input"]] = ["forward"]


class SgConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mvpn: str
    public_address: IPv4Address
    realm: list[IPv4Network] = []
    portal: PortalConfig | None = None
    static_rows: list[dict] = []          # used when there is no portal (tests, offline)
    auto_peers: bool = True               # a row naming an unknown peer SG creates its tunnel
    peers: dict[str, PeerConfig] = {}
    tunnel: TunnelConfig = TunnelConfig()
    ipsec: IpsecConfig = IpsecConfig()
    filter: FilterConfig = FilterConfig()
    status_file: str = "/run/testbed/sg.json"
    status_interval: float = Field(default=1.0, gt=0, le=1.0)
    log_level: str = "INFO"

    @field_validator("peers")
    @classmethod
    def _peer_names(cls, v: dict[str, PeerConfig]) -> dict[str, PeerConfig]:
        seen = set()
        for name, pc in v.items():
            if not NAME.match(name):
                raise ValueError(f"peer name {name!r}: 1-8 letters, digits or _ "
                                 "(it becomes part of interface names)")
            if pc.public in seen:
                raise ValueError(f"peer {name}: public address {pc.public} used twice")
            seen.add(pc.public)
        return v

    @model_validator(mode="after")
    def _not_self(self) -> "SgConfig":
        for name, pc in self.peers.items():
            if pc.public == self.public_address:
                raise ValueError(f"peers.{name}.public: is our own public_address")
        if self.ipsec.enabled and not self.realm:
            raise ValueError("realm: required when ipsec.enabled (it is the responders' local_ts)")
        p = self.portal
        if p and p.url.startswith("https://") and not (p.ca or self.ipsec.ca):
            raise ValueError("portal.ca: required for an https:// portal (the MSM CA to verify it), "
                             "or set ipsec.ca")
        return self
