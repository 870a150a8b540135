"""DIAMETER client for a sink (MSR): one connection to its home MSM's server.

Why it keeps the connection open: the hello of a moving node must be answered
quickly, so the sink does CER/CEA once, keeps the link alive with DWR/DWA, and
only an AA-Request/AA-Answer round trip lies on the attach path (the latency
each call returns is that round trip). A lost connection is retried every Tc
seconds (RFC 6733 section 2.1).

Errors: an answer -- success or rejection -- comes back as ``AAAnswer``
(``ok`` False with ``result_code`` 4001 for a rejected node). When the MSM
can't be asked at all (no open connection, no answer in time) the call raises
``DiameterUnavailable``: the sink must not mistake an unreachable MSM for a
visiting node.

Use from asyncio code: ``DiameterClient``. From threaded code:
``BlockingDiameterClient`` runs the same client on its own event loop thread.
From a selector-based single-threaded loop (the AODV agent's), where a blocking
call would freeze routing for a round trip: ``BlockingDiameterClient.submit``
with a ``CompletionQueue`` registered as a reader of that loop; the callback
then runs in the loop's own thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import socket
import threading
import time
from typing import Any, Callable

from . import constants as C
from .exchange_log import Counters, ExchangeLog
from .nasreq import AAAnswer, build_aar, parse_aaa
from .peer import CapabilitiesRejected, LocalIdentity, PeerClosed, PeerConnection

log = logging.getLogger("testbed.diameter")


class DiameterUnavailable(ConnectionError):
    """The server could not be asked (no connection, or no answer in time)."""


class DiameterClient:
    def __init__(self, identity: LocalIdentity, server_host: str, server_port: int = C.DIAMETER_PORT,
                 *, destination_realm: str, destination_host: str | None = None, tw: float = 30.0,
                 tc: float = 5.0, request_timeout: float = 5.0, connect_timeout: float = 3.0,
                 exchange_log_path: str | None = None) -> None:
        self.identity = identity
        self.server_host = server_host
        self.server_port = server_port
        self.destination_realm = destination_realm
        self.destination_host = destination_host
        self.tw = tw
        self.tc = tc
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.counters = Counters()
        self.xlog = ExchangeLog(exchange_log_path)
        self.peer: PeerConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._state_changed: asyncio.Event | None = None
        self.last_error: str | None = None

    async def start(self) -> None:
        self._running = True
        self._state_changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._maintain())

    async def stop(self) -> None:
        self._running = False
        if self.peer is not None:
            await self.peer.disconnect(C.DISCONNECT_REBOOTING, timeout=1.0)
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.xlog.close()

    @property
    def is_open(self) -> bool:
        return self.peer is not None and self.peer.is_open

    async def wait_open(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_open:
            left = deadline - time.monotonic()
            if left <= 0 or self._state_changed is None:
                return False
            self._state_changed.clear()
            try:
                await asyncio.wait_for(self._state_changed.wait(), left)
            except asyncio.TimeoutError:
                return self.is_open
        return True

    def _notify(self) -> None:
        if self._state_changed is not None:
            self._state_changed.set()

    async def _maintain(self) -> None:
        while self._running:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.server_host, self.server_port), self.connect_timeout)
                peer = PeerConnection(reader, writer, self.identity, initiator=True, tw=self.tw,
                                      counters=self.counters, exchange_log=self.xlog,
                                      label=f"{self.server_host}:{self.server_port}")
                self.counters.inc("connect_attempts")
                await peer.start_initiator(timeout=self.connect_timeout)
                self.peer = peer
                self.last_error = None
                self._notify()
                await peer.wait_closed()
                log.info("connection to %s closed", peer.remote_host)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: count, report, retry after Tc
                self.counters.inc("connect_failures")
                if not isinstance(exc, (OSError, asyncio.TimeoutError, PeerClosed,
                                        CapabilitiesRejected)):
                    self.counters.inc("internal_errors")
                    log.exception("unexpected error on DIAMETER connection")
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("DIAMETER connection to %s:%d failed: %s", self.server_host,
                            self.server_port, self.last_error)
            finally:
                self._notify()
            self.peer = None
            if self._running:
                await asyncio.sleep(self.tc)

    async def _aa(self, identity: str, auth_request_type: int, *, authenticator: bytes | None,
                  authenticated_data: bytes | None, node_address: str | None,
                  nas_ip_address: str | None, want_certificate: bool,
                  timeout: float | None) -> AAAnswer:
        timeout = self.request_timeout if timeout is None else timeout
        t0 = time.monotonic()
        if not self.is_open and not await self.wait_open(timeout):
            self.counters.inc("aa_unavailable")
            raise DiameterUnavailable(f"no open DIAMETER connection ({self.last_error})")
        peer = self.peer
        assert peer is not None
        sid, avp_list = build_aar(origin_host=self.identity.origin_host,
                                  origin_realm=self.identity.origin_realm,
                                  destination_realm=self.destination_realm,
                                  destination_host=self.destination_host, identity=identity,
                                  auth_request_type=auth_request_type, authenticator=authenticator,
                                  authenticated_data=authenticated_data, node_address=node_address,
                                  nas_ip_address=nas_ip_address,
                                  nas_identifier=self.identity.origin_host,
                                  want_certificate=want_certificate)
        left = max(0.05, timeout - (time.monotonic() - t0))
        try:
            msg = await peer.request(C.CMD_AA, C.APP_NASREQ, avp_list, timeout=left, proxiable=True)
        except asyncio.TimeoutError as exc:
            self.counters.inc("aa_timeouts")
            raise DiameterUnavailable(f"no AA-Answer within {timeout:.1f}s") from exc
        except (PeerClosed, OSError) as exc:
            self.counters.inc("aa_unavailable")
            raise DiameterUnavailable(str(exc)) from exc
        latency = time.monotonic() - t0
        ans = parse_aaa(msg, latency)
        self.counters.inc("aa_success" if ans.ok else "aa_rejected")
        self.xlog.record("auth", identity=identity, result_code=ans.result_code, ok=ans.ok,
                         reason=ans.reason, latency_ms=round(latency * 1000, 3), session_id=sid)
        return ans

    async def authenticate(self, identity: str, authenticator: bytes, *,
                           authenticated_data: bytes | None = None, node_address: str | None = None,
                           nas_ip_address: str | None = None, want_certificate: bool = False,
                           timeout: float | None = None) -> AAAnswer:
        """AUTHORIZE_AUTHENTICATE: check the node's authenticator, get routes and filters."""
        return await self._aa(identity, C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE,
                              authenticator=authenticator, authenticated_data=authenticated_data,
                              node_address=node_address, nas_ip_address=nas_ip_address,
                              want_certificate=want_certificate, timeout=timeout)

    async def authorize(self, identity: str, *, node_address: str | None = None,
                        nas_ip_address: str | None = None, want_certificate: bool = True,
                        timeout: float | None = None) -> AAAnswer:
        """AUTHORIZE_ONLY (certificate path): routes, filters and, if asked, the
        node's certificate (claim 56). The sink checks the node's signature itself."""
        return await self._aa(identity, C.AUTH_REQUEST_AUTHORIZE_ONLY, authenticator=None,
                              authenticated_data=None, node_address=node_address,
                              nas_ip_address=nas_ip_address, want_certificate=want_certificate,
                              timeout=timeout)

    async def fetch_certificate(self, identity: str, timeout: float | None = None) -> str | None:
        """The node's X.509 certificate (PEM) from the MSM, or None if it has none."""
        ans = await self.authorize(identity, want_certificate=True, timeout=timeout)
        return ans.certificate_pem

    def status(self) -> dict[str, Any]:
        return {
            "server": f"{self.server_host}:{self.server_port}",
            "open": self.is_open,
            "peer": self.peer.describe() if self.peer else None,
            "last_error": self.last_error,
            "counters": self.counters.snapshot(),
            "recent": self.xlog.recent()[-20:],
        }


class CompletionQueue:
    """Hands callbacks from the DIAMETER thread to a selector-based event loop.

    Register it with the loop (``loop.add_reader(cq, cq.run_pending)``): ``post``
    may be called from any thread; the posted callbacks run inside
    ``run_pending``, i.e. in the loop's thread, so the agent needs no locks.
    """

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._q: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = collections.deque()

    def fileno(self) -> int:
        return self._r.fileno()

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        self._q.append((fn, args))
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the reader is already woken (buffer full) or we are closing

    def run_pending(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while self._q:
            fn, args = self._q.popleft()
            try:
                fn(*args)
            except Exception:  # one bad callback must not lose the others
                log.exception("DIAMETER completion callback failed")

    def close(self) -> None:
        self._r.close()
        self._w.close()


#: on_done(answer, error): exactly one of them is None.
DoneCallback = Callable[[Any, BaseException | None], None]


class BlockingDiameterClient:
    """``DiameterClient`` on a private event loop thread, with blocking calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="diameter-client",
                                        daemon=True)
        self.client: DiameterClient | None = None

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, wait_open: float = 0.0) -> bool:
        self._thread.start()

        async def make() -> DiameterClient:
            c = DiameterClient(*self._args, **self._kwargs)
            await c.start()
            return c

        self.client = self._run(make())
        return self._run(self.client.wait_open(wait_open)) if wait_open else self.client.is_open

    def stop(self) -> None:
        if self.client:
            try:
                self._run(self.client.stop(), 5.0)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5.0)

    def authenticate(self, *args: Any, **kwargs: Any) -> AAAnswer:
        assert self.client
        return self._run(self.client.authenticate(*args, **kwargs))

    def authorize(self, *args: Any, **kwargs: Any) -> AAAnswer:
        assert self.client
        return self._run(self.client.authorize(*args, **kwargs))

    def fetch_certificate(self, identity: str, timeout: float | None = None) -> str | None:
        assert self.client
        return self._run(self.client.fetch_certificate(identity, timeout))

    def submit(self, method: str, *args: Any, on_done: DoneCallback,
               via: CompletionQueue | None = None, **kwargs: Any) -> concurrent.futures.Future:
        """Start ``method`` ("authenticate", "authorize", "fetch_certificate") without
        blocking; ``on_done(result, error)`` runs via ``via`` (or on the client thread)."""
        assert self.client
        if method not in ("authenticate", "authorize", "fetch_certificate"):
            raise ValueError(f"unknown method {method!r}")
        fut = asyncio.run_coroutine_threadsafe(getattr(self.client, method)(*args, **kwargs),
                                               self._loop)

        def done(f: concurrent.futures.Future) -> None:
            try:
                result, error = f.result(), None
            except BaseException as exc:  # handed to the caller, not raised here
                result, error = None, exc
            if via is not None:
                via.post(on_done, result, error)
            else:
                on_done(result, error)

        fut.add_done_callback(done)
        return fut

    def status(self) -> dict[str, Any]:
        assert self.client
        return self._run(self._status())

    async def _status(self) -> dict[str, Any]:
        assert self.client
        return self.client.status()
