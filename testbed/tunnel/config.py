"""Configuration of a standalone IP-IP endpoint (`python3 -m testbed.tunnel`)."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PeerConfig(BaseModel):
    """One peer: its public address, and how its interface is set up on our side."""
    model_config = ConfigDict(extra="forbid")
    addr: IPv4Address
    ifname: str | None = Field(default=None, max_length=15)
    netns: str | None = None          # move the interface into this namespace
    mtu: int = Field(default=1480, ge=576, le=65515)
    addresses: list[IPv4Interface] = []  # addresses on the peer interface
    routes: list[str] = []            # "PREFIX [table N] [src A]" routed into the tunnel

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: list[str]) -> list[str]:
        for r in v:
            IPv4Network(r.split()[0], strict=False)
        return v


class TunnelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    local: IPv4Address
    mode: Literal["auto", "kernel", "bpf", "userspace"] = "auto"  # testbed/tunnel/modes.py
    threads: Literal[1, 2] = 1         # userspace: one thread per direction, or one for both
    ifname_prefix: str = Field(default="ipip-", max_length=10)
    peers: dict[str, PeerConfig] = {}
    status_file: str = "/run/testbed/tunnel.json"
    status_interval: float = Field(default=1.0, gt=0, le=1.0)
    log_level: str = "INFO"
