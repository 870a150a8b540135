"""The MSM portal: HTTPS JSON API plus a small HTML page (stdlib http.server + ssl only).

API contract (SG, MN, MSR agents are coded against it; /work/coord/issue9-contract.md):
  role operator (everything admin):
  POST /api/mvpns {name, realm, sg_public}            GET /api/mvpns[/{name}]
  POST /api/users {fqdn, mvpn, private_address}       GET /api/users[/{fqdn}]
  POST /api/workgroups {name}                         GET /api/workgroups[/{name}]
  POST /api/workgroups/{name}/members {fqdn}          DELETE /api/workgroups/{name}/members/{fqdn}
  DELETE /api/users/{fqdn}, /api/mvpns/{name}, /api/workgroups/{name}   (revokes certificates)
  POST /api/tokens {identity, kind, ttl_s}  -> {token, id, identity, kind, expires}
  GET  /api/tokens, GET /api/certs, DELETE /api/certs/{serial}, GET /api/status, GET /
  POST /api/testcerts {csr_pem, identity, kind, validity, sg_public_override}  (allow_test_certs)
  role mn (itself only):  POST /api/signon {workgroup[, fqdn]}, GET /api/users/{own fqdn}
  role sg (itself only):  GET /api/sg/{own mvpn}/filter
  role msr:               GET /api/nodecerts/{fqdn} -> {fqdn, cert_pem}   (claims 55-56)
  mn, sg, msr, operator:  GET /api/changes?since=V&timeout=S -> {version, changed}  (long-poll)
  anyone:                 GET /api/ca[?token_id=ID], GET /api/crl, POST /api/enroll {token, csr_pem}
Errors: 4xx with {"error": "<field>: <why>", "field": "<field>"[, "reason": "<reason>"]}; 401/403
refusals carry a reason and are counted in status auth.refused.<reason> (see auth.py).

Why long-poll for updates ("push or poll"): it needs no state at the MSM about who
listens, passes the NAPT of claim 22 (the client opens the connection), and still
delivers a change within one round trip of it happening.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from . import validate as v
from .auth import EVERYONE, Caller, authorize, identify, require_tls
from .ca import CertificateAuthority
from .enrolment import Enrolment
from .errors import ApiError, bad, not_found, refused
from .page import render
from .store import Store

log = logging.getLogger("msm.portal")

MAX_BODY = 64 * 1024
CRL_NEXT_UPDATE_S = 3600  # the CRL's nextUpdate, from its making
MAX_DRAIN = 1024 * 1024  # an oversized body up to this is read and dropped before the 413
OPERATOR = frozenset({"operator"})
FOLLOWERS = frozenset({"operator", "mn", "sg", "msr"})


class Pem(str):
    """A PEM text answer (sent as application/x-pem-file, not HTML)."""


@dataclass(frozen=True)
class Route:
    """One route: `roles` admitted; `own` = index of the path argument a non-operator caller
    must own (its FQDN / M-VPN name), None if none."""

    method: str
    pattern: re.Pattern
    fn: Callable[..., tuple[int, Any]]
    roles: frozenset
    own: int | None = None


class Portal:
    """The API's logic, independent of the HTTP plumbing (one method per route).

    `authz=False` is the test-only `insecure_no_authz` mode: every route open to everyone and
    a sign-on's `fqdn` taken from the body, as before issue 9 (for the test showing that the
    intruder checks fail without authorisation).
    """

    def __init__(self, store: Store, ca: CertificateAuthority, zone: str, longpoll_max: float = 60.0,
                 authz: bool = True, allow_test_certs: bool = False) -> None:
        self.store = store
        self.ca = ca
        self.zone = zone
        self.longpoll_max = longpoll_max
        self.authz = authz
        self.enrolment = Enrolment(store, ca, zone, allow_test_certs)
        self.counters: Counter = Counter()
        self.refusals: Counter = Counter()
        self.lock = threading.Lock()
        self.waiting = 0
        self.status_extra: Callable[[], dict] = dict
        self._crl: tuple[int, float, str] | None = None  # (version, built at monotonic s, PEM)
        S = r"([^/]+)"
        R = re.compile
        e = self.enrolment
        st = self.store
        self.routes: list[Route] = [
            Route("GET", R(r"^/$"), self.page, OPERATOR),
            Route("GET", R(r"^/api/mvpns$"), lambda c, q, b: (200, st.mvpns()), OPERATOR),
            Route("POST", R(r"^/api/mvpns$"), lambda c, q, b: (201, st.add_mvpn(v.obj(b))), OPERATOR),
            Route("GET", R(rf"^/api/mvpns/{S}$"), lambda c, q, b, n: (200, st.mvpn(n)), OPERATOR),
            Route("DELETE", R(rf"^/api/mvpns/{S}$"), lambda c, q, b, n: (200, {"version": st.delete_mvpn(n)}),
                  OPERATOR),
            Route("GET", R(r"^/api/users$"), lambda c, q, b: (200, st.users()), OPERATOR),
            Route("POST", R(r"^/api/users$"), lambda c, q, b: (201, st.add_user(v.obj(b))), OPERATOR),
            Route("GET", R(rf"^/api/users/{S}$"), lambda c, q, b, f: (200, st.user(v.fqdn(f))),
                  frozenset({"operator", "mn"}), own=0),
            Route("DELETE", R(rf"^/api/users/{S}$"), lambda c, q, b, f: (200, {"version": st.delete_user(f)}),
                  OPERATOR),
            Route("GET", R(r"^/api/workgroups$"), lambda c, q, b: (200, st.workgroups()), OPERATOR),
            Route("POST", R(r"^/api/workgroups$"), lambda c, q, b: (201, st.add_workgroup(v.obj(b))), OPERATOR),
            Route("GET", R(rf"^/api/workgroups/{S}$"), lambda c, q, b, n: (200, st.workgroup(n)), OPERATOR),
            Route("DELETE", R(rf"^/api/workgroups/{S}$"),
                  lambda c, q, b, n: (200, {"version": st.delete_workgroup(n)}), OPERATOR),
            Route("POST", R(rf"^/api/workgroups/{S}/members$"),
                  lambda c, q, b, n: (201, st.add_member(n, v.obj(b))), OPERATOR),
            Route("DELETE", R(rf"^/api/workgroups/{S}/members/{S}$"),
                  lambda c, q, b, n, f: (200, st.remove_member(n, f)), OPERATOR),
            Route("POST", R(r"^/api/signon$"), self.signon, frozenset({"mn"})),
            Route("GET", R(rf"^/api/sg/{S}/filter$"), lambda c, q, b, m: (200, st.filter_rows(m)),
                  frozenset({"operator", "sg"}), own=0),
            Route("GET", R(r"^/api/changes$"), self.changes, FOLLOWERS),
            Route("GET", R(rf"^/api/nodecerts/{S}$"), self.nodecert, frozenset({"operator", "msr"})),
            Route("GET", R(r"^/api/ca$"), self.ca_route, EVERYONE),
            Route("GET", R(r"^/api/crl$"), lambda c, q, b: (200, Pem(self.crl_pem())), EVERYONE),
            Route("POST", R(r"^/api/enroll$"), self.enroll, EVERYONE),
            Route("POST", R(r"^/api/tokens$"), lambda c, q, b: (201, e.create_token(b)), OPERATOR),
            Route("GET", R(r"^/api/tokens$"), lambda c, q, b: (200, st.tokens()), OPERATOR),
            Route("GET", R(r"^/api/certs$"), lambda c, q, b: (200, st.certs()), OPERATOR),
            Route("DELETE", R(rf"^/api/certs/{S}$"),
                  lambda c, q, b, s: (200, {"version": st.revoke_cert(s.lower())}), OPERATOR),
            Route("GET", R(r"^/api/status$"), lambda c, q, b: (200, self.status()), OPERATOR),
        ]
        if allow_test_certs:
            self.routes.append(Route("POST", R(r"^/api/testcerts$"), lambda c, q, b: (201, e.test_cert(b)),
                                     OPERATOR))

    # ------------------------------------------------------------------ routes
    def page(self, caller: Caller, query: dict, body: Any) -> tuple[int, Any]:
        return 200, render(self.store, self.zone)

    def signon(self, caller: Caller, query: dict, body: Any) -> tuple[int, Any]:
        """Claims 5/13, as the caller itself: a body `fqdn` other than the certificate's is 403
        not_self; a non-member gets 403 not_member (from the store)."""
        body = v.obj(body)
        if self.authz:
            claimed = body.get("fqdn")
            if claimed is not None and v.fqdn(claimed) != caller.identity:
                raise refused(403, "not_self", f"certificate of {caller.identity} cannot sign on as {claimed!r}",
                              "fqdn")
            body = {**body, "fqdn": caller.identity}
        elif "fqdn" not in body and caller.identity:
            body = {**body, "fqdn": caller.identity}
        return 200, self.store.signon(body)

    def nodecert(self, caller: Caller, query: dict, body: Any, fqdn: str) -> tuple[int, Any]:
        """Claims 55-56: the published certificate of node `fqdn` (a sink checks a hello with it)."""
        fqdn = v.hostname(fqdn, "fqdn")
        pem = self.store.node_cert(fqdn)
        if pem is None:
            raise not_found("fqdn", f"no certificate published for {fqdn!r}")
        return 200, {"fqdn": fqdn, "cert_pem": pem}

    def ca_route(self, caller: Caller, query: dict, body: Any) -> tuple[int, Any]:
        """Without token_id: the CA certificate (PEM). With it: {ca_pem, token_id, mac} (first contact)."""
        if "token_id" in query:
            if self.authz:
                require_tls(caller)
            return 200, self.enrolment.ca_for_token(query["token_id"][-1])
        return 200, Pem(self.ca.cert_pem)

    def enroll(self, caller: Caller, query: dict, body: Any) -> tuple[int, Any]:
        """A token and a CSR for a certificate (see Enrolment.enroll); over TLS only."""
        if self.authz:
            require_tls(caller)
        return 201, self.enrolment.enroll(body)

    def crl_pem(self) -> str:
        """The CA's CRL (PEM); rebuilt when the version changed or when half of its validity
        (CRL_NEXT_UPDATE_S) has passed, so a reader never gets a stale one. cRLNumber =
        (store version << 32) + unix seconds: it grows with every rebuild and every change,
        across restarts too (RFC 5280 section 5.2.3)."""
        version = self.store.version
        now = time.monotonic()
        with self.lock:
            if self._crl is not None and self._crl[0] == version and now - self._crl[1] < CRL_NEXT_UPDATE_S / 2:
                return self._crl[2]
        revoked = [(serial, dt.datetime.fromtimestamp(at, dt.timezone.utc)) for serial, at in self.store.revoked()]
        pem = self.ca.crl(revoked, (version << 32) + int(time.time()), next_update_s=CRL_NEXT_UPDATE_S)
        with self.lock:
            self._crl = (version, now, pem)
        return pem

    def changes(self, caller: Caller, query: dict, body: Any) -> tuple[int, Any]:
        """Long-poll: answer as soon as the version exceeds `since`, or after `timeout` s."""
        since = _query_number(query, "since", int, default=None)
        timeout = _query_number(query, "timeout", float, default=30.0)
        if since is not None and since < 0:
            raise bad("since", "must be >= 0")
        if timeout < 0:
            raise bad("timeout", "must be >= 0")
        if since is None:
            return 200, {"version": self.store.version, "changed": True}
        with self.lock:
            self.waiting += 1
        try:
            version = self.store.wait_for_change(since, min(timeout, self.longpoll_max))
        finally:
            with self.lock:
                self.waiting -= 1
        return 200, {"version": version, "changed": version > since}

    def status(self) -> dict:
        with self.lock:
            http = dict(self.counters)
            http["longpoll_waiting"] = self.waiting
        return {"version": self.store.version, "store": self.store.counts(), "http": http,
                "auth": self.auth_status(), **self.status_extra()}

    def auth_status(self) -> dict:
        """{mode, refused: {reason: count}, tls_failed}: the `auth` section of the status."""
        with self.lock:
            return {"mode": "mtls" if self.authz else "insecure_no_authz", "refused": dict(self.refusals),
                    "tls_failed": self.counters.get("tls_failed", 0)}

    # ---------------------------------------------------------------- dispatch
    def dispatch(self, method: str, raw_path: str, body: Any, caller: Caller = Caller()) -> tuple[int, Any]:
        """Route, authorise (unless authz is off), run. Raises ApiError (refusals counted).
        `body` may be a callable reading it: called only after the caller was authorised, so an
        unknown caller cannot make the MSM read and parse a body."""
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path.rstrip("/") or "/"
        allowed = False
        try:
            for route in self.routes:
                match = route.pattern.match(path)
                if not match:
                    continue
                if route.method != method:
                    allowed = True
                    continue
                args = [unquote(g) for g in match.groups()]
                if self.authz:
                    own = None if route.own is None else _own_name(caller.role, args[route.own])
                    authorize(caller, route.roles, own)
                if callable(body):  # the body is read only once the caller is admitted
                    body = body()
                return route.fn(caller, query, body, *args)
            if allowed:
                raise ApiError(405, None, f"method {method} not allowed on {path}")
            raise not_found(None, f"no such resource {path}")
        except ApiError as exc:
            if exc.reason:
                self.refused(exc, caller, method, path)
            raise

    def refused(self, exc: ApiError, caller: Caller, method: str, path: str) -> None:
        """Count a refusal by reason and log it with the caller's identity."""
        with self.lock:
            self.refusals[exc.reason] += 1
        log.warning("refused %s %s from %s: %d %s (%s)", method, path, caller.label(), exc.status, exc.reason,
                    exc.message)

    def count(self, status: int) -> None:
        with self.lock:
            self.counters["requests"] += 1
            self.counters[f"status_{status // 100}xx"] += 1

    def client_gone(self, address: Any, why: Any) -> None:
        """A client that went away (or stalled) mid-request: dropped quietly, counted."""
        with self.lock:
            self.counters["client_gone"] += 1
        log.debug("client %s went away: %s", address, why)

    def connection_refused(self, address: Any, active: int) -> None:
        """A connection over the cap (PortalServer.max_connections): closed at once, counted."""
        with self.lock:
            self.counters["conn_refused"] += 1
        log.info("refused connection from %s: %d connections open (the cap)", address, active)

    def tls_failed(self, address: Any, exc: Exception) -> None:
        with self.lock:
            self.counters["tls_failed"] += 1
        log.info("TLS handshake with %s failed: %s", address, exc)


def _own_name(role: str, arg: str) -> str:
    """A path argument in the form the caller's identity has (user FQDNs are lower-case)."""
    return arg.strip().lower().rstrip(".") if role == "mn" else arg


def _query_number(query: dict, field: str, kind: type, default: Any) -> Any:
    if field not in query:
        return default
    text = query[field][-1]
    try:
        value = kind(text)
    except ValueError:
        raise bad(field, f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise bad(field, f"{text!r} is not a finite number")
    return value


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing: read JSON, call Portal.dispatch, write JSON/HTML/PEM."""

    server_version = "testbed-msm/1"
    protocol_version = "HTTP/1.1"
    timeout = 120  # s: an idle keep-alive connection (or a stalled client) frees its thread
    portal: Portal  # set on the subclass made by make_server
    unread_body = False  # set when we answer without reading a body of unknown/oversized length
    body_read = False

    def log_message(self, fmt: str, *args: Any) -> None:  # http.server logs to stderr by default
        log.debug("%s %s", self.address_string(), fmt % args)

    def handle_one_request(self) -> None:
        """As BaseHTTPRequestHandler's, plus: the request head must arrive within the server's
        head_timeout (not the 120 s of a request being served), and a client that closes
        mid-head is dropped quietly (counted http.client_gone) instead of being answered."""
        head_timeout = getattr(self.server, "head_timeout", None)
        try:
            if head_timeout is not None:
                self.connection.settimeout(head_timeout)
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.raw_requestline.endswith(b"\n"):
                self._gone("request line incomplete at end of stream")
                return
            self._head_reader = _LastLine(self.rfile)
            real, self.rfile = self.rfile, self._head_reader
            try:
                parsed = self.parse_request()
            finally:
                self.rfile = real
            if not parsed:
                return
            if self._head_reader.last == b"":  # the headers ended by EOF, not by a blank line
                self._gone("request head incomplete at end of stream")
                return
            self.connection.settimeout(self.timeout)
            mname = "do_" + self.command
            if not hasattr(self, mname):
                self.send_error(501, "Unsupported method (%r)" % self.command)
                return
            getattr(self, mname)()
            self.wfile.flush()
        except TimeoutError as exc:
            self._gone(f"timed out ({exc})")

    def _gone(self, why: str) -> None:
        self.close_connection = True
        self.portal.client_gone(self.client_address, why)

    def _handle(self, method: str, head: bool = False) -> None:
        started = time.monotonic()
        caller = Caller()
        self.body_read = False  # per request (a keep-alive connection carries several)
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                caller = identify(self.portal.store, getattr(self.connection, "msm_peer_cert", None))
            body = self._read_body if method in ("POST", "PUT") else None
            status, payload = self.portal.dispatch(method, self.path, body, caller)
        except ApiError as exc:
            status, payload = exc.status, exc.to_json()
            log.debug("%s %s from %s -> %d %s", method, self.path, caller.label(), status, payload["error"])
        except Exception:  # a bug, not bad input: answer 500 and keep serving
            log.exception("%s %s failed", method, self.path)
            status, payload = 500, {"error": "internal error"}
        if method in ("POST", "PUT") and not self.body_read and not self.close_connection:
            # answered (refused) without reading the body: it must not be parsed as the next request
            self.close_connection = True
            self.unread_body = True
        self.portal.count(status)
        if isinstance(payload, Pem):
            data, ctype = payload.encode(), "application/x-pem-file"
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/html; charset=utf-8"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(data)
        except OSError as exc:  # BrokenPipe, ConnectionReset, ssl.SSLEOFError, timeouts
            self.close_connection = True
            self.portal.client_gone(self.client_address, f"before the answer to {method} {self.path}: {exc!r}")
        log.debug("%s %s from %s -> %d in %.1f ms", method, self.path, caller.label(), status,
                  (time.monotonic() - started) * 1e3)

    def _read_body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True  # the unread body would be parsed as the next request
            raise ApiError(411, None, "Content-Length required")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            self.unread_body = True
            raise bad(None, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self.unread_body = True
            raise ApiError(413, None, f"body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        self.body_read = True
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except RecursionError:  # "[[[[...": deeper than the parser's stack
            raise bad("body", "not valid JSON (nested too deeply)") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad("body", f"not valid JSON ({exc})") from None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("GET", head=True)

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class _LastLine:
    """A reader that remembers its last line (to tell headers ended by EOF from a blank line)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.last: bytes | None = None

    def readline(self, *args: Any) -> bytes:
        self.last = self.f.readline(*args)
        return self.last

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


class PortalServer(ThreadingHTTPServer):
    """Threaded HTTP(S) server. With `tls`, the TLS handshake runs in the request's own thread
    (not in accept), so a slow or hostile client cannot stall the listener."""

    daemon_threads = True  # long-poll handlers must not hold up shutdown
    allow_reuse_address = True
    request_queue_size = 512  # 200+ long-pollers reconnecting at once must not overflow the backlog
    handshake_timeout = 10.0
    head_timeout = 10.0  # s for a request head (line + headers), and an idle keep-alive connection
    max_connections = 256  # open connections (= handler threads); more are closed at once
    tls: ssl.SSLContext | None = None
    portal: Portal

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._active = 0
        self._active_lock = threading.Lock()

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        """One thread per connection, at most max_connections of them: a flood of connections
        that send nothing (or half a request) cannot exhaust the MSM's threads."""
        with self._active_lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
            active = self._active
        if full:
            self.portal.connection_refused(client_address, active)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._active_lock:
            self._active -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (any OSError, ssl ones included) is no error of ours."""
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            self.portal.client_gone(client_address, repr(exc))
            return
        log.exception("connection from %s failed", client_address)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(self.handshake_timeout)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
            conn.msm_peer_cert = conn.getpeercert()  # now: after an EOF the handshake state is gone
        except (ssl.SSLError, OSError, ValueError) as exc:
            self.portal.tls_failed(client_address, exc)
            return
        try:
            handler = self.RequestHandlerClass(conn, client_address, self)
            if getattr(handler, "unread_body", False):
                _drain(conn)
        finally:
            try:
                conn.close()
            except OSError:
                pass


def _drain(conn: socket.socket, limit: int = MAX_DRAIN, wait_s: float = 0.2) -> None:
    """Read and drop what the client is still sending (at most `limit` bytes, `wait_s` per read):
    closing a TLS socket with unread data makes the kernel send a reset that can overtake
    the error answer we just sent."""
    conn.settimeout(wait_s)
    try:
        while limit > 0:
            data = conn.recv(min(limit, 65536))
            if not data:
                return
            limit -= len(data)
    except (OSError, ssl.SSLError):
        return


def server_context(cert_file: str, key_file: str, ca_file: str) -> ssl.SSLContext:
    """TLS 1.2+ server context: our certificate, client certificates requested (optional:
    anonymous routes exist) and, when sent, verified against the MSM CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cafile=ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def make_server(portal: Portal, address: str, port: int, tls: ssl.SSLContext | None = None,
                max_connections: int | None = None, head_timeout: float | None = None) -> PortalServer:
    """A portal server on (address, port); HTTPS with `tls`, plain HTTP without (test/bench only)."""
    handler = type("PortalHandler", (_Handler,), {"portal": portal})
    server = PortalServer((address, port), handler)
    if max_connections is not None:
        server.max_connections = max_connections
    if head_timeout is not None:
        server.head_timeout = head_timeout
    server.tls = tls
    server.portal = portal
    return server
