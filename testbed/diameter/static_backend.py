"""A backend with a fixed user table, for the standalone server and for tests.

The MSM replaces it with its own store. The authenticator scheme here is the
one the standalone server checks: ``HMAC-SHA256(secret, data)`` where ``data``
is the TB-Authenticated-Data the sink forwarded (the hello bytes the node
signed) or, if the sink sent none, the node's identity in UTF-8. Comparison is
constant-time so a forger learns nothing from answer timing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import Any

from .server import AuthResult

log = logging.getLogger("testbed.diameter")


def compute_authenticator(secret: bytes | str, data: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).digest()


@dataclass
class StaticUser:
    secret: str | None = None
    routes: list[str] | None = None  # None: the table's defaults
    filters: list[str] | None = None
    certificate_pem: str | None = None
    allow_authorize_only: bool = True


@dataclass
class StaticBackend:
    #: Answers from memory (a dict and one HMAC): the server may call it on its loop.
    blocking = False
    users: dict[str, StaticUser] = field(default_factory=dict)
    default_routes: list[str] = field(default_factory=list)
    default_filters: list[str] = field(default_factory=list)

    def _grant(self, user: StaticUser) -> AuthResult:
        routes = self.default_routes if user.routes is None else user.routes
        filters = self.default_filters if user.filters is None else user.filters
        return AuthResult(True, list(routes), list(filters))

    def authenticate(self, identity: str, authenticator: bytes | None,
                     context: dict[str, Any]) -> AuthResult:
        user = self.users.get(identity)
        if user is None:
            return AuthResult(False, reason="unknown user")
        if context.get("mode") == "authorize_only":
            if not user.allow_authorize_only:
                return AuthResult(False, reason="authorize-only not allowed for this user")
            return self._grant(user)
        if not user.secret:
            return AuthResult(False, reason="user has no shared secret")
        data = context.get("authenticated_data") or identity.encode()
        expected = compute_authenticator(user.secret, data)
        if authenticator is None or not hmac.compare_digest(expected, authenticator):
            return AuthResult(False, reason="bad authenticator")
        return self._grant(user)

    def lookup_certificate(self, identity: str) -> str | None:
        user = self.users.get(identity)
        return user.certificate_pem if user else None
