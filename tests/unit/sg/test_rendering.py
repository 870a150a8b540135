"""Pure tests (no root): config rendering, filter rendering, validation, packet checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from testbed.sg.config import SgConfig
from testbed.sg.portal_follower import PortalFollower, fetch_filter, wait_for_change
from testbed.common.strongswan import (render_initiator_swanctl, render_responder_swanctl,
                                   render_settings, render_strongswan_conf, summarize_sas)
from testbed.sg.workgroup_filter import (FilterRow, WorkgroupFilter, drop_counter_name, merge_rows,
                                         row_counter_name)
from testbed.tunnel.ipip import _valid_inner

from .netns import REPO, wait_for
from .portal_stub import PortalStub


def test_responder_demands_peer_sg_address_as_identity():
    text = render_responder_swanctl({"A": "198.51.100.1", "C": "198.51.100.3"}, "198.51.100.2",
                                    local_ts=["10.0.0.0/24"])
    assert "from-A {" in text and "from-C {" in text
    a = text[text.index("from-A {"):text.index("from-C {")]
    remote = a[a.index("remote {"):]
    assert "id = 198.51.100.1" in remote.split("}")[0]
    assert "mobike = no" in a and "esp_proposals = aes128gcm16" in a
    assert "unique = never" in a  # all MNs of one realm share their SG's identity
    assert "local_ts = 10.0.0.0/24" in a


def test_initiator_one_connection_per_target_sg_with_own_sg_identity():
    text = render_initiator_swanctl({"B": ("198.51.100.2", ["10.0.0.7", "10.0.0.8"]),
                                     "C": ("198.51.100.3", ["10.0.0.9/32"])}, "198.51.100.1")
    assert text.count("remote_addrs =") == 2
    b = text[text.index("to-B {"):text.index("to-C {")]
    assert "remote_ts = 10.0.0.7/32,10.0.0.8/32" in b
    local = b[b.index("local {"):]
    assert "id = 198.51.100.1" in local.split("}")[0]
    with pytest.raises(ValueError):
        render_initiator_swanctl({"B": ("not-an-ip", ["10.0.0.7"])}, "198.51.100.1")


def test_settings_quoting_and_strongswan_conf():
    assert render_settings({"a": {"b": "x y", "c": True, "d": ["1", "2"]}}) == \
        'a {\n    b = "x y"\n    c = yes\n    d = 1,2\n}'
    conf = render_strongswan_conf("/var/lib/x/charon.vici", log_file="/tmp/l")
    assert "include /etc/strongswan.d/charon/*.conf" in conf
    assert "socket = unix:///var/lib/x/charon.vici" in conf
    assert "fwmark = !0x42" in conf and "fwmark = 0x42" in conf
    kl = conf[conf.index("kernel-libipsec {"):]
    assert "load = yes" in kl.split("}")[0]


def test_filter_render_keys_rows_by_interface_and_counts_each_row():
    wf = WorkgroupFilter(peer_ifaces={"198.51.100.1": "rl-A", "198.51.100.3": "rl-C"},
                         always_allow=("ip saddr {peer} udp sport {{ 500, 4500 }}",))
    rows = [FilterRow.from_json({"peer_sg_public": "198.51.100.1", "initiator_private": "10.0.0.5",
                                 "targets": ["10.0.0.7"]}),
            FilterRow.from_json({"peer_sg_public": "198.51.100.3", "initiator_private": "10.0.0.5",
                                 "targets": ["10.0.0.8", "10.0.0.7"]}),
            FilterRow.from_json({"peer_sg_public": "198.51.100.9", "initiator_private": "10.0.0.5",
                                 "targets": ["10.0.0.7"]})]
    text = wf.render(rows, existing_counters=["r_c6336409_0a000099"])
    assert '"rl-A" : jump from_c6336401' in text and '"rl-C" : jump from_c6336403' in text
    assert 'ip saddr 10.0.0.5 ip daddr { 10.0.0.7, 10.0.0.8 } counter name "r_c6336403_0a000005"' in text
    assert "ip saddr 198.51.100.3 udp sport { 500, 4500 } accept" in text
    assert "delete counter ip tb_workgroup r_c6336409_0a000099" in text  # stale row's counter
    assert "c6336409" not in text.replace("r_c6336409_0a000099", "")  # no tunnel: not installed
    assert text.count(f'counter name "{drop_counter_name("198.51.100.1")}" drop') == 1
    assert row_counter_name(rows[0]) == "r_c6336401_0a000005"


def test_merge_rows_unites_targets():
    r1 = FilterRow("198.51.100.1", "10.0.0.5", ("10.0.0.7",))
    r2 = FilterRow("198.51.100.1", "10.0.0.5", ("10.0.0.8",), "a.A.example")
    (m,) = merge_rows([r1, r2])
    assert m.targets == ("10.0.0.7", "10.0.0.8") and m.initiator_fqdn == "a.A.example"


@pytest.mark.parametrize("data,expect", [
    (bytes([0x45, 0, 0, 20]) + bytes(16), 20),
    (bytes([0x45, 0, 0, 20]) + bytes(16) + b"pad", 20),   # trailing bytes trimmed
    (bytes([0x45, 0, 0, 40]) + bytes(16), 0),             # longer than data
    (bytes([0x46, 0, 0, 20]) + bytes(16), 0),             # total < header length
    (bytes([0x65, 0, 0, 20]) + bytes(16), 0),             # not IPv4
    (bytes(10), 0),
])
def test_inner_packet_sanity(data, expect):
    assert _valid_inner(bytearray(data), 0, len(data)) == expect


def test_sg_config_errors_name_the_field():
    base = {"mvpn": "B", "public_address": "198.51.100.2", "realm": ["10.0.0.0/24"]}
    SgConfig.model_validate(base)
    with pytest.raises(ValidationError, match="public_address"):
        SgConfig.model_validate({**base, "public_address": "198.51.100.300"})
    with pytest.raises(ValidationError, match="ipsec.cert"):
        SgConfig.model_validate({**base, "ipsec": {"enabled": True}})
    with pytest.raises(ValidationError, match="peer name"):
        SgConfig.model_validate({**base, "peers": {"much-too-long-name": {"public": "198.51.100.1"}}})
    with pytest.raises(ValidationError, match="peers.A.public"):
        SgConfig.model_validate({**base, "peers": {"A": {"public": "198.51.100.2"}}})
    with pytest.raises(ValidationError, match="bogus"):
        SgConfig.model_validate({**base, "bogus": 1})


def test_cli_refuses_bad_config(tmp_path):
    bad = tmp_path / "sg.yaml"
    bad.write_text("mvpn: B\npublic_address: nope\n")
    proc = subprocess.run([sys.executable, "-m", "testbed.sg", "--config", str(bad)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "public_address" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "testbed.tunnel", "--config", str(bad)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "local" in proc.stderr


def test_portal_contract_and_follower_with_stub():
    portal = PortalStub()
    seen = []
    try:
        portal.set_rows("B", [{"peer_sg_public": "198.51.100.1", "initiator_private": "10.0.0.5",
                               "targets": ["10.0.0.7"]}, {"peer_sg_public": 7}])
        v, rows, problems = fetch_filter(portal.url, "B")
        assert v == portal.version and len(rows) == 1
        assert len(problems) == 1 and problems[0].startswith("rows[1]: row.peer_sg_public")
        assert wait_for_change(portal.url, v, timeout=0.2) == v  # long-poll times out unchanged
        f = PortalFollower(portal.url, "B", lambda ver, r: seen.append((ver, len(r))), poll_timeout=2).start()
        wait_for(lambda: seen, what="first rows")
        portal.set_rows("B", [])
        wait_for(lambda: seen[-1] == (portal.version, 0), timeout=3, what="update pushed by long-poll")
        f.stop()
    finally:
        portal.close()


def test_summarize_sas_picks_operator_fields():
    sas = [{"from-A": {"state": "ESTABLISHED", "remote-host": "10.0.0.5", "remote-id": "198.51.100.1",
                       "child-sas": {"wg-1": {"name": "wg", "state": "INSTALLED", "bytes-in": "84",
                                              "remote-ts": ["10.0.0.5/32"]}}}}]
    (s,) = summarize_sas(sas)
    assert s["remote_id"] == "198.51.100.1" and s["children"][0]["bytes-in"] == "84"
    json.dumps(s)
