"""DIAMETER benchmark: AA round trip and AA/s against a plain TCP echo of the same bytes.

Why an echo as the floor (issue 14, part 3: "a DIAMETER path that costs less than
the network"): a Python asyncio TCP echo server on the same loopback, fed the
very bytes of one AA-Request and answering as many bytes, is what a server
costs that does nothing; the ratio of the two says what DIAMETER itself adds.

Both servers run as their own process (the standalone ``python3 -m
testbed.diameter`` with an exchange log, as the MSM runs it; the echo from this
module), the clients in the caller's process:
- round trip: one client (our ``DiameterClient``), ``n`` sequential AA-Requests;
  the echo: one connection, ``n`` sequential sends of the same AAR bytes;
- throughput: ``clients`` concurrent connections (10 ``DiameterClient`` with
  their own Origin-Host), each sending its next AA-Request as soon as its answer
  is in, for ``duration_s``; answers counted, errors = requests without a 2001
  answer (timeouts, closed connections, other Result-Codes).
Rounds alternate echo and DIAMETER so a busy moment of the machine hits both;
results are medians over ``rounds`` (>= 5).

``python3 -m testbed.diameter.bench`` prints the JSON; ``testbed bench --only
diameter`` puts it into results/bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from . import constants as C
from .client import DiameterClient, DiameterUnavailable
from .message import encode
from .nasreq import build_aar
from .peer import LocalIdentity
from .static_backend import compute_authenticator

REALM = "home.example"
NODE = "mn1.home.example"
SECRET = "bench-secret"
HELLO = b"AODV RREP with AUTH extension, as a sink forwards it" * 2
ROUTES = ["0.0.0.0/0 10.1.0.254 10", "10.1.0.0/16 0.0.0.0 1"]
FILTERS = ["permit in ip from assigned to 10.1.0.0/16", "permit out ip from 10.1.0.0/16 to assigned"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_listening(port: int, exit_code: Callable[[], int | None] = lambda: None,
                         timeout: float = 15.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts TCP; RuntimeError when the server's
    ``exit_code()`` says it ended or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exit_code() is not None:
            raise RuntimeError(f"server for port {port} exited with {exit_code()}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"benchmark server not listening on port {port} after {timeout}s")


@contextlib.asynccontextmanager
async def _process(argv: list[str], port: int, log_path: Path) -> AsyncIterator[None]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        await wait_listening(port, proc.poll)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _server_config(tmp: Path, port: int) -> Path:
    cfg = {"origin_host": "msm.home.example", "origin_realm": REALM, "listen": "127.0.0.1",
           "port": port, "tw": 30, "status_file": str(tmp / "server.json"),
           "exchange_log": str(tmp / "server-exchanges.jsonl"), "log_level": "INFO",
           "defaults": {"routes": ROUTES, "filters": FILTERS},
           "users": {NODE: {"secret": SECRET}}}
    path = tmp / "server.json.cfg.json"
    path.write_text(json.dumps(cfg))
    return path


def aar_bytes() -> bytes:
    """One AA-Request as the benchmark's clients send it (the echo's payload)."""
    _, avps = build_aar(origin_host="msr1.home.example", origin_realm=REALM, destination_realm=REALM,
                        identity=NODE, auth_request_type=C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE,
                        authenticator=compute_authenticator(SECRET, HELLO), authenticated_data=HELLO,
                        node_address="10.1.0.5", nas_identifier="msr1.home.example")
    return encode(C.CMD_AA, request=True, app_id=C.APP_NASREQ, hop_by_hop=1, end_to_end=1,
                  avp_list=avps, proxiable=True)


# ------------------------------------------------------------------- echo server
class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def _echo_forever(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# -------------------------------------------------------------------- clients
class _EchoClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes):
        self.reader, self.writer, self.payload = reader, writer, payload

    async def once(self) -> bool:
        self.writer.write(self.payload)
        await self.reader.readexactly(len(self.payload))
        return True

    async def close(self) -> None:
        self.writer.close()


class _AAClient:
    def __init__(self, client: DiameterClient):
        self.client = client
        self.authenticator = compute_authenticator(SECRET, HELLO)

    async def once(self) -> bool:
        ans = await self.client.authenticate(NODE, self.authenticator, authenticated_data=HELLO,
                                             node_address="10.1.0.5", timeout=5.0)
        return ans.result_code == C.RESULT_SUCCESS

    async def close(self) -> None:
        await self.client.stop()


async def _echo_clients(port: int, n: int) -> list[_EchoClient]:
    payload = aar_bytes()
    out = []
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out.append(_EchoClient(r, w, payload))
    return out


async def _aa_clients(port: int, n: int) -> list[_AAClient]:
    out = []
    for i in range(n):
        c = DiameterClient(LocalIdentity(f"msr{i + 1}.home.example", REALM), "127.0.0.1", port,
                           destination_realm=REALM, tc=0.5)
        await c.start()
        if not await c.wait_open(5.0):
            raise RuntimeError(f"benchmark client could not open: {c.last_error}")
        out.append(_AAClient(c))
    return out


def _pct(sorted_s: list[float], q: float) -> float:
    return sorted_s[min(len(sorted_s) - 1, int(q * len(sorted_s)))]


async def _timed(c: Any) -> tuple[float, bool]:
    """(seconds, answered with success) of one request of client ``c``."""
    t = time.perf_counter()
    try:
        ok = await c.once()
    except (DiameterUnavailable, ConnectionError, asyncio.IncompleteReadError):
        ok = False
    return time.perf_counter() - t, ok


async def _round_trip(clients: list[Any], n: int) -> dict[str, float]:
    c = clients[0]
    for _ in range(min(50, n)):  # warm up: caches, TCP windows
        await c.once()
    samples, errors = [], 0
    for _ in range(n):
        dt, ok = await _timed(c)
        samples.append(dt)
        errors += not ok
    s = sorted(samples)
    return {"median_ms": statistics.median(s) * 1000, "p99_ms": _pct(s, 0.99) * 1000,
            "errors": errors}


async def _throughput(clients: list[Any], duration_s: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def loop(c: Any) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            dt, ok = await _timed(c)
            latencies.append(dt)
            errors += not ok

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in clients))
    elapsed = time.perf_counter() - t0
    s = sorted(latencies)
    return {"per_s": (len(s) - errors) / elapsed, "requests": len(s), "errors": errors,
            "p50_ms": statistics.median(s) * 1000, "p99_ms": _pct(s, 0.99) * 1000}


async def _measure(make_clients: Callable[[int], Any], port: int, n: int, clients: int,
                   duration_s: float) -> dict[str, dict[str, float]]:
    single = await make_clients(1)
    try:
        rt = await _round_trip(single, n)
    finally:
        for c in single:
            await c.close()
    many = await make_clients(clients)
    try:
        tp = await _throughput(many, duration_s)
    finally:
        for c in many:
            await c.close()
    return {"round_trip": rt, "throughput": tp}


def _median_of(rounds: list[dict[str, dict[str, float]]], part: str, key: str) -> float:
    return round(statistics.median(r[part][key] for r in rounds), 3)


async def run(rounds: int = 5, n: int = 500, clients: int = 10, duration_s: float = 3.0,
              say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Measure; returns the JSON-ready result (milliseconds, answers per second)."""
    tmp = Path(tempfile.mkdtemp(prefix="tb-diameter-bench-"))
    d_port, e_port = _free_port(), _free_port()
    server_argv = [sys.executable, "-m", "testbed.diameter", "--config", str(_server_config(tmp, d_port))]
    echo_argv = [sys.executable, "-m", "testbed.diameter.bench", "--echo-server", str(e_port)]
    echo_rounds: list[dict[str, dict[str, float]]] = []
    aa_rounds: list[dict[str, dict[str, float]]] = []
    async with _process(server_argv, d_port, tmp / "server.log"), \
            _process(echo_argv, e_port, tmp / "echo.log"):
        for i in range(rounds):
            say(f"diameter bench round {i + 1}/{rounds}: TCP echo")
            echo_rounds.append(await _measure(lambda k: _echo_clients(e_port, k), e_port, n,
                                              clients, duration_s))
            say(f"diameter bench round {i + 1}/{rounds}: AA-Request/Answer")
            aa_rounds.append(await _measure(lambda k: _aa_clients(d_port, k), d_port, n,
                                            clients, duration_s))
    aa_rt, echo_rt = _median_of(aa_rounds, "round_trip", "median_ms"), \
        _median_of(echo_rounds, "round_trip", "median_ms")
    aa_tp, echo_tp = _median_of(aa_rounds, "throughput", "per_s"), \
        _median_of(echo_rounds, "throughput", "per_s")
    return {
        "rounds": rounds, "sequential_requests": n, "concurrent_clients": clients,
        "duration_s": duration_s, "message_bytes": len(aar_bytes()),
        "aa_round_trip_median_ms": aa_rt,
        "aa_round_trip_p99_ms": _median_of(aa_rounds, "round_trip", "p99_ms"),
        "aa_per_s": aa_tp,
        "aa_concurrent_p50_ms": _median_of(aa_rounds, "throughput", "p50_ms"),
        "aa_concurrent_p99_ms": _median_of(aa_rounds, "throughput", "p99_ms"),
        "aa_errors": sum(int(r["throughput"]["errors"] + r["round_trip"]["errors"]) for r in aa_rounds),
        "echo_round_trip_median_ms": echo_rt,
        "echo_round_trip_p99_ms": _median_of(echo_rounds, "round_trip", "p99_ms"),
        "echo_per_s": echo_tp,
        "ratio_round_trip": round(aa_rt / echo_rt, 3),
        "ratio_per_s": round(aa_tp / echo_tp, 3),
        "aims": {"aa_round_trip_median_ms": 3.0, "aa_per_s": 1000, "aa_errors": 0},
        "samples": {"aa": aa_rounds, "echo": echo_rounds},
    }


def bench(say: Callable[[str], None] = print) -> dict[str, Any]:
    """Entry point for ``testbed bench`` (orchestration/bench.py)."""
    return asyncio.run(run(say=say))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=500, help="sequential requests per round")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of load per round")
    ap.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo_server:
        asyncio.run(_echo_forever(args.echo_server))
        return
    result = asyncio.run(run(args.rounds, args.n, args.clients, args.duration,
                             say=lambda s: print(s, file=sys.stderr)))
    result.pop("samples")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
