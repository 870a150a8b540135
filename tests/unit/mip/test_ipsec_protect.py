"""Claim 24's SA scope: `protect` decides what the MN<->HA SA carries, on both ends alike.

`home_prefix` (default) keeps the first version's selectors; `all` makes the SA carry
everything from the home address, so that a workgroup ESP flow towards another M-VPN's SG
runs inside it. These tests read the rendered swanctl text charon loads, and the config.
"""
from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from testbed.mip.config import HaAgentConfig, MnAgentConfig
from testbed.mip.ipsec import ALL, HaIpsec, MnIpsec

MN = {"home_address": "10.0.0.5", "home_prefix": "10.0.0.0/24", "home_gateway": "10.0.0.1",
      "home_agent": "198.51.100.11", "security": {"spi": 300, "key": "k"}}
HA = {"name": "a", "address": "198.51.100.11", "home_prefix": "10.0.0.0/24",
      "mobile_nodes": {"10.0.0.5": {"spi": 300, "key": "k"}}}


def ts(conf: str, key: str) -> str:
    m = re.search(rf"\b{key} = (\S+)", conf)
    assert m, conf
    return m.group(1)


def test_default_scope_is_the_home_prefix(tmp_path):
    mn = MnIpsec(str(tmp_path / "mn"), "10.0.0.5", "198.51.100.11", "10.0.0.0/24", b"k")
    ha = HaIpsec("a", str(tmp_path / "ha"), "198.51.100.11", "10.0.0.0/24", {"10.0.0.5": b"k"})
    assert ts(mn.conf, "remote_ts") == "10.0.0.0/24" and ts(mn.conf, "local_ts") == "dynamic"
    assert ts(ha.conf, "local_ts") == "10.0.0.0/24" and ts(ha.conf, "remote_ts") == "dynamic"


def test_protect_all_covers_every_destination_on_both_ends(tmp_path):
    mn = MnIpsec(str(tmp_path / "mn"), "10.0.0.5", "198.51.100.11", "10.0.0.0/24", b"k", protect="all")
    ha = HaIpsec("a", str(tmp_path / "ha"), "198.51.100.11", "10.0.0.0/24", {"10.0.0.5": b"k"}, protect="all")
    assert ts(mn.conf, "remote_ts") == ALL == "0.0.0.0/0"
    assert ts(ha.conf, "local_ts") == ALL
    # the identities and the PSK do not depend on the scope
    assert "id = 10.0.0.5" in mn.conf and "0x6b" in mn.conf and "0x6b" in ha.conf


def test_protect_is_validated_in_both_configs():
    assert MnAgentConfig.model_validate({**MN, "ipsec_to_ha": {"workdir": "/x", "protect": "all"}}).ipsec_to_ha.protect == "all"
    assert HaAgentConfig.model_validate(
        {"home_agents": [{**HA, "ipsec_ccoa": {"workdir": "/y", "protect": "all"}}]}).home_agents[0].ipsec_ccoa.protect == "all"
    with pytest.raises(ValidationError, match="protect"):
        MnAgentConfig.model_validate({**MN, "ipsec_to_ha": {"workdir": "/x", "protect": "everything"}})
