"""The SG's portal follower against the real MSM (`python -m testbed.msm`), no root needed.

Checks that both sides agree on the contract: rows keyed by (peer SG public, initiator
private address), and a removal at the portal reaching the SG within 5 s by long-poll.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from testbed.sg.portal_follower import PortalFollower, fetch_filter

from .netns import REPO, wait_for

import testbed.msm.client as msm_client


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


@pytest.fixture
def msm(tmp_path):
    port = _free_port()
    cfg = {"db_path": str(tmp_path / "msm.db"), "ca_dir": str(tmp_path / "ca"),
           "http_address": "127.0.0.1", "http_port": port, "dns_address": "127.0.0.1",
           "dns_port": _free_port(), "msm_address": "198.51.100.10",
           "status_file": str(tmp_path / "msm.status"), "log_level": "INFO"}
    (tmp_path / "msm.json").write_text(json.dumps(cfg))
    log = open(tmp_path / "msm.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "testbed.msm", "--config", str(tmp_path / "msm.json")],
                            cwd=REPO, stdout=log, stderr=log)
    client = msm_client.MsmClient(f"http://127.0.0.1:{port}", timeout=10)
    try:
        def up() -> bool:
            try:
                return client.version() is not None
            except msm_client.MsmError:
                if proc.poll() is not None:
                    raise RuntimeError((tmp_path / "msm.log").read_text()[-2000:]) from None
                return False
        wait_for(up, timeout=15, what="MSM up")
        yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_rows_from_real_msm_and_removal_within_5s(msm):
    for name, pub in (("A", "198.51.100.1"), ("B", "198.51.100.2"), ("C", "198.51.100.3"),
                      ("D", "198.51.100.4")):
        msm.add_mvpn(name, "10.0.0.0/24", pub)
    for fqdn, mvpn, addr in (("a.a.example", "A", "10.0.0.5"), ("c.c.example", "C", "10.0.0.5"),
                             ("b.b.example", "B", "10.0.0.7"), ("d.d.example", "D", "10.0.0.9")):
        msm.add_user(fqdn, mvpn, addr)
    msm.add_workgroup("W")
    for fqdn in ("a.a.example", "b.b.example", "c.c.example"):
        msm.add_member("W", fqdn)

    version, rows, problems = fetch_filter(msm.base_url, "B")
    assert not problems
    keyed = {(r.peer_sg_public, r.initiator_private): r for r in rows}
    assert set(keyed) == {("198.51.100.1", "10.0.0.5"), ("198.51.100.3", "10.0.0.5")}
    assert keyed[("198.51.100.1", "10.0.0.5")].targets == ("10.0.0.7",)
    assert keyed[("198.51.100.1", "10.0.0.5")].initiator_fqdn == "a.a.example"

    seen: list[tuple[int, set]] = []
    follower = PortalFollower(msm.base_url, "B",
                              lambda v, rs: seen.append((v, {(r.peer_sg_public, r.initiator_private)
                                                             for r in rs})), poll_timeout=20).start()
    try:
        wait_for(lambda: seen, what="first rows")
        t0 = time.monotonic()
        msm.remove_member("W", "a.a.example")
        wait_for(lambda: seen[-1][1] == {("198.51.100.3", "10.0.0.5")}, timeout=5,
                 what="removal of a reaching the SG")
        assert time.monotonic() - t0 < 5
    finally:
        follower.stop()
