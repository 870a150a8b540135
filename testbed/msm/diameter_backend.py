"""The MSM's DIAMETER backend: attach decisions from the store (claims 41-45, 56).

Why the MSM decides: it is the one place that knows who belongs to which M-VPN and
workgroup, so a sink anywhere in the subnetwork (even across IPsec-joined sites, claim
42) gets the same answer. What a member receives:

- routes (claim 43): the M-VPN's default route via its gateway (the SG towards the
  Internet / other M-VPNs, claim 45) at `default_metric`, and the home range at the lower
  `home_metric`, so the node uses the default route only outside its home range;
- filters (claim 41): the node may talk to its home range both ways, and to the private
  address of every workgroup peer in another M-VPN (that traffic leaves via the SG);
- its certificate (claim 56) when the sink asks for it.

Shared secrets live in the MSM config (`diameter.secrets`), keyed by user FQDN; the
authenticator is HMAC-SHA256(secret, TB-Authenticated-Data) as the node computed it over
its hello. A user unknown here is a visitor: the sink decides what that means (claim 46).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Any

from testbed.diameter import AuthResult
from testbed.diameter.static_backend import compute_authenticator

from .store import Store

log = logging.getLogger("msm.diameter")

REASON_UNKNOWN = "unknown user"


class StoreBackend:
    def __init__(self, store: Store, secrets: dict[str, str], gateways: dict[str, str], *,
                 default_metric: int = 10, home_metric: int = 1,
                 allow_authorize_only: bool = True) -> None:
        self.store = store
        self.secrets = {k.lower().rstrip("."): v for k, v in secrets.items()}
        self.gateways = gateways
        self.default_metric = default_metric
        self.home_metric = home_metric
        self.allow_authorize_only = allow_authorize_only

    def gateway_of(self, mvpn: dict) -> str:
        """Configured gateway of the M-VPN, else the first host of its realm."""
        gw = self.gateways.get(mvpn["name"])
        if gw:
            return gw
        return str(next(ipaddress.ip_network(mvpn["realm"], strict=False).hosts()))

    def policy(self, user: dict) -> tuple[list[str], list[str]]:
        mvpn = self.store.mvpn(user["mvpn"])
        realm = str(ipaddress.ip_network(mvpn["realm"], strict=False))
        routes = [f"0.0.0.0/0 {self.gateway_of(mvpn)} {self.default_metric}",
                  f"{realm} 0.0.0.0 {self.home_metric}"]
        filters = [f"permit in ip from assigned to {realm}",
                   f"permit out ip from {realm} to assigned"]
        peers: set[str] = set()
        for wg in self.store.workgroup_names():
            members = self.store.members(wg)
            if not any(m["fqdn"] == user["fqdn"] for m in members):
                continue
            for m in members:
                if m["mvpn"] != user["mvpn"]:
                    peers.add(m["private_address"])
        for addr in sorted(peers, key=lambda a: ipaddress.ip_address(a)):
            filters.append(f"permit in ip from assigned to {addr}")
            filters.append(f"permit out ip from {addr} to assigned")
        return routes, filters

    def authenticate(self, identity: str, authenticator: bytes | None,
                     context: dict[str, Any]) -> AuthResult:
        fqdn = identity.lower().rstrip(".")
        user = self.store.find_user(fqdn)
        if user is None:
            return AuthResult(False, reason=REASON_UNKNOWN)
        node_address = context.get("node_address")
        if node_address and node_address != user["private_address"]:
            return AuthResult(False, reason=f"address {node_address} is not {fqdn}'s home address")
        if context.get("mode") == "authorize_only":
            # certificate path: the sink verified the node's signature itself (claim 52)
            if not self.allow_authorize_only:
                return AuthResult(False, reason="authorize-only not allowed")
            routes, filters = self.policy(user)
            return AuthResult(True, routes, filters)
        secret = self.secrets.get(fqdn)
        if not secret:
            return AuthResult(False, reason="user has no shared secret")
        data = context.get("authenticated_data") or fqdn.encode()
        if authenticator is None or not hmac.compare_digest(
                compute_authenticator(secret, data), authenticator):
            return AuthResult(False, reason="bad authenticator")
        routes, filters = self.policy(user)
        return AuthResult(True, routes, filters)

    def lookup_certificate(self, identity: str) -> str | None:
        return self.store.node_cert(identity.lower().rstrip("."))
