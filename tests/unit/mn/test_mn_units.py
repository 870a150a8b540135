"""MN agent pieces without Docker or root: config refusals, realm tag encoding, rendering."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from testbed.mn.config import MnConfig
from testbed.sg.realm_mark import realm_mac, realm_mark, render
from testbed.common.strongswan import render_initiator_swanctl


def test_config_defaults_and_refusals() -> None:
    cfg = MnConfig.model_validate({"fqdn": "b.mwg.test", "workgroup": "W",
                                   "portal": {"url": "http://198.51.100.10:8080/"}})
    assert cfg.portal.url == "http://198.51.100.10:8080" and cfg.interface == "eth0"
    with pytest.raises(ValidationError, match="interface"):
        MnConfig.model_validate({"fqdn": "b", "workgroup": "W", "portal": {"url": "http://x"},
                                 "interface": "eth0; rm -rf /"})
    with pytest.raises(ValidationError, match="url"):
        MnConfig.model_validate({"fqdn": "b", "workgroup": "W", "portal": {"url": "ftp://x"}})
    with pytest.raises(ValidationError, match="unknown|extra"):
        MnConfig.model_validate({"fqdn": "b", "workgroup": "W", "portal": {"url": "http://x"}, "bogus": 1})


def test_realm_tag_names_the_peer_sg() -> None:
    assert realm_mac("198.51.100.1") == "02:c6:33:64:01:00"
    assert realm_mark("198.51.100.3") == 0xc6336403
    text = render("eth0", {"rl-A": "198.51.100.1", "rl-C": "198.51.100.3"})
    assert 'iifname "rl-A" oifname "eth0" meta mark set 0xc6336401' in text
    assert "meta mark 0xc6336403 ether saddr set 02:c6:33:64:03:00" in text
    assert 'hook egress device "eth0"' in text


def test_initiator_local_ts_only_when_given() -> None:
    plain = render_initiator_swanctl({"B": ("198.51.100.2", ["10.0.0.7"])}, "198.51.100.1")
    assert "local_ts" not in plain and "remote_ts = 10.0.0.7/32" in plain
    nat = render_initiator_swanctl({"B": ("198.51.100.2", ["10.0.0.7"])}, "198.51.100.1", local_ts=["10.0.0.5"])
    assert "local_ts = 10.0.0.5/32" in nat and "id = 198.51.100.1" in nat
