"""Configuration of the access agents (sink and node), JSON or YAML, validated by pydantic.

Every part is a switch so a scenario can compare: shared-secret hellos, certificate
hellos (and where the sink gets the node's certificate), visitors, nftables filters, the
DHCP hello. Unknown keys are refused and errors name the field.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from testbed.common.config import ConfigError, read_mapping, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MsmPeer(_Strict):
    address: ipaddress.IPv4Address
    port: int = Field(3868, ge=1, le=65535)
    realm: str = "mwg.test"
    tw: float = Field(30.0, ge=1)
    timeout: float = Field(3.0, gt=0)


class CertFiles(_Strict):
    """Own certificate/key and the MSM CA (management configuration, claim 55)."""

    ca_file: str
    cert_file: str
    key_file: str


class VisitorConfig(_Strict):
    enabled: bool = False
    #: the FA: a visitor's only route is a default route via it (claim 46)
    fa_address: ipaddress.IPv4Address | None = None

    @model_validator(mode="after")
    def _fa(self):
        if self.enabled and self.fa_address is None:
            raise ValueError("fa_address is required when visitors are enabled")
        return self


class DhcpConfig(_Strict):
    enabled: bool = False
    interface: str = "eth0"
    port: int = Field(67, ge=1, le=65535)
    client_port: int = Field(68, ge=1, le=65535)
    lease_s: int = Field(600, ge=10)
    #: issue 11 section 4 (see DhcpHelloServer): how long and how many (xid, nonce)
    #: decisions are kept, and how many exchanges may wait for the MSM at once
    decision_ttl_s: float = Field(60.0, gt=0)
    max_decisions: int = Field(4096, ge=1)
    max_pending: int = Field(64, ge=1)


class SinkConfig(_Strict):
    role: Literal["sink"] = "sink"
    address: ipaddress.IPv4Address
    identity: str = "msr.mwg.test"
    realm: str = "mwg.test"
    #: UDP port of the hello plane when run standalone (654 = AODV's own port)
    port: int = Field(654, ge=1, le=65535)
    interfaces: list[str] = Field(default_factory=list)
    msm: MsmPeer | None = None
    shared_secret: bool = True
    certificate: bool = False
    #: where the node's certificate comes from: in the hello, or fetched (claims 55-56)
    cert_source: Literal["hello", "diameter", "dns"] = "hello"
    dns_server: ipaddress.IPv4Address | None = None
    dns_port: int = Field(53, ge=1, le=65535)
    certs: CertFiles | None = None
    #: plain hellos (no access extension): "open" advertises open_routes (plain AODV
    #: baseline), "refuse" ignores them
    plain_hellos: Literal["open", "refuse"] = "refuse"
    open_routes: list[str] = Field(default_factory=list)
    visitors: VisitorConfig = Field(default_factory=VisitorConfig)
    replay_window_ms: int = Field(30_000, ge=100)
    #: after a refusal, hellos from that address are ignored this long (no MSM flooding)
    refused_holddown_ms: int = Field(1000, ge=0)
    #: issue 11 section 4: hello senders the sink keeps state (and an nft chain) for, and
    #: how long a refused one is remembered; over max_nodes, refused ones past their
    #: holddown make room (oldest first), else the hello is dropped and counted
    max_nodes: int = Field(1024, ge=1)
    refused_retention_ms: int = Field(60_000, ge=0)
    nft: bool = True
    nft_table: str = "tb_access"
    dhcp: DhcpConfig = Field(default_factory=DhcpConfig)
    status_file: str = "/run/testbed/access-sink.json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _needs(self):
        if (self.shared_secret or self.dhcp.enabled or self.cert_source == "diameter"
                or self.certificate) and self.msm is None:
            raise ValueError("msm is required for shared_secret, certificate and dhcp")
        if self.certificate and self.certs is None:
            raise ValueError("certs is required when certificate is enabled")
        if self.cert_source == "dns" and self.dns_server is None:
            raise ValueError("dns_server is required when cert_source is dns")
        return self


class NodeConfig(_Strict):
    role: Literal["node"] = "node"
    address: ipaddress.IPv4Address
    identity: str
    interface: str = "eth0"
    port: int = Field(654, ge=1, le=65535)
    method: Literal["plain", "secret", "certificate"] = "secret"
    secret: str | None = None
    certs: CertFiles | None = None
    #: send the certificate in the hello, or only its fingerprint (sink fetches it)
    send_certificate: bool = True
    hello_interval_ms: int = Field(1000, gt=0)
    #: stop (exit 1) after this many unanswered hellos; 0 = keep trying
    max_hellos: int = Field(0, ge=0)
    #: exit (0) once attached: one-shot attach, e.g. for measurements
    exit_when_attached: bool = False
    install_routes: bool = True
    status_file: str = "/run/testbed/access-node.json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _needs(self):
        if self.method == "secret" and not self.secret:
            raise ValueError("secret is required for method secret")
        if self.method == "certificate" and self.certs is None:
            raise ValueError("certs is required for method certificate")
        return self


def parse(data: dict, model: type[BaseModel]):
    return validate(model, data, "access config")


def load(path: str | Path) -> SinkConfig | NodeConfig:
    data = read_mapping(path)
    role = data.get("role", "sink")
    if role not in ("sink", "node"):
        raise ConfigError(f"role: {role!r} is not sink or node")
    return parse(data, SinkConfig if role == "sink" else NodeConfig)
