"""The MSM portal: HTTP JSON API plus a small HTML page (stdlib http.server only).

API contract (SG and MN agents are coded against it; keep it stable):
  POST /api/mvpns {name, realm, sg_public}            GET /api/mvpns[/{name}]
  POST /api/users {fqdn, mvpn, private_address}       GET /api/users[/{fqdn}]
  POST /api/workgroups {name}                         GET /api/workgroups[/{name}]
  POST /api/workgroups/{name}/members {fqdn}          DELETE /api/workgroups/{name}/members/{fqdn}
  DELETE /api/users/{fqdn}, /api/mvpns/{name}, /api/workgroups/{name}
  POST /api/signon {fqdn, workgroup}  -> {version, workgroup, self, members: other members}
  GET  /api/sg/{mvpn}/filter          -> {mvpn, version, rows: [...]}
  GET  /api/changes?since=V&timeout=S -> {version, changed}   (long-poll)
  GET  /api/ca                        -> CA certificate (PEM text)
  POST /api/certs {cn, kind, san_ips, san_dns[, validity, days, key_type, sg_public_override]}
  GET  /api/status                    -> the agent's counters
Errors: 4xx with {"error": "<field>: <why>", "field": "<field>"}.

Why long-poll for updates ("push or poll"): it needs no state at the MSM about who
listens, passes the NAPT of claim 22 (the client opens the connection), and still
delivers a change within one round trip of it happening.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from . import validate as v
from .ca import CertificateAuthority
from .errors import ApiError, bad, not_found
from .page import render
from .store import Store

log = logging.getLogger("msm.portal")

MAX_BODY = 64 * 1024


class Pem(str):
    """A PEM text answer (sent as application/x-pem-file, not HTML)."""


class Portal:
    """The API's logic, independent of the HTTP plumbing (one method per route)."""

    def __init__(self, store: Store, ca: CertificateAuthority, zone: str, longpoll_max: float = 60.0) -> None:
        self.store = store
        self.ca = ca
        self.zone = zone
        self.longpoll_max = longpoll_max
        self.counters: Counter = Counter()
        self.lock = threading.Lock()
        self.waiting = 0
        self.status_extra: Callable[[], dict] = dict
        S = r"([^/]+)"
        self.routes: list[tuple[str, re.Pattern, Callable[..., tuple[int, Any]]]] = [
            ("GET", re.compile(r"^/$"), self.page),
            ("GET", re.compile(r"^/api/mvpns$"), lambda q, b: (200, self.store.mvpns())),
            ("POST", re.compile(r"^/api/mvpns$"), lambda q, b: (201, self.store.add_mvpn(v.obj(b)))),
            ("GET", re.compile(rf"^/api/mvpns/{S}$"), lambda q, b, n: (200, self.store.mvpn(n))),
            ("DELETE", re.compile(rf"^/api/mvpns/{S}$"), lambda q, b, n: (200, {"version": self.store.delete_mvpn(n)})),
            ("GET", re.compile(r"^/api/users$"), lambda q, b: (200, self.store.users())),
            ("POST", re.compile(r"^/api/users$"), lambda q, b: (201, self.store.add_user(v.obj(b)))),
            ("GET", re.compile(rf"^/api/users/{S}$"), lambda q, b, f: (200, self.store.user(v.fqdn(f)))),
            ("DELETE", re.compile(rf"^/api/users/{S}$"), lambda q, b, f: (200, {"version": self.store.delete_user(f)})),
            ("GET", re.compile(r"^/api/workgroups$"), lambda q, b: (200, self.store.workgroups())),
            ("POST", re.compile(r"^/api/workgroups$"), lambda q, b: (201, self.store.add_workgroup(v.obj(b)))),
            ("GET", re.compile(rf"^/api/workgroups/{S}$"), lambda q, b, n: (200, self.store.workgroup(n))),
            ("DELETE", re.compile(rf"^/api/workgroups/{S}$"),
             lambda q, b, n: (200, {"version": self.store.delete_workgroup(n)})),
            ("POST", re.compile(rf"^/api/workgroups/{S}/members$"),
             lambda q, b, n: (201, self.store.add_member(n, v.obj(b)))),
            ("DELETE", re.compile(rf"^/api/workgroups/{S}/members/{S}$"),
             lambda q, b, n, f: (200, self.store.remove_member(n, f))),
            ("POST", re.compile(r"^/api/signon$"), lambda q, b: (200, self.store.signon(v.obj(b)))),
            ("GET", re.compile(rf"^/api/sg/{S}/filter$"), lambda q, b, m: (200, self.store.filter_rows(m))),
            ("GET", re.compile(r"^/api/changes$"), self.changes),
            ("GET", re.compile(r"^/api/ca$"), lambda q, b: (200, Pem(self.ca.cert_pem))),
            ("POST", re.compile(r"^/api/certs$"), self.issue_cert),
            ("GET", re.compile(r"^/api/status$"), lambda q, b: (200, self.status())),
        ]

    # ------------------------------------------------------------------ routes
    def page(self, query: dict, body: Any) -> tuple[int, Any]:
        return 200, render(self.store, self.zone)

    def changes(self, query: dict, body: Any) -> tuple[int, Any]:
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

    def issue_cert(self, query: dict, body: Any) -> tuple[int, Any]:
        body = v.obj(body)
        cn = v.text(v.require(body, "cn"), "cn").strip()
        kind = v.text(v.require(body, "kind"), "kind")
        san_ips = v.str_list(body.get("san_ips"), "san_ips")
        san_dns = v.str_list(body.get("san_dns"), "san_dns")
        validity = v.text(body.get("validity", "valid"), "validity")
        days = body.get("days")
        key_type = body.get("key_type")
        if key_type is not None:
            key_type = v.text(key_type, "key_type")
        if kind == "mn":
            # Claim 10: the MN's certificate names its own SG's public address. The MSM
            # takes it from the user's M-VPN, so an MN cannot choose a foreign realm.
            user = self.store.find_user(cn.lower().rstrip("."))
            if user is None:
                raise not_found("cn", f"{cn!r} is not a known user FQDN (kind mn needs one)")
            cn = user["fqdn"]
            sg = user["sg_public"]
            override = body.get("sg_public_override")
            if override is not None:  # for negative tests only: a certificate naming the wrong SG
                sg = str(v.ipv4(override, "sg_public_override"))
            san_dns = [user["fqdn"], *san_dns]
            san_ips = [sg, *san_ips]
        elif "sg_public_override" in body:
            raise bad("sg_public_override", "only allowed with kind mn")
        issued = self.ca.issue(cn, kind, san_ips, san_dns, validity=validity, days=days, key_type=key_type)
        self.store.record_cert(issued.serial, cn, kind, issued.not_before.isoformat(),
                               issued.not_after.isoformat(), issued.san)
        if kind in ("mn", "msr") and validity == "valid" and body.get("sg_public_override") is None:
            # the one a sink may fetch for this node (claims 55-56); test certificates
            # outside their validity window never replace it
            self.store.set_node_cert(cn, issued.cert_pem)
        with self.lock:
            self.counters["certs_issued"] += 1
        return 201, {
            "cn": cn, "kind": kind, "serial": format(issued.serial, "x"), "san": issued.san,
            "not_before": issued.not_before.isoformat(), "not_after": issued.not_after.isoformat(),
            "cert_pem": issued.cert_pem, "key_pem": issued.key_pem, "ca_pem": self.ca.cert_pem,
        }

    def status(self) -> dict:
        with self.lock:
            http = dict(self.counters)
            http["longpoll_waiting"] = self.waiting
        return {"version": self.store.version, "store": self.store.counts(), "http": http, **self.status_extra()}

    # ---------------------------------------------------------------- dispatch
    def dispatch(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        path = parts.path.rstrip("/") or "/"
        allowed = False
        for m, pattern, fn in self.routes:
            match = pattern.match(path)
            if not match:
                continue
            if m != method:
                allowed = True
                continue
            args = [unquote(g) for g in match.groups()]
            return fn(query, body, *args)
        if allowed:
            raise ApiError(405, None, f"method {method} not allowed on {path}")
        raise not_found(None, f"no such resource {path}")

    def count(self, status: int) -> None:
        with self.lock:
            self.counters["requests"] += 1
            self.counters[f"status_{status // 100}xx"] += 1


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
    portal: Portal  # set on the subclass made by make_server

    def log_message(self, fmt: str, *args: Any) -> None:  # http.server logs to stderr by default
        log.debug("%s %s", self.address_string(), fmt % args)

    def _handle(self, method: str, head: bool = False) -> None:
        started = time.monotonic()
        try:
            body = self._read_body() if method in ("POST", "PUT") else None
            status, payload = self.portal.dispatch(method, self.path, body)
        except ApiError as exc:
            status, payload = exc.status, exc.to_json()
            log.debug("%s %s -> %d %s", method, self.path, status, payload["error"])
        except Exception:  # a bug, not bad input: answer 500 and keep serving
            log.exception("%s %s failed", method, self.path)
            status, payload = 500, {"error": "internal error"}
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
        except (BrokenPipeError, ConnectionResetError):
            log.debug("client went away before the answer to %s %s", method, self.path)
        log.debug("%s %s -> %d in %.1f ms", method, self.path, status, (time.monotonic() - started) * 1e3)

    def _read_body(self) -> Any:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True  # the unread body would be parsed as the next request
            raise ApiError(411, None, "Content-Length required")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise bad(None, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, None, f"body larger than {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        if not raw:
            return {}
        try:
            return json.loads(raw)
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


class PortalServer(ThreadingHTTPServer):
    daemon_threads = True  # long-poll handlers must not hold up shutdown
    allow_reuse_address = True


def make_server(portal: Portal, address: str, port: int) -> PortalServer:
    handler = type("PortalHandler", (_Handler,), {"portal": portal})
    return PortalServer((address, port), handler)
