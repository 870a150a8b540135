"""One DIAMETER peer connection over TCP: the RFC 6733 peer state machine.

What it does, per connection (section 5 of RFC 6733, watchdog from RFC 3539):
- responder: the first message must be a CER; we check it (mandatory AVPs,
  a common application) and answer CEA, or answer with the failing
  Result-Code and close. Requests before CER get DIAMETER_UNKNOWN_PEER.
- initiator: sends CER, expects CEA with DIAMETER_SUCCESS.
- Open: any message resets the watchdog; after Tw (+/- jitter) of silence we send
  DWR; no answer within another Tw means the transport is dead and we close it.
- DPR/DPA in both directions; the sender of DPR closes after DPA.
- requests of unknown commands get an E-bit answer with
  DIAMETER_COMMAND_UNSUPPORTED, requests of applications not advertised get
  DIAMETER_APPLICATION_UNSUPPORTED; unknown AVPs with the M bit get
  DIAMETER_AVP_UNSUPPORTED; broken headers/AVPs get the Result-Code of section
  7.1.5 with Failed-AVP. When framing is lost (bad version or length) we
  answer if we can and close. Every fault is counted; nothing here may raise
  out of the read loop.
Capability exchange (RFC 6733 5.3, 6.10): a CER is checked in this order and
answered with a CEA carrying our capabilities whatever the Result-Code:
header bits (3008, E-bit answer), unknown M-bit AVPs at any depth (5001),
missing Origin-Host/-Realm, Host-IP-Address, Vendor-Id, Product-Name (5005),
undecodable values (5004), Inband-Security-Id without NO_INBAND_SECURITY
(5017), no common application (5010), then the owner's ``admit`` hook (the
server rejects a second connection of an Origin-Host that is open and alive
with 5012, as freeDiameter does, and refuses peers beyond its capacity); a
rejected CER closes the connection. The server never initiates, so there is no
election (RFC 6733 5.6.4 applies to simultaneous connects only).
Bounds (issue 11, section 4): the CER must be complete ``cer_timeout`` after
accept and every message ``body_timeout`` after its first byte; at most
``max_inflight`` requests of one connection are being handled (then reading
stops: TCP backpressure); counters of unknown commands share one name.
Not done: TLS, SCTP, relaying.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import avps as A
from . import constants as C
from .exchange_log import Counters, ExchangeLog
from .message import MalformedMessage, Message, check_length_word, decode, encode, parse_header

log = logging.getLogger("testbed.diameter")


class PeerState(str, enum.Enum):
    CLOSED = "CLOSED"
    WAIT_CEA = "WAIT_CEA"
    WAIT_CER = "WAIT_CER"
    OPEN = "OPEN"
    CLOSING = "CLOSING"


class PeerClosed(ConnectionError):
    """The connection ended while a request was outstanding."""


class CapabilitiesRejected(ConnectionError):
    """The remote peer answered our CER with a Result-Code other than success."""

    def __init__(self, result_code: int | None, message: str = "") -> None:
        super().__init__(f"CEA Result-Code {result_code} {message}".strip())
        self.result_code = result_code


@dataclass
class LocalIdentity:
    """What we announce in CER/CEA (RFC 6733 section 5.3.1)."""

    origin_host: str
    origin_realm: str
    host_ip_addresses: list[str] = field(default_factory=list)  # empty: the socket's own
    vendor_id: int = C.VENDOR_TESTBED
    product_name: str = "mobile-workgroup-testbed"
    origin_state_id: int = field(default_factory=lambda: int(time.time()) & 0xFFFFFFFF)
    auth_application_ids: tuple[int, ...] = (C.APP_NASREQ,)
    firmware_revision: int = 1


#: A request handler returns the answer's (result_code, avps, error_message);
#: raising is caught and answered with DIAMETER_UNABLE_TO_COMPLY.
RequestHandler = Callable[["PeerConnection", Message], Awaitable[tuple[int, list[Any], str | None]]]

_e2e_counter = itertools.count(((int(time.time()) & 0xFFF) << 20) | random.getrandbits(20))

# AVPs allowed in base-protocol commands (CCFs of RFC 6733 sections 5.3-5.5).
_CER_AVPS = {C.AVP_ORIGIN_HOST, C.AVP_ORIGIN_REALM, C.AVP_HOST_IP_ADDRESS, C.AVP_VENDOR_ID,
             C.AVP_PRODUCT_NAME, C.AVP_ORIGIN_STATE_ID, C.AVP_SUPPORTED_VENDOR_ID,
             C.AVP_AUTH_APPLICATION_ID, C.AVP_INBAND_SECURITY_ID, C.AVP_ACCT_APPLICATION_ID,
             C.AVP_VENDOR_SPECIFIC_APPLICATION_ID, C.AVP_FIRMWARE_REVISION, C.AVP_RESULT_CODE,
             C.AVP_ERROR_MESSAGE, C.AVP_FAILED_AVP}


_READ_CHUNK = 64 * 1024
#: Malformed messages logged at WARNING per connection; the rest at DEBUG (all counted).
_MALFORMED_WARNINGS = 10


def command_name(code: int, request: bool) -> str:
    return C.COMMAND_NAMES.get(code, f"CMD{code}") + ("R" if request else "A")


def counter_name(direction: str, code: int, request: bool) -> str:
    """``rx_AAR`` etc.; commands we don't know share ``rx_other``: a peer choosing
    command codes must not be able to add counters (issue 11, section 4)."""
    if code in C.COMMAND_NAMES:
        return f"{direction}_{command_name(code, request)}"
    return f"{direction}_other"


#: The owner's verdict on a peer that passed the CER checks: None = admit, or
#: (Result-Code, Error-Message) to reject it.
AdmitHook = Callable[["PeerConnection"], Awaitable["tuple[int, str] | None"]]


def next_end_to_end() -> int:
    """End-to-end ids: high 12 bits from the clock, low bits counting (RFC 6733 3)."""
    return next(_e2e_counter) & 0xFFFFFFFF


class AnswerCache:
    """Recent answers keyed by (Origin-Host, End-to-End id) to answer retransmitted
    requests (T bit) identically instead of processing them twice."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._d: collections.OrderedDict[tuple[str, int], bytes] = collections.OrderedDict()

    def get(self, key: tuple[str, int]) -> bytes | None:
        return self._d.get(key)

    def put(self, key: tuple[str, int], answer: bytes) -> None:
        self._d[key] = answer
        self._d.move_to_end(key)
        while len(self._d) > self._size:
            self._d.popitem(last=False)


class PeerConnection:
    """State machine and I/O of one transport connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 local: LocalIdentity, *, initiator: bool, tw: float = 30.0,
                 handlers: dict[tuple[int, int], RequestHandler] | None = None,
                 counters: Counters | None = None, exchange_log: ExchangeLog | None = None,
                 answer_cache: AnswerCache | None = None, body_timeout: float = 10.0,
                 cer_timeout: float = 10.0, label: str = "", admit: AdmitHook | None = None,
                 max_inflight: int = 64) -> None:
        self.reader = reader
        self.writer = writer
        self.local = local
        self.initiator = initiator
        self.tw = tw
        self.handlers = handlers or {}
        self.counters = counters or Counters()
        self.xlog = exchange_log or ExchangeLog()
        self.answer_cache = answer_cache or AnswerCache()
        self.body_timeout = body_timeout
        self.cer_timeout = cer_timeout
        self.admit = admit
        self._inflight = asyncio.Semaphore(max_inflight)
        self._malformed_logged = 0
        self.state = PeerState.WAIT_CEA if initiator else PeerState.WAIT_CER
        peer = writer.get_extra_info("peername") or ("?", 0)
        sock = writer.get_extra_info("sockname") or ("0.0.0.0", 0)
        self.remote_address = f"{peer[0]}:{peer[1]}"
        self.local_ip = sock[0]
        self.label = label or self.remote_address
        self.remote_host: str | None = None
        self.remote_realm: str | None = None
        self.remote_product: str | None = None
        self.remote_state_id: int | None = None
        self.remote_apps: set[int] = set()
        self.opened_at: float | None = None
        self.last_rx = time.monotonic()
        self.last_dwa: float | None = None
        self.disconnect_cause: int | None = None
        self._rbuf = bytearray()
        self._accepted_at = self._partial_since = time.monotonic()
        self._hbh = itertools.count(random.getrandbits(31))
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchdog_task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()
        self._closed = asyncio.Event()

    # ------------------------------------------------------------------ info
    @property
    def is_open(self) -> bool:
        return self.state == PeerState.OPEN

    def describe(self) -> dict[str, Any]:
        return {
            "address": self.remote_address,
            "origin_host": self.remote_host,
            "origin_realm": self.remote_realm,
            "product_name": self.remote_product,
            "origin_state_id": self.remote_state_id,
            "applications": sorted(self.remote_apps),
            "state": self.state.value,
            "open_for_s": round(time.monotonic() - self.opened_at, 3) if self.opened_at else None,
            "last_dwa_age_s": round(time.monotonic() - self.last_dwa, 3) if self.last_dwa else None,
        }

    async def wait_open(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._opened.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.is_open

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # ----------------------------------------------------------------- output
    def _base_identity_avps(self) -> list[Any]:
        return [A.make(C.AVP_ORIGIN_HOST, self.local.origin_host),
                A.make(C.AVP_ORIGIN_REALM, self.local.origin_realm)]

    def _capabilities_avps(self) -> list[Any]:
        out = self._base_identity_avps()
        for ip in self.local.host_ip_addresses or [self.local_ip]:
            out.append(A.make_address(C.AVP_HOST_IP_ADDRESS, ip))
        out += [A.make(C.AVP_VENDOR_ID, self.local.vendor_id),
                A.make(C.AVP_PRODUCT_NAME, self.local.product_name),
                A.make(C.AVP_ORIGIN_STATE_ID, self.local.origin_state_id),
                A.make(C.AVP_SUPPORTED_VENDOR_ID, C.VENDOR_TESTBED)]
        out += [A.make(C.AVP_AUTH_APPLICATION_ID, app) for app in self.local.auth_application_ids]
        out.append(A.make(C.AVP_FIRMWARE_REVISION, self.local.firmware_revision))
        return out

    async def _send(self, data: bytes, name: str, hbh: int, e2e: int, **extra: Any) -> None:
        if self.writer.is_closing():
            raise PeerClosed("transport closed")
        self.writer.write(data)
        self.counters.inc(counter_name("tx", int.from_bytes(data[5:8], "big"), bool(data[4] & C.FLAG_REQUEST)))
        self._record("tx", name, hbh, e2e, **extra)
        await self.writer.drain()

    def _record(self, direction: str, name: str, hbh: int, e2e: int, **extra: Any) -> None:
        self.xlog.record("message", dir=direction, cmd=name, peer=self.remote_host or self.label,
                         hbh=f"{hbh:08x}", e2e=f"{e2e:08x}", **extra)
        # Peer-level events at INFO; per-request traffic (AA has its own INFO line
        # per decision, the exchange log has every message) and watchdogs at DEBUG.
        level = logging.INFO if name[:2] in ("CE", "DP") else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, "%s %s %s hbh=%08x e2e=%08x %s", self.remote_host or self.label,
                    "<-" if direction == "rx" else "->", name, hbh, e2e,
                    " ".join(f"{k}={v}" for k, v in extra.items()))

    async def answer(self, req: Message, result_code: int, avp_list: list[Any] | None = None,
                     error_message: str | None = None, failed_avp: bytes | None = None,
                     cacheable: bool = False) -> None:
        """Send the answer to ``req``; 3xxx codes use the E-bit error layout."""
        error = C.is_protocol_error(result_code)
        out: list[Any] = []
        sid = req.find(C.AVP_SESSION_ID) if req.avps else None
        if sid is not None:
            out.append(A.make(C.AVP_SESSION_ID, A.as_bytes(sid)))
        out += self._base_identity_avps()
        out.append(A.make(C.AVP_RESULT_CODE, result_code))
        if error_message:
            out.append(A.make(C.AVP_ERROR_MESSAGE, error_message))
        if failed_avp:
            out.append(_failed_avp(failed_avp))
        if not error:
            if avp_list:
                out += avp_list
            elif req.header.code == C.CMD_CAPABILITIES_EXCHANGE:
                # A CEA has its capabilities whatever the Result-Code (RFC 6733 5.3.2).
                out += self._capabilities_avps()[2:]
        for proxy_info in (req.find_all(C.AVP_PROXY_INFO) if req.avps else []):
            out.append(proxy_info)
        h = req.header
        data = encode(h.code, request=False, app_id=h.app_id, hop_by_hop=h.hop_by_hop,
                      end_to_end=h.end_to_end, avp_list=out,
                      proxiable=bool(h.flags & C.FLAG_PROXIABLE), error=error)
        name = command_name(h.code, False)
        if cacheable and self.remote_host:
            self.answer_cache.put((self.remote_host, h.end_to_end), data)
        await self._send(data, name, h.hop_by_hop, h.end_to_end, result_code=result_code)

    async def request(self, code: int, app_id: int, avp_list: list[Any], *, timeout: float = 5.0,
                      proxiable: bool = False, name: str | None = None) -> Message:
        """Send a request and wait for its answer (matched by hop-by-hop id)."""
        if self.state not in (PeerState.OPEN, PeerState.WAIT_CEA) and code != C.CMD_DISCONNECT_PEER:
            raise PeerClosed(f"peer not open ({self.state.value})")
        hbh = next(self._hbh) & 0xFFFFFFFF
        e2e = next_end_to_end()
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[hbh] = fut
        data = encode(code, request=True, app_id=app_id, hop_by_hop=hbh, end_to_end=e2e,
                      avp_list=avp_list, proxiable=proxiable)
        # A timer on the future instead of wait_for: no extra task per request.
        timer = asyncio.get_running_loop().call_later(timeout, _expire, fut)
        try:
            await self._send(data, name or C.COMMAND_NAMES.get(code, f"CMD{code}") + "R", hbh, e2e)
            return await fut
        finally:
            timer.cancel()
            self._pending.pop(hbh, None)

    # ------------------------------------------------------------ lifecycle
    async def start_initiator(self, timeout: float = 5.0) -> None:
        """Capabilities exchange as initiator; raises CapabilitiesRejected/PeerClosed."""
        self._spawn(self.run())
        try:
            cea = await self.request(C.CMD_CAPABILITIES_EXCHANGE, C.APP_COMMON,
                                     self._capabilities_avps(), timeout=timeout)
        except asyncio.TimeoutError as exc:
            self.abort("no CEA")
            raise PeerClosed("no CEA within timeout") from exc
        rc = cea.result_code
        if rc != C.RESULT_SUCCESS:
            msg = cea.text(C.AVP_ERROR_MESSAGE) or ""
            if rc is None and cea.experimental_result:
                msg = f"Experimental-Result {cea.experimental_result} {msg}".strip()
            self.abort(f"CEA {rc}")
            raise CapabilitiesRejected(rc, msg)
        try:
            self._learn_capabilities(cea)
        except MalformedMessage as exc:
            self.abort(f"CEA: {exc.reason}")
            raise CapabilitiesRejected(exc.result_code, exc.reason) from exc
        self._enter_open()

    def _enter_open(self) -> None:
        self.state = PeerState.OPEN
        self.opened_at = time.monotonic()
        self.last_rx = time.monotonic()
        self.counters.inc("peers_opened")
        log.info("peer %s (%s) open, applications %s", self.remote_host, self.remote_address,
                 sorted(self.remote_apps))
        self._opened.set()
        if self.tw > 0 and self._watchdog_task is None:
            self._watchdog_task = self._spawn(self._watchdog())

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def abort(self, reason: str) -> None:
        """Close the transport now (no DPR)."""
        if self.state != PeerState.CLOSED:
            log.info("closing connection to %s: %s", self.remote_host or self.label, reason)
        self._finish()

    def _finish(self) -> None:
        if self.state == PeerState.CLOSED and self._closed.is_set():
            return
        self.state = PeerState.CLOSED
        try:
            self.writer.close()
        except Exception:  # already broken transports raise here; nothing left to do
            pass
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(PeerClosed("connection closed"))
        self._pending.clear()
        if self._watchdog_task and self._watchdog_task is not asyncio.current_task():
            self._watchdog_task.cancel()
        self._opened.set()
        if not self._closed.is_set():
            self.counters.inc("connections_closed")
            self._closed.set()

    async def probe(self, timeout: float) -> bool:
        """Is the peer alive? One DWR, True when a 2001 DWA comes within ``timeout`` s
        (RFC 3539 3.4: a watchdog exchange tests the transport)."""
        if self.state != PeerState.OPEN:
            return False
        try:
            avps = self._base_identity_avps() + [A.make(C.AVP_ORIGIN_STATE_ID, self.local.origin_state_id)]
            dwa = await self.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON, avps, timeout=timeout)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            return False
        return dwa.result_code == C.RESULT_SUCCESS

    async def disconnect(self, cause: int = C.DISCONNECT_REBOOTING, timeout: float = 2.0) -> None:
        """Orderly shutdown: DPR, wait for DPA, close."""
        if self.state == PeerState.OPEN:
            self.state = PeerState.CLOSING
            try:
                avps = self._base_identity_avps() + [A.make(C.AVP_DISCONNECT_CAUSE, cause)]
                await self.request(C.CMD_DISCONNECT_PEER, C.APP_COMMON, avps, timeout=timeout)
            except (asyncio.TimeoutError, ConnectionError, OSError) as exc:
                log.info("no DPA from %s: %s", self.remote_host, exc)
        self._finish()

    # -------------------------------------------------------------- input
    async def run(self) -> None:
        """Read loop; returns when the connection is over. Never raises."""
        try:
            while self.state != PeerState.CLOSED:
                data = await self._read_message()
                if data is None:
                    break
                await self._handle_bytes(data)
        except asyncio.CancelledError:
            pass
        except Exception:  # the last line of defence: count, log, close, keep the server up
            self.counters.inc("internal_errors")
            log.exception("unexpected error on connection %s", self.label)
        finally:
            self._finish()

    async def _read_message(self) -> bytes | None:
        """Next complete message from the stream, or None when the connection must end.

        Reads in large chunks into ``_rbuf`` and cuts messages out of it, so a busy
        connection costs one read per burst, not two awaited reads per message.
        Deadlines are absolute: the CER must be complete ``cer_timeout`` seconds
        after accept, and a message must be complete ``body_timeout`` seconds
        after its first byte (a trickling peer cannot hold the socket forever)."""
        buf = self._rbuf
        while True:
            if len(buf) >= 4:
                try:
                    length = check_length_word(bytes(buf[:4]))
                except MalformedMessage as exc:
                    await self._framing_lost(exc)
                    return None
                if len(buf) >= length:
                    data = bytes(buf[:length])
                    del buf[:length]
                    return data
            if self.state == PeerState.WAIT_CER:
                deadline: float | None = self._accepted_at + self.cer_timeout
            elif buf:
                deadline = self._partial_since + self.body_timeout
            else:
                deadline = None
            try:
                if deadline is None:
                    chunk = await self.reader.read(_READ_CHUNK)
                else:
                    chunk = await asyncio.wait_for(self.reader.read(_READ_CHUNK),
                                                   max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                if self.state == PeerState.WAIT_CER:
                    self.counters.inc("cer_timeouts")
                    log.info("%s: no CER within %.1fs; closing", self.label, self.cer_timeout)
                else:
                    self.counters.inc("malformed")
                    self.counters.inc("malformed_truncated")
                    log.warning("%s: message not complete within %.1fs; closing", self.label,
                                self.body_timeout)
                return None
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                if buf:
                    self.counters.inc("malformed")
                    self.counters.inc("malformed_truncated")
                return None
            if not buf:
                self._partial_since = time.monotonic()
            buf += chunk

    async def _framing_lost(self, exc: MalformedMessage) -> None:
        """Bad version/length: we can't find the next message. Answer if the bytes
        we have look like a request header, then close (RFC 6733 7.1.5)."""
        self.counters.inc("malformed")
        self.counters.inc("malformed_framing")
        log.warning("%s: %s; closing connection", self.label, exc.reason)
        self.xlog.record("malformed", peer=self.remote_host or self.label, reason=exc.reason)
        if len(self._rbuf) < C.HEADER_LEN:
            try:
                self._rbuf += await asyncio.wait_for(self.reader.read(C.HEADER_LEN), 0.2)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                pass
        data = bytes(self._rbuf[:C.HEADER_LEN])
        # A request is answered in any state (a CER of version 2 gets its 5011 too).
        if len(data) >= C.HEADER_LEN and self.state != PeerState.CLOSED:
            h = parse_header(data)
            if h.is_request:
                req = Message(h, [], data)
                try:
                    await self.answer(req, exc.result_code, error_message=exc.reason)
                except (ConnectionError, OSError):
                    pass

    async def _handle_bytes(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        try:
            msg = decode(data)
        except MalformedMessage as exc:
            self.counters.inc("malformed")
            h = parse_header(data)
            name = command_name(h.code, h.is_request)
            self._malformed_logged += 1
            log.log(logging.WARNING if self._malformed_logged <= _MALFORMED_WARNINGS else logging.DEBUG,
                    "%s: malformed %s: %s", self.label, name, exc.reason)
            self.xlog.record("malformed", peer=self.remote_host or self.label, cmd=name,
                             reason=exc.reason, result_code=exc.result_code)
            if h.is_request:
                await self.answer(Message(h, [], data), exc.result_code, error_message=exc.reason,
                                  failed_avp=exc.failed_avp)
            if exc.framing_lost or self.state != PeerState.OPEN:
                self.abort("malformed message before/without framing")
            return
        self.counters.inc(counter_name("rx", msg.code, msg.is_request))
        extra: dict[str, Any] = {}
        if not msg.is_request:
            extra["result_code"] = msg.result_code
        self._record("rx", msg.name, msg.header.hop_by_hop, msg.header.end_to_end, **extra)
        if msg.is_request:
            await self._handle_request(msg)
        else:
            self._handle_answer(msg)

    def _handle_answer(self, msg: Message) -> None:
        fut = self._pending.get(msg.header.hop_by_hop)
        if fut is None or fut.done():
            self.counters.inc("unmatched_answers")
            log.info("%s: answer %s with unknown hop-by-hop %08x dropped", self.label, msg.name,
                     msg.header.hop_by_hop)
            return
        if msg.code == C.CMD_DEVICE_WATCHDOG:
            self.last_dwa = time.monotonic()
        fut.set_result(msg)

    async def _handle_request(self, msg: Message) -> None:
        code, app = msg.code, msg.header.app_id
        proxiable = C.PROXIABLE_COMMANDS.get((app, code))
        if proxiable is not None and proxiable != bool(msg.header.flags & C.FLAG_PROXIABLE):
            self.counters.inc("invalid_hdr_bits")
            await self.answer(msg, C.RESULT_INVALID_HDR_BITS,
                              error_message=f"P bit must be {'set' if proxiable else 'clear'} in {msg.name}")
            if self.state == PeerState.WAIT_CER:
                self.abort(f"{msg.name} with wrong P bit before capabilities exchange")
            return
        unknown_m = first_unknown_mandatory(msg.avps)
        if code == C.CMD_CAPABILITIES_EXCHANGE:
            if unknown_m is not None:
                self.counters.inc("avp_unsupported")
                await self._reject_cer(msg, C.RESULT_AVP_UNSUPPORTED, "unsupported mandatory AVP",
                                       unknown_m)
                return
            await self._on_cer(msg)
            return
        if self.state not in (PeerState.OPEN, PeerState.CLOSING):
            self.counters.inc("requests_before_cer")
            await self.answer(msg, C.RESULT_UNKNOWN_PEER, error_message="capabilities exchange first")
            self.abort(f"{msg.name} before capabilities exchange")
            return
        if unknown_m is not None:
            self.counters.inc("avp_unsupported")
            await self.answer(msg, C.RESULT_AVP_UNSUPPORTED, failed_avp=unknown_m)
            return
        if code == C.CMD_DEVICE_WATCHDOG:
            self._note_state_id(msg)
            await self.answer(msg, C.RESULT_SUCCESS,
                              [A.make(C.AVP_ORIGIN_STATE_ID, self.local.origin_state_id)])
            return
        if code == C.CMD_DISCONNECT_PEER:
            cause = msg.integer(C.AVP_DISCONNECT_CAUSE)
            self.disconnect_cause = cause
            self.state = PeerState.CLOSING
            await self.answer(msg, C.RESULT_SUCCESS)
            log.info("peer %s disconnects (cause %s)", self.remote_host, cause)
            # The DPR sender closes; close ourselves if it doesn't.
            asyncio.get_running_loop().call_later(2.0, self._finish)
            return
        handler = self.handlers.get((app, code))
        if handler is None:
            if app != C.APP_COMMON and app not in self.local.auth_application_ids:
                self.counters.inc("unsupported_application")
                await self.answer(msg, C.RESULT_APPLICATION_UNSUPPORTED)
            else:
                self.counters.inc("unknown_command")
                await self.answer(msg, C.RESULT_COMMAND_UNSUPPORTED,
                                  error_message=f"command {code} not supported")
            return
        if msg.header.flags & C.FLAG_RETRANSMIT and self.remote_host:
            cached = self.answer_cache.get((self.remote_host, msg.header.end_to_end))
            if cached is not None:
                self.counters.inc("duplicates_answered_from_cache")
                self.writer.write(cached)
                await self.writer.drain()
                return
        # Bounded work per connection: with max_inflight requests being handled the
        # read loop waits here, so a peer that floods requests meets TCP backpressure.
        if self._inflight.locked():
            self.counters.inc("inflight_limit_reached")
        await self._inflight.acquire()
        self._spawn(self._run_handler(handler, msg))

    def _note_state_id(self, msg: Message) -> None:
        """RFC 6733 8.16: a new Origin-State-Id means the peer restarted (its state is gone)."""
        try:
            sid = msg.integer(C.AVP_ORIGIN_STATE_ID)
        except ValueError:
            return
        if sid is not None and self.remote_state_id is not None and sid != self.remote_state_id:
            self.counters.inc("peer_restarts")
            log.info("peer %s restarted (Origin-State-Id %d -> %d)", self.remote_host,
                     self.remote_state_id, sid)
        if sid is not None:
            self.remote_state_id = sid

    async def _run_handler(self, handler: RequestHandler, msg: Message) -> None:
        try:
            await self._handle_with(handler, msg)
        finally:
            self._inflight.release()

    async def _handle_with(self, handler: RequestHandler, msg: Message) -> None:
        try:
            rc, avp_list, err = await handler(self, msg)
        except MalformedMessage as exc:  # handler found a bad value
            self.counters.inc("malformed")
            self.counters.inc("malformed_values")
            try:
                await self.answer(msg, exc.result_code, error_message=exc.reason,
                                  failed_avp=exc.failed_avp)
            except (ConnectionError, OSError):
                pass
            return
        except Exception as exc:
            self.counters.inc("internal_errors")
            log.exception("handler for %s failed", msg.name)
            rc, avp_list, err = C.RESULT_UNABLE_TO_COMPLY, [], f"internal error: {type(exc).__name__}"
        try:
            await self.answer(msg, rc, avp_list, error_message=err, cacheable=True)
        except (ConnectionError, OSError):
            self.counters.inc("answers_lost")

    async def _reject_cer(self, msg: Message, result_code: int, reason: str,
                          failed_avp: bytes | None = None) -> None:
        """CEA with a failure Result-Code (our capabilities included), then close
        unless this CER came on an already open connection (RFC 6733 5.3)."""
        self.counters.inc("cer_rejected")
        log.info("%s: CER rejected with %d: %s", self.label, result_code, reason)
        try:
            await self.answer(msg, result_code, error_message=reason, failed_avp=failed_avp)
        except (ConnectionError, OSError):
            pass
        if self.state != PeerState.OPEN:
            self.abort(f"CER rejected ({result_code})")

    async def _on_cer(self, msg: Message) -> None:
        for code in (C.AVP_ORIGIN_HOST, C.AVP_ORIGIN_REALM, C.AVP_HOST_IP_ADDRESS,
                     C.AVP_VENDOR_ID, C.AVP_PRODUCT_NAME):
            if msg.find(code) is None:
                example = A.make(code, 0 if A.fixed_data_length(code) else b"").encode()
                await self._reject_cer(msg, C.RESULT_MISSING_AVP, f"missing {A.avp_name(code)}",
                                       example)
                return
        try:
            self._learn_capabilities(msg)
        except MalformedMessage as exc:
            await self._reject_cer(msg, exc.result_code, exc.reason, exc.failed_avp)
            return
        isi = [A.as_int(a) for a in msg.find_all(C.AVP_INBAND_SECURITY_ID)]
        if isi and C.NO_INBAND_SECURITY not in isi:
            # We speak clear TCP only; a peer that insists on TLS has nothing in common.
            await self._reject_cer(msg, C.RESULT_NO_COMMON_SECURITY, "no common security mechanism")
            return
        ours = set(self.local.auth_application_ids)
        if C.APP_RELAY not in self.remote_apps and not (ours & self.remote_apps):
            await self._reject_cer(msg, C.RESULT_NO_COMMON_APPLICATION, "no common application")
            return
        was_open = self.state == PeerState.OPEN
        if not was_open and self.admit is not None:
            verdict = await self.admit(self)
            if verdict is not None:
                await self._reject_cer(msg, verdict[0], verdict[1])
                return
        await self.answer(msg, C.RESULT_SUCCESS)
        if not was_open:
            self._enter_open()

    def _learn_capabilities(self, msg: Message) -> None:
        """Take the peer's identity and applications from a CER/CEA.

        Raises MalformedMessage 5004 (DIAMETER_INVALID_AVP_VALUE) naming the AVP
        whose value does not decode (text not UTF-8, Address of no known family)."""
        current: A.Avp | None = None
        try:
            for current in msg.find_all(C.AVP_HOST_IP_ADDRESS):
                A.as_address(current)
            for code in (C.AVP_ORIGIN_HOST, C.AVP_ORIGIN_REALM, C.AVP_PRODUCT_NAME):
                current = msg.find(code)
                if current is not None:
                    A.as_text(current)
            current = None
            host = msg.text(C.AVP_ORIGIN_HOST)
            if not host:
                current = msg.find(C.AVP_ORIGIN_HOST)
                raise ValueError("empty Origin-Host")
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"invalid value: {exc}", C.RESULT_INVALID_AVP_VALUE,
                                   failed_avp=current.encode() if current is not None else None) from exc
        self.remote_host = host
        self.remote_realm = msg.text(C.AVP_ORIGIN_REALM)
        self.remote_product = msg.text(C.AVP_PRODUCT_NAME)
        self.remote_state_id = msg.integer(C.AVP_ORIGIN_STATE_ID)
        apps: set[int] = set()
        for code in (C.AVP_AUTH_APPLICATION_ID, C.AVP_ACCT_APPLICATION_ID):
            apps.update(A.as_int(a) for a in msg.find_all(code))
        for vsa in msg.find_all(C.AVP_VENDOR_SPECIFIC_APPLICATION_ID):
            for child in A.children(vsa):
                if child.code in (C.AVP_AUTH_APPLICATION_ID, C.AVP_ACCT_APPLICATION_ID) and child.vendor == 0:
                    apps.add(A.as_int(child))
        self.remote_apps = apps

    # ------------------------------------------------------------ watchdog
    async def _watchdog(self) -> None:
        """RFC 3539: DWR after Tw of silence; no answer within Tw: connection down."""
        try:
            while self.state == PeerState.OPEN:
                jitter = random.uniform(-1.0, 1.0) * min(2.0, self.tw * 0.1)
                due = self.last_rx + self.tw + jitter
                now = time.monotonic()
                if now < due:
                    await asyncio.sleep(due - now)
                    continue
                if self.state != PeerState.OPEN:
                    return
                try:
                    avps = self._base_identity_avps() + [
                        A.make(C.AVP_ORIGIN_STATE_ID, self.local.origin_state_id)]
                    dwa = await self.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON, avps,
                                             timeout=self.tw)
                    if dwa.result_code != C.RESULT_SUCCESS:
                        log.warning("%s: DWA Result-Code %s", self.remote_host, dwa.result_code)
                except asyncio.TimeoutError:
                    self.counters.inc("watchdog_failures")
                    log.warning("peer %s: no DWA within Tw=%.1fs; connection down",
                                self.remote_host, self.tw)
                    self._finish()
                    return
                except (ConnectionError, OSError):
                    return
        except asyncio.CancelledError:
            return


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


def _failed_avp(offending: bytes) -> A.Avp:
    """Failed-AVP grouping the offending AVP's bytes (RFC 6733 section 7.5).

    Built from raw bytes because the offending AVP may be one we can't parse."""
    return A.Avp(C.AVP_FAILED_AVP, C.AVP_FLAG_MANDATORY, 0, offending + b"\x00" * (-len(offending) % 4))


def first_unknown_mandatory(avps: list[A.Avp]) -> bytes | None:
    """The first AVP with the M bit that no dictionary knows, at any depth, as the
    contents of a Failed-AVP: the AVP itself, or the Grouped AVPs around it holding
    only the path to it (RFC 6733 sections 4.4 and 7.5: an unrecognised M-bit AVP
    inside a Grouped AVP is answered like one at the top level)."""
    for a in avps:
        if a.flags & C.AVP_FLAG_MANDATORY and A.definition(a.code, a.vendor) is None:
            return a.encode()
        if a.children:
            inner = first_unknown_mandatory(a.children)
            if inner is not None:
                return A.Avp(a.code, a.flags, a.vendor, inner).encode()
    return None
