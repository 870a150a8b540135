"""Configuration of the MN agent (`python3 -m testbed.mn --config FILE`, JSON or YAML).

    fqdn: b.mwg.test
    workgroup: W
    portal: {url: "https://198.51.100.10:8443", poll_timeout: 20}
    interface: eth0                       # the MN's LAN interface (towards its SG)
    credentials: {dir: /var/lib/testbed/mn/pki, token_file: /etc/testbed/mn.token}
    # cert.pem/key.pem/ca.pem in dir; if missing, enrolled at the MSM CA with the one-time
    # token (key made here, CSR sent; CA learned through the token's HMAC or `ca_file`)
    workdir: /var/lib/testbed/mn
    status_file: /run/testbed/mn.json
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from testbed.sg.config import PortalConfig as SgPortalConfig, Proposals
from testbed.common.strongswan import ESP_PROPOSALS, IKE_PROPOSALS


class PortalConfig(SgPortalConfig):
    """The MSM portal as the SG follows it; an MN waits a little less per long-poll."""

    poll_timeout: float = Field(default=20.0, gt=0, le=300)


class CredentialsConfig(BaseModel):
    """Where the MN's certificate, key and the MSM CA live, and how it enrols (issue 9)."""
    model_config = ConfigDict(extra="forbid")
    dir: str = "/var/lib/testbed/mn/pki"
    enroll: bool = True   # ask the MSM CA for a certificate when dir has none
    token: str | None = Field(default=None, pattern=r"^[a-z0-9]{6}\.[A-Za-z0-9_-]{16,}$")
    token_file: str | None = None   # a file holding the token (kept out of the config)
    ca_file: str | None = None      # a pre-provisioned MSM CA; else learned by the token's HMAC

    @model_validator(mode="after")
    def _token(self) -> "CredentialsConfig":
        if self.token and self.token_file:
            raise ValueError("credentials: give token or token_file, not both")
        return self


class MnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fqdn: str = Field(min_length=1, max_length=253)
    workgroup: str = Field(min_length=1)
    portal: PortalConfig
    interface: str = Field(default="eth0", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    credentials: CredentialsConfig = CredentialsConfig()
    workdir: str = "/var/lib/testbed/mn"
    netns_prefix: str = Field(default="via-", pattern=r"^[A-Za-z0-9_-]{1,6}$")
    retry_interval: float = Field(default=2.0, gt=0, le=60)
    initiate_timeout: float = Field(default=6.0, gt=0, le=60)
    debug: int = Field(default=1, ge=0, le=4)
    proposals: Proposals = IKE_PROPOSALS.split(",")       # IKE, offered in this order
    esp_proposals: Proposals = ESP_PROPOSALS.split(",")
    status_file: str = "/run/testbed/mn.json"
    status_interval: float = Field(default=1.0, gt=0, le=1.0)
    log_level: str = "INFO"
