"""Configuration of the MSM agent, read from a JSON or YAML file.

Unknown keys are refused (a typo must not silently fall back to a default), and
every error names the field, so a bad scenario file fails loudly at start.
"""
from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from testbed.common.config import ConfigError, read_mapping, validate


def _ip_text(value: str) -> str:
    ipaddress.ip_address(value)
    return value


#: an IPv4/IPv6 address kept as text, refused at load time if it is not one
IpText = Annotated[str, AfterValidator(_ip_text)]


class SeedWorkgroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    members: list[str] = []


class SeedToken(BaseModel):
    """An enrolment token the lab gives a node out of band (its config), issue 9."""

    model_config = ConfigDict(extra="forbid")
    identity: str
    kind: Literal["mn", "sg", "msr", "operator"]
    token: str = Field(pattern=r"^[a-z0-9]{6}\.[a-z0-9]{16,64}$")
    ttl_s: float = Field(86400.0, ge=1, le=30 * 86400)


class Seed(BaseModel):
    """A scenario's initial portal state, applied ONCE to an empty store (never over later
    changes made at the portal; see Store.apply_seed)."""

    model_config = ConfigDict(extra="forbid")
    mvpns: list[dict[str, Any]] = []
    users: list[dict[str, Any]] = []
    workgroups: list[SeedWorkgroup] = []
    tokens: list[SeedToken] = []


class DiameterSection(BaseModel):
    """The embedded DIAMETER server (claims 41-45, 56); off unless enabled."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    origin_host: str | None = None  # default: msm_fqdn
    origin_realm: str | None = None  # default: zone without the trailing dot
    address: str = "0.0.0.0"
    port: int = Field(3868, ge=0, le=65535)
    tw: float = Field(30.0, ge=1, le=3600)
    exchange_log: str | None = "/run/testbed/msm-diameter.jsonl"
    #: user FQDN -> shared secret for the HMAC authenticator of the hello (claim 40)
    secrets: dict[str, str] = {}
    #: M-VPN name -> gateway of its default route (default: first host of the realm)
    gateways: dict[str, str] = {}
    default_metric: int = Field(10, ge=0)
    home_metric: int = Field(1, ge=0)

    @field_validator("address")
    @classmethod
    def _addr(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("gateways")
    @classmethod
    def _gws(cls, value: dict[str, str]) -> dict[str, str]:
        for k, gw in value.items():
            try:
                ipaddress.IPv4Address(gw)
            except ValueError:
                raise ValueError(f"gateways.{k}: {gw!r} is not an IPv4 address") from None
        return value


class MsmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db_path: str = "/var/lib/msm/msm.db"
    ca_dir: str = "/var/lib/msm/ca"
    ca_common_name: str = "Mobile Workgroup MSM CA"
    key_type: Literal["rsa", "ec"] = "rsa"
    cert_days: int = Field(365, ge=1, le=3650)
    http_address: IpText = "0.0.0.0"  # the portal's listening address (HTTPS and the optional plain port)
    https_port: int = Field(8443, ge=0, le=65535)
    #: plain-HTTP copy of the portal, for the bench baseline and tests only (callers there are
    #: anonymous: no certificate, so only the anonymous routes answer unless insecure_no_authz)
    insecure_http_port: int | None = Field(None, ge=0, le=65535)
    server_san_ips: list[IpText] = []  # extra IP SANs of the portal's TLS certificate
    server_san_dns: list[str] = []  # extra DNS SANs of the portal's TLS certificate
    #: TEST ONLY: turn authorisation off (every route open; sign-on fqdn from the body)
    insecure_no_authz: bool = False
    #: TEST ONLY: operator route POST /api/testcerts (wrong SG in SAN, expired certificates)
    allow_test_certs: bool = False
    dns_enabled: bool = True
    dns_address: IpText = "0.0.0.0"
    dns_port: int = Field(53, ge=0, le=65535)
    zone: str = "mwg.test."
    msm_fqdn: str | None = None  # default msm.<zone>
    msm_address: IpText | None = None  # the MSM's public address, served in DNS
    longpoll_max: float = Field(60.0, gt=0, le=600)
    max_connections: int = Field(256, ge=1, le=100000)  # open portal connections (threads); more refused
    head_timeout: float = Field(10.0, gt=0, le=600)  # s for a request's head (and an idle keep-alive)
    status_file: str = "/run/testbed/msm.json"
    status_interval: float = Field(1.0, gt=0, le=60)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    seed: Seed = Seed()
    diameter: DiameterSection = DiameterSection()

    @model_validator(mode="before")
    @classmethod
    def _gone(cls, data: Any) -> Any:
        if isinstance(data, dict) and "http_port" in data:
            raise ValueError("http_port: removed by issue 9, the portal is HTTPS only: use https_port "
                             "(default 8443); insecure_http_port exists for the bench baseline and tests")
        return data

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        value = value.strip().lower()
        if not value.rstrip("."):
            raise ValueError("zone must not be empty")
        return value if value.endswith(".") else value + "."

    @property
    def msm_name(self) -> str:
        return (self.msm_fqdn or "msm." + self.zone).rstrip(".").lower()


def parse_config(data: Any) -> MsmConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("config: top level must be a mapping")
    return validate(MsmConfig, data, "config")


def load_config(path: str) -> MsmConfig:
    return parse_config(read_mapping(path))
