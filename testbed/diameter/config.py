"""Configuration of the standalone DIAMETER server (JSON or YAML file).

Why strict: a typo in a route or filter would otherwise surface only when a
node attaches and gets the wrong policy. Every route and filter is parsed at
load time and an error names the field, e.g. ``users.mn1.home.example.filters[0]``.

Example (YAML)::

    origin_host: msm.home.example
    origin_realm: home.example
    listen: 0.0.0.0
    port: 3868
    tw: 30
    status_file: /run/testbed/diameter.json
    exchange_log: /run/testbed/diameter-exchanges.jsonl
    defaults:
      routes: ["0.0.0.0/0 10.1.0.254 10", "10.1.0.0/16 0.0.0.0 1"]
      filters: ["permit in ip from assigned to 10.1.0.0/16",
                "permit out ip from 10.1.0.0/16 to assigned"]
    users:
      mn1.home.example: {secret: s3cret, certificate_file: /etc/testbed/mn1.pem}
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .rules import RuleError, parse_filter, parse_route
from .static_backend import StaticBackend, StaticUser


class ConfigError(ValueError):
    """Refused configuration; the message names file and field."""


def _check_routes(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    for i, text in enumerate(v):
        try:
            parse_route(text)
        except RuleError as exc:
            raise ValueError(f"[{i}]: {exc}") from exc
    return v


def _check_filters(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    for i, text in enumerate(v):
        try:
            parse_filter(text)
        except RuleError as exc:
            raise ValueError(f"[{i}]: {exc}") from exc
    return v


# Routes and filter rules are checked where they are declared, once for every model that has them.
RouteList = Annotated[list[str], AfterValidator(_check_routes)]
FilterList = Annotated[list[str], AfterValidator(_check_filters)]


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    routes: RouteList = Field(default_factory=list)
    filters: FilterList = Field(default_factory=list)


class UserEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str | None = None
    routes: RouteList | None = None
    filters: FilterList | None = None
    certificate_file: str | None = None
    certificate_pem: str | None = None
    allow_authorize_only: bool = True


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    origin_host: str = Field(min_length=1)
    origin_realm: str = Field(min_length=1)
    listen: str = "0.0.0.0"
    port: int = Field(default=3868, ge=0, le=65535)
    host_ip_addresses: list[str] = Field(default_factory=list)
    tw: float = Field(default=30.0, ge=0.5, le=3600)
    status_file: str = "/run/testbed/diameter.json"
    exchange_log: str | None = "/run/testbed/diameter-exchanges.jsonl"  # null: no file
    log_level: str = "INFO"
    defaults: Policy = Field(default_factory=Policy)
    users: dict[str, UserEntry] = Field(default_factory=dict)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        ipaddress.ip_address(v)
        return v

    @field_validator("host_ip_addresses")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for a in v:
            ipaddress.ip_address(a)
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return v.upper()


def parse_config(data: Any, source: str = "<config>") -> ServerConfig:
    try:
        cfg = ServerConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if msg.startswith("["):  # list index from our validators: "filters[1]: ..."
            index, _, msg = msg.partition(": ")
            where += index
        raise ConfigError(f"{source}: {where}: {msg}") from None
    for name, user in cfg.users.items():
        if user.certificate_file and user.certificate_pem:
            raise ConfigError(f"{source}: users.{name}: give certificate_file or certificate_pem, not both")
        if user.certificate_file:
            try:
                user.certificate_pem = Path(user.certificate_file).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{source}: users.{name}.certificate_file: {exc}") from None
        if user.certificate_pem and "-----BEGIN CERTIFICATE-----" not in user.certificate_pem:
            raise ConfigError(f"{source}: users.{name}.certificate_pem: not a PEM certificate")
    return cfg


def load_config(path: str | Path) -> ServerConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    return parse_config(data, str(path))


def backend_from_config(cfg: ServerConfig) -> StaticBackend:
    users = {name: StaticUser(secret=u.secret, routes=u.routes, filters=u.filters,
                              certificate_pem=u.certificate_pem,
                              allow_authorize_only=u.allow_authorize_only)
             for name, u in cfg.users.items()}
    return StaticBackend(users, list(cfg.defaults.routes), list(cfg.defaults.filters))
