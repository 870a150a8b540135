"""Interop with Debian's freeDiameter (issue 5): a real, independent DIAMETER stack.

One freeDiameterd run (loopback only, TCP without TLS, free ports) exercises both
directions at once:
- freeDiameter connects to our server (its ConnectPeer) -> CER/CEA; our server's
  watchdog (short Tw) sends DWR that freeDiameter answers; then our Tw is raised
  so freeDiameter's own watchdog (TwTimer 6 s, its minimum) sends DWR to us; on
  SIGTERM freeDiameter sends DPR and we answer DPA.
- our client (a sink) connects to freeDiameter -> CER/CEA, DWR/DWA.
freeDiameter's log must show both peers reaching STATE_OPEN and no message of
ours discarded as invalid.

Host setup: needs the ``freediameter`` Debian package; when it is missing and
we are root the fixture installs it with apt-get (CI hosts must allow that, or
install it beforehand).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from diameter_testkit import make_backend
from testbed.diameter import constants as C
from testbed.diameter.client import DiameterClient
from testbed.diameter.peer import LocalIdentity
from testbed.diameter.server import DiameterServer

pytestmark = pytest.mark.timeout(90)

FD_HOST = "fd.test.example"
MSM_HOST = "msm.test.example"
MSR_HOST = "msr.test.example"
REALM = "test.example"
FD_TW = 6  # freeDiameter refuses TwTimer below 6 s


def _ensure_freediameter() -> str:
    exe = shutil.which("freeDiameterd")
    if exe:
        return exe
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "freediameter"],
                           capture_output=True, text=True, env=env, timeout=300)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=300)
            subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "freediameter"],
                           capture_output=True, env=env, timeout=300)
        exe = shutil.which("freeDiameterd")
    if not exe:
        pytest.fail("freeDiameterd not found and could not be installed: the host setup must "
                    "install Debian's 'freediameter' package")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """freeDiameter insists on TLS credentials even when every peer is No_TLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FD_HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "fd-cert.pem", directory / "fd-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def fd_base_config(directory: Path, fd_port: int, realm: str = REALM) -> str:
    """The part of a freeDiameter.conf every test run shares: identity FD_HOST,
    loopback TCP only, the TLS credentials freeDiameter insists on."""
    cert, key = _self_signed(directory)
    return f"""
Identity = "{FD_HOST}";
Realm = "{realm}";
Port = {fd_port};
SecPort = {_free_port()};
ListenOn = "127.0.0.1";
No_SCTP;
No_IPv6;
TLS_Cred = "{cert}", "{key}";
TLS_CA = "{cert}";
"""


def _fd_config(directory: Path, fd_port: int, server_port: int) -> Path:
    conf = directory / "freeDiameter.conf"
    conf.write_text(fd_base_config(directory, fd_port) + f"""
TwTimer = {FD_TW};
TcTimer = 30;
ConnectPeer = "{MSM_HOST}" {{ ConnectTo = "127.0.0.1"; No_TLS; Port = {server_port}; }};
ConnectPeer = "{MSR_HOST}" {{ ConnectTo = "127.0.0.1"; No_TLS; Port = {_free_port()}; }};
""")
    return conf


@dataclass
class InteropRun:
    fd_log: str = ""
    fd_returncode: int | None = None
    server_counters: dict[str, int] = field(default_factory=dict)
    client_counters: dict[str, int] = field(default_factory=dict)
    server_dwa_seen_at: float | None = None
    fd_dwr_seen_at: float | None = None
    fd_peer: dict[str, Any] = field(default_factory=dict)
    client_peer: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


async def _until(pred, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


async def _interop(exe: str, tmp: Path) -> InteropRun:
    out = InteropRun()
    t0 = time.monotonic()
    server = DiameterServer(LocalIdentity(MSM_HOST, REALM), make_backend(), host="127.0.0.1",
                            port=0, tw=1.0, exchange_log_path=str(tmp / "server.jsonl"))
    await server.start()
    fd_port = _free_port()
    conf = _fd_config(tmp, fd_port, server.port)
    log_path = tmp / "freeDiameterd.log"
    log_fh = open(log_path, "wb")
    proc = await asyncio.create_subprocess_exec(exe, "-c", str(conf), stdout=log_fh,
                                                stderr=subprocess.STDOUT)
    client: DiameterClient | None = None
    try:
        fd_open = lambda: [p for p in server.open_peers() if p.remote_host == FD_HOST]  # noqa: E731
        assert await _until(lambda: bool(fd_open()), 10.0), "freeDiameter never opened to our server"
        peer = fd_open()[0]
        out.fd_peer = peer.describe()
        # Our watchdog first: Tw=1 s, freeDiameter must answer our DWR.
        assert await _until(lambda: server.counters.get("rx_DWA") >= 1, 4.0), "no DWA from freeDiameter"
        out.server_dwa_seen_at = time.monotonic() - t0
        # Now let freeDiameter's own watchdog fire: silence ours.
        peer.tw = 60.0
        client = DiameterClient(LocalIdentity(MSR_HOST, REALM), "127.0.0.1", fd_port,
                                destination_realm=REALM, tw=1.0, tc=0.5)
        await client.start()
        assert await client.wait_open(8.0), f"our client could not open to freeDiameter: {client.last_error}"
        out.client_peer = client.peer.describe() if client.peer else {}
        assert await _until(lambda: server.counters.get("rx_DWR") >= 1, FD_TW + 6.0), \
            "freeDiameter never sent a DWR"
        out.fd_dwr_seen_at = time.monotonic() - t0
        await _until(lambda: client.counters.get("rx_DWA") >= 2, 3.0)
        await client.stop()
        proc.send_signal(signal.SIGTERM)  # freeDiameter says goodbye with DPR
        await _until(lambda: server.counters.get("tx_DPA") >= 1, 5.0)
        try:
            out.fd_returncode = await asyncio.wait_for(proc.wait(), 20.0)
        except asyncio.TimeoutError:
            pass
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log_fh.close()
        if client is not None and client._running:
            await client.stop()
        out.server_counters = server.counters.snapshot()
        out.client_counters = client.counters.snapshot() if client else {}
        await server.stop()
        out.fd_log = log_path.read_text(errors="replace")
        out.elapsed_s = time.monotonic() - t0
    return out


@pytest.fixture(scope="module")
def interop(tmp_path_factory) -> InteropRun:
    exe = _ensure_freediameter()
    return asyncio.run(_interop(exe, tmp_path_factory.mktemp("freediameter")))


def test_freediameter_opens_to_our_server(interop):
    c = interop.server_counters
    assert c.get("rx_CER") == 1 and c.get("tx_CEA") == 1, c
    assert interop.fd_peer["origin_host"] == FD_HOST and interop.fd_peer["state"] == "OPEN"
    assert C.APP_RELAY in interop.fd_peer["applications"]
    assert re.search(rf"'STATE_WAITCEA'\s+-> 'STATE_OPEN'\s+'{re.escape(MSM_HOST)}'", interop.fd_log), \
        interop.fd_log[-3000:]


def test_watchdog_both_directions(interop):
    c = interop.server_counters
    assert c.get("tx_DWR", 0) >= 1 and c.get("rx_DWA", 0) >= 1, c  # ours, answered by freeDiameter
    assert c.get("rx_DWR", 0) >= 1 and c.get("tx_DWA", 0) >= 1, c  # freeDiameter's, answered by us
    assert c.get("watchdog_failures", 0) == 0


def test_freediameter_disconnects_with_dpr(interop):
    c = interop.server_counters
    assert c.get("rx_DPR") == 1 and c.get("tx_DPA") == 1, c
    assert interop.fd_returncode == 0, interop.fd_log[-2000:]


def test_our_client_opens_to_freediameter(interop):
    cc = interop.client_counters
    assert cc.get("tx_CER", 0) >= 1 and cc.get("rx_CEA", 0) >= 1, cc
    assert cc.get("tx_DWR", 0) >= 1 and cc.get("rx_DWA", 0) >= 1, cc
    assert interop.client_peer.get("origin_host") == FD_HOST
    assert re.search(rf"-> 'STATE_OPEN'\s+'{re.escape(MSR_HOST)}'", interop.fd_log), interop.fd_log[-3000:]


def test_freediameter_found_nothing_to_complain_about(interop):
    bad = [line for line in interop.fd_log.splitlines()
           if "discarded" in line.lower() or "invalid" in line.lower()]
    assert not bad, "\n".join(bad[:20])
    assert interop.server_counters.get("malformed", 0) == 0
    assert interop.elapsed_s < 30.0
