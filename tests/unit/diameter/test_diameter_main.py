"""The standalone server process: config checks, status file, attach, DPR on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from diameter_testkit import DEFAULT_FILTERS, DEFAULT_ROUTES, FAKE_PEM, NODE, REALM, SECRET
from testbed.diameter import constants as C
from testbed.diameter.client import BlockingDiameterClient
from testbed.diameter.config import ConfigError, load_config, parse_config
from testbed.diameter.peer import LocalIdentity
from testbed.diameter.static_backend import compute_authenticator

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path, **over) -> dict:
    cert = tmp_path / "mn1.pem"
    cert.write_text(FAKE_PEM)
    cfg = {
        "origin_host": "msm.home.example", "origin_realm": REALM, "listen": "127.0.0.1",
        "port": 0, "tw": 30, "status_file": str(tmp_path / "status.json"),
        "exchange_log": str(tmp_path / "exchanges.jsonl"),
        "defaults": {"routes": DEFAULT_ROUTES, "filters": DEFAULT_FILTERS},
        "users": {NODE: {"secret": SECRET, "certificate_file": str(cert)},
                  "mn3.home.example": {"secret": "x", "routes": ["10.1.0.0/16 0.0.0.0 1"]}},
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("change, field", [
    ({"users": {NODE: {"secret": "s", "filters": ["permit in ip from any to any", "let all in"]}}},
     f"users.{NODE}.filters"),
    ({"defaults": {"routes": ["10.1.0.0/16 nowhere 1"]}}, "defaults.routes"),
    ({"tw": 0.1}, "tw"),
    ({"listen": "localhost"}, "listen"),
    ({"colour": "blue"}, "colour"),
    ({"users": {NODE: {"certificate_file": "/nonexistent/x.pem"}}}, f"users.{NODE}.certificate_file"),
])
def test_bad_config_names_the_field(tmp_path, change, field):
    with pytest.raises(ConfigError) as e:
        parse_config(_config(tmp_path, **change), "cfg.yaml")
    assert f"cfg.yaml: {field}" in str(e.value)


def test_missing_origin_host_and_bad_yaml(tmp_path):
    cfg = _config(tmp_path)
    del cfg["origin_host"]
    with pytest.raises(ConfigError, match="origin_host"):
        parse_config(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text("origin_host: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_bad_config_exits_2_with_message(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_config(tmp_path, port=70000)))
    r = subprocess.run([sys.executable, "-m", "testbed.diameter", "--config", str(path)],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "port" in r.stderr and "config refused" in r.stderr


def _wait_status(path: Path, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no status file {path}")


def test_standalone_server_serves_sink_and_says_goodbye(tmp_path):
    cfg_path = tmp_path / "diameter.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tmp_path)))
    proc = subprocess.Popen([sys.executable, "-m", "testbed.diameter", "--config", str(cfg_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        status = _wait_status(tmp_path / "status.json")
        port = int(status["listen"].rsplit(":", 1)[1])
        client = BlockingDiameterClient(LocalIdentity("msr1.home.example", REALM), "127.0.0.1", port,
                                        destination_realm=REALM, tc=0.2)
        assert client.start(wait_open=5.0)
        ok = client.authenticate(NODE, compute_authenticator(SECRET, b"hello"),
                                 authenticated_data=b"hello", node_address="10.1.0.9")
        assert ok.ok and [r.to_avp_text() for r in ok.routes] == DEFAULT_ROUTES
        per_user = client.authenticate("mn3.home.example", compute_authenticator("x", b"mn3.home.example"))
        assert per_user.ok and [r.to_avp_text() for r in per_user.routes] == ["10.1.0.0/16 0.0.0.0 1"]
        assert per_user.filters and per_user.filters[0].to_avp_text() == DEFAULT_FILTERS[0]
        assert client.fetch_certificate(NODE) == FAKE_PEM
        bad = client.authenticate(NODE, b"\x00" * 32, authenticated_data=b"hello")
        assert bad.result_code == C.RESULT_AUTHENTICATION_REJECTED
        time.sleep(1.2)  # one status period
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["counters"]["aa_success"] == 3 and status["counters"]["aa_rejected"] == 1
        assert [p["origin_host"] for p in status["peers"]] == ["msr1.home.example"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        deadline = time.monotonic() + 3
        while client.status()["counters"].get("rx_DPR", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.status()["counters"].get("rx_DPR") == 1
        records = [json.loads(x) for x in (tmp_path / "exchanges.jsonl").read_text().splitlines()]
        auths = [r for r in records if r["event"] == "auth"]
        assert [(r["identity"], r["result_code"]) for r in auths] == [
            (NODE, 2001), ("mn3.home.example", 2001), (NODE, 2001), (NODE, 4001)]
        assert auths[0]["node_address"] == "10.1.0.9" and auths[0]["sink"] == "msr1.home.example"
    finally:
        if client is not None:
            client.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "AA authenticate for mn1.home.example from sink msr1.home.example: 2001" in err
