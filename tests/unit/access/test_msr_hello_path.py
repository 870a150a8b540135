"""An MSR whose hellos on UDP 654 could never reach its sink is refused at start.

Regression: the access scenario ran the sink on 654 with `aodv.interfaces: [eth2]` while the
hellos came in on the radio eth0; the AODV agent, which owns 654 in an MSR, dropped every one
of them as foreign_iface_dropped and the sink heard nothing (no member, no refusal).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.access.config import ConfigError, SinkConfig, parse
from testbed.access.msr import hello_path_error
from testbed.aodv.config import parse_config as parse_aodv

REPO = Path(__file__).resolve().parents[3]


def msr_config(port: int, aodv_ifaces: list[str], dhcp_iface: str = "eth0",
               access_ifaces: list[str] | None = None) -> dict:
    """The access scenario's MSR configuration with the parts under test varied."""
    return {
        "aodv": {"address": "10.10.30.1", "interfaces": aodv_ifaces,
                 "managed_prefixes": ["10.10.30.0/23"]},
        "access": {"address": "10.10.0.1", "port": port, "identity": "msr1.mwg.test",
                   "msm": {"address": "192.0.2.1", "port": 3868, "timeout": 1},
                   "interfaces": access_ifaces or [],
                   "dhcp": {"enabled": True, "interface": dhcp_iface}},
    }


def check(doc: dict) -> None:
    hello_path_error(parse_aodv(doc["aodv"]), parse(doc["access"], SinkConfig), "msr.json")


def test_msr_on_654_refuses_radio_outside_aodv_interfaces(tmp_path):
    """The scenario's broken configuration: exit 2 before anything starts, naming the fix."""
    cfg = tmp_path / "msr.json"
    cfg.write_text(json.dumps(msr_config(654, ["eth2"])))
    r = subprocess.run([sys.executable, "-m", "testbed.access.msr", "--config", str(cfg)],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert str(cfg) in r.stderr and "aodv.interfaces" in r.stderr and "'eth0'" in r.stderr


@pytest.mark.parametrize("doc", [
    msr_config(654, ["eth2"], access_ifaces=["eth1"]),
    msr_config(654, ["eth0", "eth2"], access_ifaces=["eth1"]),
])
def test_every_access_interface_must_be_an_aodv_interface(doc):
    with pytest.raises(ConfigError, match=r"msr\.json: access\.port 654 .*aodv\.interfaces"):
        check(doc)


@pytest.mark.parametrize("doc", [
    msr_config(655, ["eth2"]),                  # the sink keeps its own socket on 655
    msr_config(654, ["eth0", "eth2"]),          # the radio is an AODV interface
    msr_config(654, []),                        # empty: every interface is an AODV interface
])
def test_hello_paths_that_reach_the_sink_are_accepted(doc):
    check(doc)
