"""Validators for portal input: each returns the normalised value or raises ApiError.

Normalising here (lower-case names, no trailing dot, canonical address text) means
the store, DNS and filter rows compare like with like.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from .errors import bad

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def require(body: dict, field: str) -> Any:
    if field not in body or body[field] is None:
        raise bad(field, "missing")
    return body[field]


def text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise bad(field, f"must be a string, got {type(value).__name__}")
    return value


def name(value: Any, field: str) -> str:
    """An M-VPN or workgroup name: one DNS-label-like token (it becomes sg-<name>.<zone>)."""
    value = text(value, field)
    if not _NAME.match(value):
        raise bad(field, f"{value!r} is not a valid name (letters, digits, '-', '_', 1-63 chars)")
    return value


def fqdn(value: Any, field: str = "fqdn") -> str:
    """A user FQDN: lower-case, without the trailing dot, each label a host label."""
    value = text(value, field).strip().lower().rstrip(".")
    if not value or len(value) > 253:
        raise bad(field, f"{value!r} is not a valid domain name")
    labels = value.split(".")
    if len(labels) < 2 or not all(_LABEL.match(lab) for lab in labels):
        raise bad(field, f"{value!r} is not a valid domain name (need at least two labels)")
    return value


def ipv4(value: Any, field: str) -> ipaddress.IPv4Address:
    value = text(value, field)
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise bad(field, f"{value!r} is not an IPv4 address") from None
    if not isinstance(addr, ipaddress.IPv4Address):
        raise bad(field, f"{value!r} is not an IPv4 address")
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise bad(field, f"{value} cannot be a host address")
    return addr


def realm(value: Any, field: str = "realm") -> ipaddress.IPv4Network:
    value = text(value, field)
    try:
        net = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as exc:
        raise bad(field, f"{value!r} is not an IPv4 network in CIDR form ({exc})") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise bad(field, f"{value!r} is not an IPv4 network")
    if net.prefixlen > 30 or net.prefixlen < 8:
        raise bad(field, f"{value} prefix length must be between /8 and /30")
    return net


def host_in_realm(addr: ipaddress.IPv4Address, net: ipaddress.IPv4Network, field: str, mvpn: str) -> None:
    if addr not in net:
        raise bad(field, f"{addr} is outside realm {net} of M-VPN {mvpn}")
    if addr in (net.network_address, net.broadcast_address):
        raise bad(field, f"{addr} is the network or broadcast address of realm {net}")


def str_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(field, "must be a list of strings")
    return value


def obj(value: Any, field: str | None = None) -> dict:
    if not isinstance(value, dict):
        raise bad(field, "request body must be a JSON object")
    return value


def hostname(value: Any, field: str) -> str:
    """A host or operator name: one or more DNS host labels, lower-cased, no trailing dot."""
    value = text(value, field).strip().lower().rstrip(".")
    if not value or len(value) > 253 or not all(_LABEL.match(lab) for lab in value.split(".")):
        raise bad(field, f"{value!r} is not a valid host name (DNS labels of a-z, 0-9, '-')")
    return value
