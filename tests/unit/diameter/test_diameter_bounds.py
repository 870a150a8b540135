"""State an unauthenticated peer cannot grow (issue 11, section 4), by bounded floods on loopback.

Each test floods one kind of state and asserts it stays under its bound; the
same flood with the bound lifted is the negative control (it does grow), so
the assertion measures the bound and not the flood's size. Places and bounds:
- connections that never send CER: ``max_connections`` at once, closed after
  ``cer_timeout`` (sockets, fds and peers return to the baseline);
- per-peer tables keyed by the peer-chosen Origin-Host (``by_host``, ``peers``):
  at most ``max_connections``;
- requests of one connection being handled (tasks holding messages): at most
  ``max_inflight``, after which reading stops (TCP backpressure); the
  retransmission answer cache keyed by (Origin-Host, End-to-End id): 1024;
- counters keyed by peer-chosen command codes: one ``rx_other``;
- the exchange log file: rotated at ``max_bytes``.
The server keeps no session table (Auth-Session-State NO_STATE_MAINTAINED).
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from diameter_testkit import NODE, REALM, SECRET, RawPeer, client_of, make_backend, run, serving
from testbed.diameter import avps as A
from testbed.diameter import constants as C
from testbed.diameter.exchange_log import ExchangeLog
from testbed.diameter.nasreq import build_aar
from testbed.diameter.static_backend import compute_authenticator

pytestmark = pytest.mark.timeout(90)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _idle_flood(max_connections: int, cer_timeout: float, n: int = 150):
    async with serving(make_backend(), max_connections=max_connections,
                       cer_timeout=cer_timeout) as server:
        threads0, fds0 = threading.active_count(), _fds()
        socks = []
        peak = 0
        for _ in range(n):
            socks.append(await asyncio.open_connection("127.0.0.1", server.port))
            await asyncio.sleep(0)
            peak = max(peak, len(server.peers))
        for _ in range(20):  # let the server accept what is queued
            await asyncio.sleep(0.01)
            peak = max(peak, len(server.peers))
        await asyncio.sleep(1.0)  # > cer_timeout of the capped run
        left = len(server.peers)
        for _, w in socks:
            w.close()
        await asyncio.sleep(0.2)
        after = {"threads": threading.active_count() - threads0, "fds": _fds() - fds0}
        # a real sink still gets in
        async with client_of(server) as client:
            ok = (await client.authenticate(NODE, compute_authenticator(SECRET, NODE.encode()))).ok
        return peak, left, after, ok, server.counters.snapshot()


def test_connections_without_cer_are_capped_and_time_out():
    peak, left, after, ok, c = run(_idle_flood(max_connections=32, cer_timeout=0.5))
    assert peak <= 32 and c["connections_refused"] >= 150 - 32, (peak, c)
    assert left == 0 and c["cer_timeouts"] >= 1
    assert after["threads"] <= 0 and after["fds"] <= 2, after
    assert ok


def test_negative_control_without_cap_and_timeout_the_flood_is_held():
    peak, left, _after, ok, c = run(_idle_flood(max_connections=10_000, cer_timeout=30.0))
    assert peak > 100 and left > 100 and c.get("connections_refused", 0) == 0
    assert ok


async def _origin_host_flood(max_connections: int, n: int = 80):
    async with serving(make_backend(), max_connections=max_connections) as server:
        raws, accepted = [], 0
        for i in range(n):
            raw = await RawPeer.connect(server.port)
            raws.append(raw)
            try:
                await raw.send(raw.cer(f"flood{i}.attacker.example"))
                cea = await raw.recv(timeout=2.0)
            except (ConnectionError, asyncio.IncompleteReadError):
                cea = None
            accepted += bool(cea and cea.result_code == C.RESULT_SUCCESS)
        sizes = (len(server.by_host), len(server.peers))
        for raw in raws:
            raw.close()
        await asyncio.sleep(0.2)
        return accepted, sizes, (len(server.by_host), len(server.peers))


def test_origin_host_tables_are_bounded_by_the_connection_cap():
    accepted, during, after = run(_origin_host_flood(max_connections=16))
    assert accepted == 16 and during[0] <= 16 and during[1] <= 16, (accepted, during)
    assert after == (0, 0)
    # negative control: without the cap every peer-chosen Origin-Host gets an entry
    accepted, during, _ = run(_origin_host_flood(max_connections=10_000))
    assert accepted == 80 and during[0] == 80


class SlowBackend:
    """The static table behind a store that takes 50 ms per decision (async)."""

    def __init__(self) -> None:
        self.inner = make_backend()

    async def authenticate(self, identity, authenticator, context):
        await asyncio.sleep(0.05)
        return self.inner.authenticate(identity, authenticator, context)

    def lookup_certificate(self, identity):
        return self.inner.lookup_certificate(identity)


async def _pipelined_flood(max_inflight: int, n: int = 200):
    async with serving(SlowBackend(), max_inflight=max_inflight) as server:
        raw = await RawPeer.connect(server.port)
        await raw.open("msr9.home.example")
        peer = next(iter(server.peers))
        _, avp_list = build_aar(origin_host="msr9.home.example", origin_realm=REALM,
                                destination_realm=REALM, identity=NODE,
                                auth_request_type=C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE,
                                authenticator=compute_authenticator(SECRET, NODE.encode()))
        burst = b"".join(raw.request(C.CMD_AA, C.APP_NASREQ, avp_list, proxiable=True)
                         for _ in range(n))
        raw.writer.write(burst)  # all of it, never reading: the server must not hold n requests
        peak_tasks = 0
        for _ in range(30):
            await asyncio.sleep(0.01)
            peak_tasks = max(peak_tasks, len(peer._tasks))
        answers = 0
        while answers < n:
            ans = await raw.recv(timeout=10.0)
            assert ans is not None and ans.result_code == C.RESULT_SUCCESS
            answers += 1
        raw.close()
        return peak_tasks, answers, len(server.answer_cache._d), server.counters.snapshot()


def test_pipelined_requests_are_bounded_by_inflight_and_all_answered():
    peak, answers, cached, c = run(_pipelined_flood(max_inflight=8))
    # + the watchdog task of the connection
    assert peak <= 8 + 1 and answers == 200, peak
    assert c["inflight_limit_reached"] >= 1 and c.get("internal_errors", 0) == 0
    assert cached == 200
    # negative control: without the bound the server holds every request at once
    peak, answers, _, _ = run(_pipelined_flood(max_inflight=100_000))
    assert peak > 100 and answers == 200, peak


def test_retransmission_cache_keeps_its_size():
    """Keyed by the peer-chosen (Origin-Host, End-to-End id): the oldest go first."""
    from testbed.diameter.peer import AnswerCache
    cache = AnswerCache(size=1024)
    for i in range(5000):
        cache.put((f"flood{i % 7}.attacker.example", i), b"answer")
    assert len(cache._d) == 1024 and cache.get(("flood0.attacker.example", 0)) is None


def test_peer_chosen_command_codes_do_not_grow_the_counters():
    async def main():
        async with serving(make_backend()) as server:
            raw = await RawPeer.connect(server.port)
            await raw.open()
            before = len(server.counters.snapshot())
            for code in range(10_000, 10_300):
                await raw.send(raw.request(code, C.APP_COMMON, [A.make(C.AVP_ORIGIN_HOST, "raw.home.example"),
                                                                A.make(C.AVP_ORIGIN_REALM, REALM)]))
                assert (await raw.recv()).result_code == C.RESULT_COMMAND_UNSUPPORTED
            raw.close()
            c = server.counters.snapshot()
        assert len(c) - before <= 4, sorted(set(c))
        assert c["rx_other"] == 300 and c["tx_other"] == 300 and c["unknown_command"] == 300
    run(main())


def test_exchange_log_file_is_rotated(tmp_path):
    path = tmp_path / "x.jsonl"
    xlog = ExchangeLog(path, max_bytes=4096)
    for i in range(2000):
        xlog.record("message", dir="rx", cmd="AAR", peer=f"flood{i}.attacker.example")
    xlog.close()
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    assert len(sizes) == 2 and max(sizes) <= 4096 and sum(sizes) > 4096
    assert len(xlog.recent()) == 50
