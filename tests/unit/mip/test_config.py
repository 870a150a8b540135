"""Bad configuration is refused with a message naming the field; good ones load."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from testbed.mip.config import HaAgentConfig, MnAgentConfig

from .nslab import REPO

HA = {"name": "a", "address": "198.51.100.11", "home_prefix": "10.0.0.0/24",
      "mobile_nodes": {"10.0.0.5": {"spi": 300, "key": "s"}}}


def test_ha_config_loads_and_builds_security_associations():
    cfg = HaAgentConfig.model_validate({"home_agents": [HA]})
    sa = cfg.home_agents[0].mobile_nodes[next(iter(cfg.home_agents[0].mobile_nodes))].sa()
    assert sa.spi == 300 and sa.key == b"s"


@pytest.mark.parametrize("change, field", [
    ({"mobile_nodes": {"10.0.0.5": {"spi": 7, "key": "s"}}}, "spi"),
    ({"mobile_nodes": {"10.0.1.5": {"spi": 300, "key": "s"}}}, "outside home_prefix"),
    ({"mobile_nodes": {"10.0.0.5": {"spi": 300}}}, "exactly one of key, key_hex"),
    ({"reverse_tunnel": "sometimes"}, "reverse_tunnel"),
    ({"name": "Has Space"}, "name"),
])
def test_bad_ha_fields_are_named(change, field):
    with pytest.raises(ValidationError, match=field):
        HaAgentConfig.model_validate({"home_agents": [{**HA, **change}]})


def test_several_virtual_has_need_their_own_namespace_and_address():
    with pytest.raises(ValidationError, match="netns"):
        HaAgentConfig.model_validate({"home_agents": [HA, {**HA, "name": "c", "address": "198.51.100.12"}]})
    with pytest.raises(ValidationError, match="addresses must be unique"):
        HaAgentConfig.model_validate({"home_agents": [{**HA, "netns": "x"}, {**HA, "name": "c", "netns": "y"}]})


def test_mn_home_address_must_be_in_home_prefix():
    with pytest.raises(ValidationError, match="home_address"):
        MnAgentConfig.model_validate({"home_address": "10.0.1.5", "home_prefix": "10.0.0.0/24",
                                      "home_gateway": "10.0.0.1", "home_agent": "198.51.100.11",
                                      "security": {"spi": 300, "key": "s"}})


def test_cli_refuses_bad_config_naming_the_field(tmp_path):
    bad = tmp_path / "ha.json"
    bad.write_text(json.dumps({"home_agents": [{**HA, "max_lifetime": 0}]}))
    proc = subprocess.run([sys.executable, "-m", "testbed.mip", "ha", "--config", str(bad)],
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert proc.returncode != 0
    assert "home_agents.0.max_lifetime" in proc.stderr
