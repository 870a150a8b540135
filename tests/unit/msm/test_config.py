"""Config: bad fields are refused with their name; the agent exits 2 and says why."""
from __future__ import annotations

import subprocess
import sys

import pytest

from testbed.msm.config import ConfigError, load_config, parse_config

from .harness import REPO


@pytest.mark.parametrize("data,field", [
    ({"https_port": 70000}, "https_port"),
    ({"http_prot": 8080}, "http_prot"),
    ({"http_port": 8080}, "use https_port"),
    ({"server_san_ips": ["not-an-ip"]}, "server_san_ips"),
    ({"seed": {"tokens": [{"identity": "a.mwg.test", "kind": "mn", "token": "short.x"}]}}, "seed.tokens.0.token"),
    ({"seed": {"tokens": [{"identity": "a.mwg.test", "kind": "boss", "token": "abcdef.0123456789abcdef"}]}},
     "seed.tokens.0.kind"),
    ({"msm_address": "not-an-ip"}, "msm_address"),
    ({"key_type": "dsa"}, "key_type"),
    ({"seed": {"workgroups": [{"members": []}]}}, "seed.workgroups.0.name"),
])
def test_bad_fields_are_named(data, field):
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert field in str(exc.value)


def test_yaml_and_defaults(tmp_path):
    path = tmp_path / "msm.yaml"
    path.write_text("https_port: 9000\nzone: Example.Test\n")
    cfg = load_config(str(path))
    assert cfg.https_port == 9000 and cfg.insecure_http_port is None and not cfg.insecure_no_authz
    assert not cfg.allow_test_certs and cfg.zone == "example.test." and cfg.msm_name == "msm.example.test"
    assert cfg.dns_port == 53 and cfg.status_file == "/run/testbed/msm.json"


def test_agent_refuses_bad_config_and_bad_seed(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"dns_port": "fifty-three"}')
    run = subprocess.run([sys.executable, "-m", "testbed.msm", "--config", str(bad)], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "dns_port" in run.stderr
    seed = tmp_path / "seed.json"
    seed.write_text('{"db_path": "%s", "ca_dir": "%s", "https_port": 0, "dns_enabled": false, '
                    '"status_file": "%s", "seed": {"mvpns": [{"name": "A", "realm": "10.0.0.0/33", '
                    '"sg_public": "203.0.113.1"}]}}' % (tmp_path / "db", tmp_path / "ca", tmp_path / "st.json"))
    run = subprocess.run([sys.executable, "-m", "testbed.msm", "--config", str(seed)], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "realm" in run.stderr, run.stderr


def test_agent_exits_1_naming_a_corrupt_database(tmp_path):
    (tmp_path / "msm.db").write_bytes(b"this is not an sqlite database" * 100)
    cfg = tmp_path / "c.json"
    cfg.write_text('{"db_path": "%s", "ca_dir": "%s", "https_port": 0, "dns_enabled": false, "status_file": "%s"}'
                   % (tmp_path / "msm.db", tmp_path / "ca", tmp_path / "st.json"))
    run = subprocess.run([sys.executable, "-m", "testbed.msm", "--config", str(cfg)], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "db_path=" in run.stderr and "DatabaseError" in run.stderr, run.stderr
