"""The MSM's DIAMETER server: accepts sinks (MSRs), answers NASREQ AA-Requests.

Why a pluggable backend: the standalone server (``python3 -m testbed.diameter``)
uses a static user table, while the MSM embeds the same server with its own
member store and CA. The backend sees only what it needs -- identity,
authenticator and context -- and returns routes and filters; the server does
the protocol (peer state machine, Result-Codes, logging, counters).

Embedding in the MSM (asyncio)::

    server = DiameterServer(LocalIdentity("msm.home.example", "home.example"),
                            backend, port=3868, exchange_log_path="/run/testbed/msm-diameter.jsonl")
    await server.start()
    ... server.status() ...
    await server.stop()          # DPR to every open peer

or from threaded code: ``server.start_in_thread()`` / ``server.stop_thread()``.

Backend interface (sync or async methods both work; sync ones run in a worker
thread so a slow store doesn't stall the watchdogs)::

    authenticate(identity, authenticator: bytes | None, context: dict) -> AuthResult
    lookup_certificate(identity) -> str | None        # PEM

``context`` keys: mode ("authenticate" | "authorize_only"), session_id,
sink_host, sink_realm, node_address, nas_ip_address, nas_identifier,
authenticated_data (bytes the authenticator covers, or None).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import constants as C
from .exchange_log import Counters, ExchangeLog
from .message import Message
from .nasreq import AARequest, build_aaa_avps, parse_aar
from .peer import AnswerCache, LocalIdentity, PeerConnection
from .rules import FilterRule, Route, RuleError, parse_filter, parse_route
from .status import status_loop

log = logging.getLogger("testbed.diameter")


@dataclass
class AuthResult:
    """A backend's decision. Routes/filters may be given as text or parsed."""

    ok: bool
    routes: list[str | Route] = field(default_factory=list)
    filters: list[str | FilterRule] = field(default_factory=list)
    reason: str | None = None


class Backend(Protocol):
    """What the server asks. An optional attribute ``blocking = False`` says the
    sync methods answer from memory at once: they then run on the event loop
    instead of a worker thread (saves a thread hop per AA-Request)."""

    def authenticate(self, identity: str, authenticator: bytes | None,
                     context: dict[str, Any]) -> AuthResult: ...

    def lookup_certificate(self, identity: str) -> str | None: ...


async def _call(fn: Any, *args: Any, blocking: bool = True) -> Any:
    """Call a backend method: awaited if async, on the loop if the backend says it
    never blocks, else in a worker thread (a slow store must not stall watchdogs)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    if not blocking:
        return fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


class DiameterServer:
    def __init__(self, identity: LocalIdentity, backend: Backend, *, host: str = "0.0.0.0",
                 port: int = C.DIAMETER_PORT, tw: float = 30.0,
                 exchange_log_path: str | None = None, status_path: str | None = None,
                 cer_timeout: float = 10.0, max_connections: int = 256,
                 max_inflight: int = 64, duplicate_probe_s: float = 2.0) -> None:
        """Args: ``tw``/``cer_timeout``/``duplicate_probe_s`` in seconds;
        ``max_connections``: transport connections at once, CER or not (more are
        accepted and closed at once, counted ``connections_refused``);
        ``max_inflight``: requests of one connection handled at once (then its
        reading pauses). Both bound what an unauthenticated peer can make us hold."""
        self.identity = identity
        self.backend = backend
        self.host = host
        self.port = port
        self.tw = tw
        self.status_path = status_path
        self.cer_timeout = cer_timeout
        self.max_connections = max_connections
        self.max_inflight = max_inflight
        self.duplicate_probe_s = duplicate_probe_s
        #: Open peers by Origin-Host (lower case); at most one connection each.
        self.by_host: dict[str, PeerConnection] = {}
        self.counters = Counters()
        self.xlog = ExchangeLog(exchange_log_path)
        self.answer_cache = AnswerCache()
        self.peers: set[PeerConnection] = set()
        self.started_at = time.time()
        self._server: asyncio.base_events.Server | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.handlers = {(C.APP_NASREQ, C.CMD_AA): self._on_aar}
        self._blocking = getattr(backend, "blocking", True) is not False

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("DIAMETER server %s (realm %s) listening on %s:%d, Tw=%.1fs",
                 self.identity.origin_host, self.identity.origin_realm, self.host, self.port, self.tw)
        if self.status_path:
            self._status_task = asyncio.ensure_future(status_loop(self.status_path, self.status))

    async def stop(self, cause: int = C.DISCONNECT_REBOOTING) -> None:
        if self._server:
            self._server.close()
        await asyncio.gather(*(p.disconnect(cause, timeout=1.0) for p in list(self.peers)),
                             return_exceptions=True)
        if self._server:
            await self._server.wait_closed()
        if self._status_task:
            self._status_task.cancel()
            from .status import write_json_atomic
            try:
                write_json_atomic(self.status_path, self.status())  # type: ignore[arg-type]
            except OSError:
                pass
        self.xlog.close()

    def start_in_thread(self, timeout: float = 5.0) -> None:
        """Run the server on its own event loop thread (for non-asyncio hosts)."""
        ready = threading.Event()
        error: list[BaseException] = []

        def runner() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # report bind errors to the caller
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=runner, name="diameter-server", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        if error:
            raise error[0]

    def stop_thread(self, timeout: float = 5.0) -> None:
        if not self._loop or not self._thread:
            return
        fut = asyncio.run_coroutine_threadsafe(self.stop(), self._loop)
        try:
            fut.result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    # ------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        return {
            "agent": "diameter-server",
            "origin_host": self.identity.origin_host,
            "origin_realm": self.identity.origin_realm,
            "listen": f"{self.host}:{self.port}",
            "tw_s": self.tw,
            "uptime_s": round(time.time() - self.started_at, 3),
            "counters": self.counters.snapshot(),
            "peers": [p.describe() for p in list(self.peers)],
            "recent": self.xlog.recent()[-20:],
            "written_at": time.time(),
        }

    def open_peers(self) -> list[PeerConnection]:
        return [p for p in list(self.peers) if p.is_open]

    # ------------------------------------------------------------- accept
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.peers) >= self.max_connections:
            self.counters.inc("connections_refused")
            log.debug("connection refused: %d connections open", len(self.peers))
            writer.close()
            return
        self.counters.inc("connections_accepted")
        peer = PeerConnection(reader, writer, self.identity, initiator=False, tw=self.tw,
                              handlers=self.handlers, counters=self.counters,
                              exchange_log=self.xlog, answer_cache=self.answer_cache,
                              cer_timeout=self.cer_timeout, admit=self._admit,
                              max_inflight=self.max_inflight)
        self.peers.add(peer)
        log.info("connection from %s", peer.remote_address)
        try:
            await peer.run()
        finally:
            self.peers.discard(peer)
            key = (peer.remote_host or "").lower()
            if self.by_host.get(key) is peer:
                del self.by_host[key]
            log.info("connection from %s (%s) ended", peer.remote_address, peer.remote_host)

    async def _admit(self, peer: PeerConnection) -> tuple[int, str] | None:
        """One connection per Origin-Host. A CER naming a host that is open already
        is rejected with DIAMETER_UNABLE_TO_COMPLY while the old connection answers
        a DWR (as freeDiameter does; RFC 6733 5.6.1 R-Reject); if it does not, the
        old one is dead, is closed, and the new one takes its place."""
        key = (peer.remote_host or "").lower()
        old = self.by_host.get(key)
        if old is not None and old is not peer:
            if await old.probe(self.duplicate_probe_s):
                self.counters.inc("duplicate_connections_rejected")
                return C.RESULT_UNABLE_TO_COMPLY, f"{peer.remote_host} is already connected"
            self.counters.inc("duplicate_connections_replaced")
            old.abort("replaced: a new connection from the same Origin-Host, old one silent")
        self.by_host[key] = peer
        return None

    # ---------------------------------------------------------- NASREQ AA
    async def _on_aar(self, peer: PeerConnection, msg: Message) -> tuple[int, list[Any], str | None]:
        t0 = time.monotonic()
        req = parse_aar(msg)  # MalformedMessage -> answered by the peer with its code
        if req.destination_realm.lower() != self.identity.origin_realm.lower():
            self.counters.inc("aa_realm_not_served")
            return C.RESULT_REALM_NOT_SERVED, [], f"realm {req.destination_realm} not served"
        if req.destination_host and req.destination_host.lower() != self.identity.origin_host.lower():
            return C.RESULT_UNABLE_TO_DELIVER, [], f"host {req.destination_host} is not this server"
        mode = "authorize_only" if req.auth_request_type == C.AUTH_REQUEST_AUTHORIZE_ONLY else "authenticate"
        context = {
            "mode": mode, "session_id": req.session_id, "sink_host": req.origin_host,
            "sink_realm": req.origin_realm, "node_address": req.node_address,
            "nas_ip_address": req.nas_ip_address, "nas_identifier": req.nas_identifier,
            "authenticated_data": req.authenticated_data,
        }
        result: AuthResult = await _call(self.backend.authenticate, req.identity,
                                         req.authenticator if mode == "authenticate" else None,
                                         context, blocking=self._blocking)
        if not isinstance(result, AuthResult):
            raise TypeError("backend.authenticate must return AuthResult")
        cert: str | None = None
        if req.want_certificate:
            self.counters.inc("certificate_requests")
            cert = await _call(self.backend.lookup_certificate, req.identity,
                               blocking=self._blocking)
            if cert:
                self.counters.inc("certificates_returned")
        routes: list[Route] = []
        filters: list[FilterRule] = []
        # AUTHENTICATE_ONLY asks for no authorization: no routes or filters then.
        if result.ok and req.auth_request_type != C.AUTH_REQUEST_AUTHENTICATE_ONLY:
            try:
                routes = [r if isinstance(r, Route) else parse_route(r) for r in result.routes]
                filters = [f if isinstance(f, FilterRule) else parse_filter(f) for f in result.filters]
            except RuleError as exc:
                # Never hand out half a workgroup policy.
                self.counters.inc("aa_backend_bad_rules")
                log.error("backend returned an unusable rule for %s: %s", req.identity, exc)
                rc, reason = C.RESULT_UNABLE_TO_COMPLY, "server policy error"
                self._log_aa(req, mode, peer, rc, reason, [], [], cert, t0)
                return rc, [], reason
        rc = C.RESULT_SUCCESS if result.ok else C.RESULT_AUTHENTICATION_REJECTED
        self.counters.inc("aa_success" if result.ok else "aa_rejected")
        reason = None if result.ok else (result.reason or "rejected")
        self._log_aa(req, mode, peer, rc, reason, routes, filters, cert, t0)
        return rc, build_aaa_avps(req, routes=routes, filters=filters, reply_message=reason,
                                  certificate_pem=cert), None

    def _log_aa(self, req: AARequest, mode: str, peer: PeerConnection, rc: int, reason: str | None,
                routes: list[Route], filters: list[FilterRule], cert: str | None, t0: float) -> None:
        ms = round((time.monotonic() - t0) * 1000, 3)
        self.xlog.record("auth", sink=req.origin_host, identity=req.identity, mode=mode,
                         session_id=req.session_id, node_address=req.node_address,
                         result_code=rc, reason=reason, routes=[r.to_avp_text() for r in routes],
                         filters=[f.to_avp_text() for f in filters],
                         certificate_requested=req.want_certificate,
                         certificate_returned=bool(cert), backend_ms=ms)
        log.info("AA %s for %s from sink %s: %s%s (%d routes, %d filters%s) in %.1f ms", mode,
                 req.identity, req.origin_host, rc, f" {reason}" if reason else "", len(routes),
                 len(filters), ", certificate" if cert else "", ms)
