"""The attach application: NASREQ (RFC 7155) AA-Request / AA-Answer, app id 1.

Why NASREQ: a sink that admits a node onto its network is exactly a Network
Access Server, and NASREQ's AA-Answer already has the two things claim 41 asks
the MSM to return: static routes (Framed-Route) and filters (NAS-Filter-Rule).
What NASREQ lacks -- the bytes the node's authenticator covers, and a node
certificate for claim 56 -- we carry in vendor AVPs of enterprise 32473
(RFC 5612, for documentation/examples) with the M bit clear.

AA-Request (sink -> MSM)::

    Session-Id, Auth-Application-Id=1, Origin-Host/-Realm (the sink),
    Destination-Realm (the node's home realm), [Destination-Host],
    Auth-Request-Type (1 AUTHENTICATE_ONLY, 2 AUTHORIZE_ONLY, 3 AUTHORIZE_AUTHENTICATE),
    User-Name (node identity / FQDN), User-Password (the authenticator, opaque bytes),
    [Framed-IP-Address (node's address, 4 octets)], [NAS-IP-Address], [NAS-Identifier],
    [TB-Authenticated-Data (V 32473 code 1): bytes the authenticator covers],
    [TB-Certificate-Request (V 32473 code 2, Unsigned32 1): also send the certificate]

AA-Answer (MSM -> sink)::

    Session-Id, Auth-Application-Id=1, Auth-Request-Type, Result-Code
    (2001 success, 4001 DIAMETER_AUTHENTICATION_REJECTED), Origin-Host/-Realm,
    User-Name, Auth-Session-State=1 (NO_STATE_MAINTAINED: no STR needed),
    Framed-Route* ("<prefix> <gateway> <metric>"), NAS-Filter-Rule* (IPFilterRule),
    [Reply-Message (why, on rejection)], [TB-Certificate (V 32473 code 3): PEM]

AUTHORIZE_ONLY is the certificate path: the sink has (or fetches here) the
node's certificate and checks the node's signature itself, then needs only the
routes and filters; the backend decides whether to authorize without an
authenticator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import avps as A
from . import constants as C
from .message import MalformedMessage, Message
from .rules import FilterRule, Route, RuleError, parse_filter, parse_route

AAR_MANDATORY = (C.AVP_SESSION_ID, C.AVP_AUTH_APPLICATION_ID, C.AVP_ORIGIN_HOST,
                 C.AVP_ORIGIN_REALM, C.AVP_DESTINATION_REALM, C.AVP_AUTH_REQUEST_TYPE,
                 C.AVP_USER_NAME)


def new_session_id(origin_host: str) -> str:
    """RFC 6733 8.8: <DiameterIdentity>;<high 32 bits>;<low 32 bits>."""
    r = int.from_bytes(os.urandom(8), "big")
    return f"{origin_host};{r >> 32};{r & 0xFFFFFFFF}"


@dataclass
class AARequest:
    """The parts of an AA-Request the MSM's backend needs."""

    session_id: str
    auth_request_type: int
    identity: str
    authenticator: bytes | None
    authenticated_data: bytes | None
    node_address: str | None
    nas_ip_address: str | None
    nas_identifier: str | None
    want_certificate: bool
    origin_host: str
    origin_realm: str
    destination_realm: str
    destination_host: str | None


def build_aar(*, origin_host: str, origin_realm: str, destination_realm: str,
              identity: str, auth_request_type: int, authenticator: bytes | None = None,
              authenticated_data: bytes | None = None, node_address: str | None = None,
              nas_ip_address: str | None = None, nas_identifier: str | None = None,
              want_certificate: bool = False, destination_host: str | None = None,
              session_id: str | None = None) -> tuple[str, list[Any]]:
    """AVPs of an AA-Request of the NASREQ application (RFC 7155 3.1) for a sink asking
    the MSM about a mobile node (claims 41-43): Session-Id, Auth-Application-Id 1, Origin-*,
    Destination-*, Auth-Request-Type, User-Name, and when given User-Password
    (``authenticator``), State (``authenticated_data``), the node's address (Framed-IP-Address,
    4 octets), NAS-IP-Address / NAS-Identifier and the testbed's certificate request AVP.

    Returns ``(session_id, avps)``; the caller frames them with a header (code 265, R bit).
    Raises ValueError for an address that is not IPv4 text."""
    sid = session_id or new_session_id(origin_host)
    out = [A.make(C.AVP_SESSION_ID, sid),
           A.make(C.AVP_AUTH_APPLICATION_ID, C.APP_NASREQ),
           A.make(C.AVP_ORIGIN_HOST, origin_host),
           A.make(C.AVP_ORIGIN_REALM, origin_realm),
           A.make(C.AVP_DESTINATION_REALM, destination_realm)]
    if destination_host:
        out.append(A.make(C.AVP_DESTINATION_HOST, destination_host))
    out += [A.make(C.AVP_AUTH_REQUEST_TYPE, auth_request_type),
            A.make(C.AVP_USER_NAME, identity)]
    if authenticator is not None:
        out.append(A.make(C.AVP_USER_PASSWORD, authenticator))
    if node_address:
        out.append(A.make_ipv4_octets(C.AVP_FRAMED_IP_ADDRESS, node_address))
    if nas_ip_address:
        out.append(A.make_ipv4_octets(C.AVP_NAS_IP_ADDRESS, nas_ip_address))
    if nas_identifier:
        out.append(A.make(C.AVP_NAS_IDENTIFIER, nas_identifier))
    if authenticated_data is not None:
        out.append(A.make(C.AVP_TB_AUTHENTICATED_DATA, authenticated_data, vendor=C.VENDOR_TESTBED))
    if want_certificate:
        out.append(A.make(C.AVP_TB_CERTIFICATE_REQUEST, 1, vendor=C.VENDOR_TESTBED))
    return sid, out


def parse_aar(msg: Message) -> AARequest:
    """Extract an AA-Request; MalformedMessage (5005/5004) when it can't be served."""
    for code in AAR_MANDATORY:
        if msg.find(code) is None:
            raise MalformedMessage(f"missing {A.avp_name(code)}", C.RESULT_MISSING_AVP,
                                   failed_avp=bytes(A.make(code, 0 if code in (
                                       C.AVP_AUTH_APPLICATION_ID, C.AVP_AUTH_REQUEST_TYPE) else b"")))
    try:
        app = msg.integer(C.AVP_AUTH_APPLICATION_ID)
        art = msg.integer(C.AVP_AUTH_REQUEST_TYPE)
        if app != C.APP_NASREQ:
            raise ValueError(f"Auth-Application-Id {app} is not NASREQ")
        if art not in (C.AUTH_REQUEST_AUTHENTICATE_ONLY, C.AUTH_REQUEST_AUTHORIZE_ONLY,
                       C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE):
            raise ValueError(f"Auth-Request-Type {art} unknown")
        pw = msg.find(C.AVP_USER_PASSWORD)
        data = msg.find(C.AVP_TB_AUTHENTICATED_DATA, C.VENDOR_TESTBED)
        framed = msg.find(C.AVP_FRAMED_IP_ADDRESS)
        nas_ip = msg.find(C.AVP_NAS_IP_ADDRESS)
        certreq = msg.integer(C.AVP_TB_CERTIFICATE_REQUEST, C.VENDOR_TESTBED)
        req = AARequest(
            session_id=msg.text(C.AVP_SESSION_ID) or "",
            auth_request_type=int(art),
            identity=msg.text(C.AVP_USER_NAME) or "",
            authenticator=A.as_bytes(pw) if pw is not None else None,
            authenticated_data=A.as_bytes(data) if data is not None else None,
            node_address=A.as_ipv4_octets(framed) if framed is not None else None,
            nas_ip_address=A.as_ipv4_octets(nas_ip) if nas_ip is not None else None,
            nas_identifier=msg.text(C.AVP_NAS_IDENTIFIER),
            want_certificate=bool(certreq),
            origin_host=msg.text(C.AVP_ORIGIN_HOST) or "",
            origin_realm=msg.text(C.AVP_ORIGIN_REALM) or "",
            destination_realm=msg.text(C.AVP_DESTINATION_REALM) or "",
            destination_host=msg.text(C.AVP_DESTINATION_HOST),
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(str(exc), C.RESULT_INVALID_AVP_VALUE) from exc
    if not req.identity:
        raise MalformedMessage("empty User-Name", C.RESULT_INVALID_AVP_VALUE)
    if req.auth_request_type != C.AUTH_REQUEST_AUTHORIZE_ONLY and req.authenticator is None:
        raise MalformedMessage("authentication requested without User-Password",
                               C.RESULT_MISSING_AVP, failed_avp=bytes(A.make(C.AVP_USER_PASSWORD, b"")))
    return req


def build_aaa_avps(req: AARequest, *, routes: list[Route], filters: list[FilterRule],
                   reply_message: str | None, certificate_pem: str | None) -> list[Any]:
    """AVPs of a successful AA-Answer (RFC 7155 3.2) besides Session-Id/Origin-*/Result-Code,
    which the server's answer path adds: Framed-Route per ``routes`` (claim 43: home range and
    default), NAS-Filter-Rule per ``filters``, optional Reply-Message and certificate. Never raises."""
    out = [A.make(C.AVP_AUTH_APPLICATION_ID, C.APP_NASREQ),
           A.make(C.AVP_AUTH_REQUEST_TYPE, req.auth_request_type),
           A.make(C.AVP_USER_NAME, req.identity),
           A.make(C.AVP_AUTH_SESSION_STATE, C.NO_STATE_MAINTAINED)]
    out += [A.make(C.AVP_FRAMED_ROUTE, r.to_avp_text()) for r in routes]
    out += [A.make(C.AVP_NAS_FILTER_RULE, f.to_avp_text()) for f in filters]
    if reply_message:
        out.append(A.make(C.AVP_REPLY_MESSAGE, reply_message))
    if certificate_pem:
        out.append(A.make(C.AVP_TB_CERTIFICATE, certificate_pem, vendor=C.VENDOR_TESTBED))
    return out


@dataclass
class AAAnswer:
    """What the sink learns from an AA-Answer."""

    ok: bool
    result_code: int | None
    routes: list[Route] = field(default_factory=list)
    filters: list[FilterRule] = field(default_factory=list)
    certificate_pem: str | None = None
    reason: str | None = None
    session_id: str | None = None
    latency_s: float = 0.0
    invalid_rules: list[str] = field(default_factory=list)

    def home_and_default(self) -> tuple[Route | None, Route | None]:
        """(home-range route, default route) as claim 43 describes them."""
        default = next((r for r in self.routes if r.is_default), None)
        home = min((r for r in self.routes if not r.is_default), key=lambda r: r.metric,
                   default=None)
        return home, default


def _lenient_text(msg: Message, code: int) -> str | None:
    """Informational text from the server: never fail an answer over its encoding."""
    a = msg.find(code)
    return None if a is None else A.as_bytes(a).decode("utf-8", "replace")


def parse_aaa(msg: Message, latency_s: float) -> AAAnswer:
    """What a sink takes from an AA-Answer ``msg`` (already strictly decoded) that arrived
    ``latency_s`` seconds after its request: success only for Result-Code 2001 with every
    Framed-Route / NAS-Filter-Rule readable (a partly readable rule set is refused, reason
    names the rules). Experimental-Result answers are failures with the vendor/code in
    ``reason``. Raises ValueError when Result-Code itself is malformed."""
    rc = msg.result_code
    ans = AAAnswer(ok=rc == C.RESULT_SUCCESS, result_code=rc, latency_s=latency_s,
                   session_id=_lenient_text(msg, C.AVP_SESSION_ID))
    for a in msg.find_all(C.AVP_FRAMED_ROUTE):
        text = A.as_bytes(a).decode("utf-8", "replace")
        try:
            ans.routes.append(parse_route(text))
        except RuleError:
            ans.invalid_rules.append(text)
    for a in msg.find_all(C.AVP_NAS_FILTER_RULE):
        text = A.as_bytes(a).decode("utf-8", "replace")
        try:
            ans.filters.append(parse_filter(text))
        except RuleError:
            ans.invalid_rules.append(text)
    cert = msg.find(C.AVP_TB_CERTIFICATE, C.VENDOR_TESTBED)
    if cert is not None:
        ans.certificate_pem = A.as_bytes(cert).decode("ascii", "replace")
    ans.reason = _lenient_text(msg, C.AVP_REPLY_MESSAGE) or _lenient_text(msg, C.AVP_ERROR_MESSAGE)
    if rc is None:
        exp = msg.experimental_result
        ans.reason = (f"Experimental-Result vendor {exp[0]} code {exp[1]}" if exp
                      else "answer without Result-Code") + (f": {ans.reason}" if ans.reason else "")
    if ans.ok and ans.invalid_rules:
        # Installing part of a workgroup's filters could open what should be
        # closed: an answer with rules we can't read is not a success.
        ans.ok = False
        ans.reason = f"unparsable rules in answer: {ans.invalid_rules}"
    return ans
