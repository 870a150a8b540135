"""``python3 -m testbed.diameter.bench``: AA round-trip latency on loopback.

Why: the attach time the issue measures (hello to routes installed) contains
one DIAMETER AA round trip; knowing its cost alone (scapy encode/decode on both
ends, backend call, TCP on loopback) tells how much of an attach is DIAMETER.
Prints one JSON object: connection setup (TCP + CER/CEA) time and AA latency
percentiles for success, rejection and certificate fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from .client import DiameterClient
from .peer import LocalIdentity
from .server import DiameterServer
from .static_backend import StaticBackend, StaticUser, compute_authenticator

_PEM = "-----BEGIN CERTIFICATE-----\n" + "A" * 1200 + "\n-----END CERTIFICATE-----\n"


def _summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"n": len(s), "median_ms": round(statistics.median(s) * 1000, 3),
            "p95_ms": round(s[int(0.95 * (len(s) - 1))] * 1000, 3),
            "max_ms": round(s[-1] * 1000, 3)}


async def run(n: int) -> dict[str, object]:
    backend = StaticBackend({"mn1.home.example": StaticUser(secret="s", certificate_pem=_PEM)},
                            ["0.0.0.0/0 10.1.0.254 10", "10.1.0.0/16 0.0.0.0 1"],
                            ["permit in ip from assigned to 10.1.0.0/16",
                             "permit out ip from 10.1.0.0/16 to assigned"])
    server = DiameterServer(LocalIdentity("msm.home.example", "home.example"), backend,
                            host="127.0.0.1", port=0)
    await server.start()
    client = DiameterClient(LocalIdentity("msr1.home.example", "home.example"), "127.0.0.1",
                            server.port, destination_realm="home.example")
    t0 = time.monotonic()
    await client.start()
    await client.wait_open(5.0)
    setup = time.monotonic() - t0
    good = compute_authenticator("s", b"hello")
    ok, rejected, cert = [], [], []
    for _ in range(n):
        ok.append((await client.authenticate("mn1.home.example", good, authenticated_data=b"hello")).latency_s)
        rejected.append((await client.authenticate("mn1.home.example", b"x" * 32,
                                                   authenticated_data=b"hello")).latency_s)
        cert.append((await client.authorize("mn1.home.example", want_certificate=True)).latency_s)
    await client.stop()
    await server.stop()
    return {"connection_setup_ms": round(setup * 1000, 3), "aa_success": _summary(ok),
            "aa_rejected": _summary(rejected), "authorize_with_certificate": _summary(cert)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="requests of each kind")
    print(json.dumps(asyncio.run(run(ap.parse_args().n)), indent=2))


if __name__ == "__main__":
    main()
