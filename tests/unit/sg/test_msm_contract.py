"""The SG's portal follower against the real MSM (`python -m testbed.msm`), no root needed.

Checks that both sides agree on the contract: rows keyed by (peer SG public, initiator
private address), and a removal at the portal reaching the SG within 5 s by long-poll; over
HTTPS with the SG's enrolled certificate (mutual TLS, issue 9): another M-VPN's rows are
refused, and deleting a user hands the SG a CRL that lists the user's serial.
"""
from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from testbed.common.enroll import issue_with_local_key
from testbed.sg import revocation
from testbed.sg.portal_follower import PortalError, PortalFollower, PortalTls, fetch_filter

from .netns import REPO, wait_for

import testbed.common.portal_client as msm_client


def _free_port() -> int:
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def real_msm(tmp_path, **extra):
    """A real MSM process on loopback (HTTPS on a free port); yields its operator MsmClient
    (the local operator credential the MSM writes at first start). `extra`: config keys."""
    port = _free_port()
    cfg = {"db_path": str(tmp_path / "msm.db"), "ca_dir": str(tmp_path / "ca"),
           "http_address": "127.0.0.1", "https_port": port, "dns_address": "127.0.0.1",
           "dns_port": _free_port(), "msm_address": "198.51.100.10",
           "status_file": str(tmp_path / "msm.status"), "log_level": "INFO", **extra}
    (tmp_path / "msm.json").write_text(json.dumps(cfg))
    log = open(tmp_path / "msm.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "testbed.msm", "--config", str(tmp_path / "msm.json")],
                            cwd=REPO, stdout=log, stderr=log)
    ca = tmp_path / "ca"
    try:
        def up():
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "msm.log").read_text()[-2000:])
            if not (ca / "operator" / "key.pem").exists():
                return False
            try:
                client = msm_client.MsmClient(f"https://127.0.0.1:{port}", timeout=10, ca_file=str(ca / "ca.pem"),
                                              cert_file=str(ca / "operator" / "cert.pem"),
                                              key_file=str(ca / "operator" / "key.pem"))
                return client if client.version() is not None else False
            except msm_client.MsmError:
                return False
        client = None
        deadline = time.monotonic() + 15
        while not client and time.monotonic() < deadline:
            client = up() or time.sleep(0.1)
        assert client, "MSM up"
        yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def msm(tmp_path):
    with real_msm(tmp_path) as client:
        yield client


def sg_tls(msm, tmp_path, mvpn: str) -> PortalTls:
    """Enrol SG `mvpn` (token + CSR, key made here) and return its portal credentials."""
    doc = issue_with_local_key(msm, mvpn, "sg", key_type="ec")
    d = tmp_path / f"sg-{mvpn}"
    d.mkdir()
    for name, text in (("cert.pem", doc["cert_pem"]), ("key.pem", doc["key_pem"]), ("ca.pem", doc["ca_pem"])):
        (d / name).write_text(text)
    return PortalTls(ca=str(d / "ca.pem"), cert=str(d / "cert.pem"), key=str(d / "key.pem"))


def test_rows_from_real_msm_and_removal_within_5s(msm, tmp_path):
    for name, pub in (("A", "198.51.100.1"), ("B", "198.51.100.2"), ("C", "198.51.100.3"),
                      ("D", "198.51.100.4")):
        msm.add_mvpn(name, "10.0.0.0/24", pub)
    for fqdn, mvpn, addr in (("a.a.example", "A", "10.0.0.5"), ("c.c.example", "C", "10.0.0.5"),
                             ("b.b.example", "B", "10.0.0.7"), ("d.d.example", "D", "10.0.0.9")):
        msm.add_user(fqdn, mvpn, addr)
    msm.add_workgroup("W")
    for fqdn in ("a.a.example", "b.b.example", "c.c.example"):
        msm.add_member("W", fqdn)

    tls = sg_tls(msm, tmp_path, "B")
    with pytest.raises(PortalError, match="HTTP 401"):
        fetch_filter(msm.base_url, "B", tls=PortalTls(ca=tls.ca).context())   # no client certificate
    with pytest.raises(PortalError, match="HTTP 403"):
        fetch_filter(msm.base_url, "A", tls=tls.context())                    # another M-VPN's rows
    version, rows, problems = fetch_filter(msm.base_url, "B", tls=tls.context())
    assert not problems
    keyed = {(r.peer_sg_public, r.initiator_private): r for r in rows}
    assert set(keyed) == {("198.51.100.1", "10.0.0.5"), ("198.51.100.3", "10.0.0.5")}
    assert keyed[("198.51.100.1", "10.0.0.5")].targets == ("10.0.0.7",)
    assert keyed[("198.51.100.1", "10.0.0.5")].initiator_fqdn == "a.a.example"

    c_serial = int(issue_with_local_key(msm, "c.c.example", "mn", key_type="ec")["serial"], 16)
    seen: list[tuple[int, set]] = []
    crls: list[str] = []
    follower = PortalFollower(msm.base_url, "B",
                              lambda v, rs: seen.append((v, {(r.peer_sg_public, r.initiator_private)
                                                             for r in rs})), poll_timeout=20,
                              tls=tls, on_crl=crls.append).start()
    try:
        wait_for(lambda: seen, what="first rows")
        t0 = time.monotonic()
        msm.remove_member("W", "a.a.example")
        wait_for(lambda: seen[-1][1] == {("198.51.100.3", "10.0.0.5")}, timeout=5,
                 what="removal of a reaching the SG")
        assert time.monotonic() - t0 < 5
        assert crls and c_serial not in revocation.revoked_serials(crls[-1])
        msm.delete_user("c.c.example")
        wait_for(lambda: crls and c_serial in revocation.revoked_serials(crls[-1]), timeout=5,
                 what="the CRL naming c's serial reaching the SG")
        assert seen[-1][1] == set()   # c's rows went with it
    finally:
        follower.stop()
