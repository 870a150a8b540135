"""A real in-process MSM (store, CA, embedded DIAMETER server) and a real DIAMETER client."""
from __future__ import annotations

import threading

import pytest

from testbed.diameter import BlockingDiameterClient, LocalIdentity
from testbed.msm.__main__ import Msm
from testbed.msm.config import parse_config

SEED = {
    "mvpns": [{"name": "A", "realm": "10.10.0.0/24", "sg_public": "203.0.113.1"},
              {"name": "B", "realm": "10.20.0.0/24", "sg_public": "203.0.113.2"}],
    "users": [{"fqdn": "mn1.mwg.test", "mvpn": "A", "private_address": "10.10.0.5"},
              {"fqdn": "mn2.mwg.test", "mvpn": "A", "private_address": "10.10.0.6"},
              {"fqdn": "peer.mwg.test", "mvpn": "B", "private_address": "10.20.0.9"}],
    "workgroups": [{"name": "W", "members": ["mn1.mwg.test", "peer.mwg.test"]}],
}


@pytest.fixture
def msm(tmp_path):
    cfg = parse_config({
        "db_path": str(tmp_path / "msm.db"), "ca_dir": str(tmp_path / "ca"), "key_type": "ec",
        "http_address": "127.0.0.1", "https_port": 0, "dns_enabled": True,
        "dns_address": "127.0.0.1", "dns_port": 0,
        "status_file": str(tmp_path / "msm.json"), "seed": SEED,
        "diameter": {"enabled": True, "address": "127.0.0.1", "port": 0,
                     "exchange_log": str(tmp_path / "dia.jsonl"),
                     "secrets": {"mn1.mwg.test": "s3cret-1", "mn2.mwg.test": "s3cret-2"},
                     "gateways": {"A": "10.10.0.254"}},
    })
    m = Msm(cfg)
    m.start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def dclient(msm):
    c = BlockingDiameterClient(LocalIdentity("msr1.mwg.test", "mwg.test"), "127.0.0.1",
                               msm.diameter.port, destination_realm="mwg.test", tw=30, tc=1)
    assert c.start(wait_open=5)
    try:
        yield c
    finally:
        c.stop()


class Collector:
    """The sink's send callback: records the replies and wakes a waiter."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []
        self.event = threading.Event()

    def __call__(self, data: bytes, dst: str, iface) -> None:
        self.sent.append((data, dst))
        self.event.set()
