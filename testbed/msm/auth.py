"""Who is calling the portal, and may they call this route (issue 9, claim 1: limited access).

Identity comes only from the TLS layer: the serial number of the client certificate that the
TLS handshake verified against the MSM CA, looked up in the store's certificate records
(kind, identity, revoked). Nothing in a request body can name the caller.

Roles are the certificate kinds: `operator`, `mn` (identity = user FQDN), `sg` (identity =
M-VPN name), `msr` (identity = MSR name) and `anonymous` (no certificate). A route names the
roles it admits and, for non-operators, which path argument must equal the caller's own
identity ("reads only its own view"). Refusals are ApiErrors with a counted reason:
401 no_cert / unknown_cert / revoked, 403 role / not_self.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import ApiError, refused
from .store import Store

ANONYMOUS = "anonymous"
ROLES = ("operator", "mn", "sg", "msr", ANONYMOUS)
#: every role may call a route that admits anonymous callers
EVERYONE = frozenset(ROLES)


@dataclass(frozen=True)
class Caller:
    """The proven identity of one request. `problem` is set when a certificate was presented
    but cannot be used (unknown to the store, test-only, or revoked): the caller then counts as
    anonymous, and a route that needs a role refuses with that problem instead of no_cert."""

    role: str = ANONYMOUS
    identity: str | None = None
    serial: str | None = None
    problem: ApiError | None = None
    tls: bool = False  # the request came over TLS (False only on the test-only plain-HTTP port)

    def label(self) -> str:
        """For logs: `mn:a.mwg.test (serial 1f..)` or `anonymous`."""
        if self.role == ANONYMOUS:
            if self.problem is None:
                return ANONYMOUS
            return f"anonymous ({self.problem.reason} certificate {self.serial} of {self.identity or '?'})"
        return f"{self.role}:{self.identity} (serial {self.serial})"


def identify(store: Store, peer_cert: dict | None) -> Caller:
    """The caller of a TLS connection, from its verified client certificate
    (`ssl.SSLSocket.getpeercert()` dict; None or {} when it showed none)."""
    return replace(_identify(store, peer_cert), tls=True)


def _identify(store: Store, peer_cert: dict | None) -> Caller:
    if not peer_cert or "serialNumber" not in peer_cert:
        return Caller()
    serial_text = str(peer_cert["serialNumber"])
    try:
        serial = int(serial_text, 16)
    except ValueError:
        return Caller(problem=refused(401, "unknown_cert", "client certificate serial is not hex"))
    rec = store.cert(serial)
    hexs = format(serial, "x")
    if rec is None or rec["test"] or rec["kind"] not in ROLES:
        return Caller(serial=hexs, problem=refused(
            401, "unknown_cert", f"client certificate {hexs} was not issued to a portal identity"))
    if rec["revoked_at"] is not None:
        return Caller(identity=f"{rec['kind']}:{rec['identity']}", serial=hexs,
                      problem=refused(401, "revoked", f"client certificate {hexs} is revoked"))
    return Caller(rec["kind"], rec["identity"] or rec["cn"], hexs)


def require_tls(caller: Caller) -> None:
    """403 no_tls: enrolment tokens and their MACs travel only over TLS (the plain-HTTP port is a
    test-only copy of the portal)."""
    if not caller.tls:
        raise refused(403, "no_tls", "enrolment only over HTTPS (this is the test-only plain-HTTP port)")


def authorize(caller: Caller, roles: frozenset[str], own: str | None) -> None:
    """Raise unless `caller` may call a route admitting `roles`; `own` is the path argument that a
    non-operator caller must own (its own FQDN or M-VPN name), None when the route has none.

    401 when the route needs a role and the caller has none (no_cert, or the certificate's
    problem: unknown_cert / revoked); 403 role when its role is not admitted; 403 not_self when
    it asks for somebody else's view.
    """
    if ANONYMOUS in roles:
        return
    if caller.role == ANONYMOUS:
        if caller.problem is not None:
            raise caller.problem
        raise refused(401, "no_cert", "this route needs a client certificate issued by the MSM CA")
    if caller.role not in roles:
        raise refused(403, "role", f"role {caller.role} may not call this route (allowed: {', '.join(sorted(roles))})")
    if own is not None and caller.role != "operator" and own != caller.identity:
        raise refused(403, "not_self", f"{caller.role} {caller.identity} may only use its own view, not {own!r}")
