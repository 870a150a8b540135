"""Claim 14: the MN is "home" while its own AODV agent is attached to a home sink.

The MN reads the AODV agent's status file (a real file here); a status written before the
last carrier change, too old, or naming a sink outside the home domain does not count.
"""
from __future__ import annotations

import json
import time

import pytest
from pydantic import ValidationError

from testbed.mip.config import MnAgentConfig
from testbed.mip.mn import AODV, MobileNode

MN = {"home_address": "10.0.0.5", "home_prefix": "10.0.0.0/24", "home_gateway": "10.0.0.1",
      "home_agent": "198.51.100.11", "security": {"spi": 300, "key": "k"}}


def node(tmp_path, sinks=("10.0.0.2", "10.0.0.3")) -> tuple[MobileNode, object]:
    status = tmp_path / "aodv.json"
    cfg = MnAgentConfig.model_validate({**MN, "aodv_home": {"status_file": str(status), "sinks": list(sinks)}})
    return MobileNode(cfg), status


def write(status, sink, written=None) -> None:
    status.write_text(json.dumps({"time": written or time.time(), "handover": {"sink": sink}}))


def test_attached_to_a_home_sink_is_home_and_leaves_routing_to_aodv(tmp_path):
    mn, status = node(tmp_path)
    write(status, "10.0.0.3")
    want = mn._desired(time.monotonic())
    assert want is not None and want.mode == "home" and want.agent == AODV and want.coa == "10.0.0.5"
    assert mn._routes_intact(want)   # nothing of Mobile IP's to re-assert at an AODV home


@pytest.mark.parametrize("case", ["no sink", "foreign sink", "too old", "before the carrier change", "garbage"])
def test_no_home_sink_means_not_home(tmp_path, case):
    mn, status = node(tmp_path)
    if case == "no sink":
        write(status, None)
    elif case == "foreign sink":
        write(status, "10.0.0.9")
    elif case == "too old":
        write(status, "10.0.0.2", time.time() - 5)
    elif case == "before the carrier change":
        write(status, "10.0.0.2", time.time() - 0.2)
        mn._on_carrier([False, True])
    else:
        status.write_text("{not json")
    assert mn._aodv_sink(time.monotonic()) is None
    # and the movement logic does not pick home (no agent heard either)
    mn.cfg.use_ccoa = False
    mn._solicit = lambda: None   # no link socket in this test: nothing to solicit on
    assert mn._desired(time.monotonic()) is None


def test_without_aodv_home_the_status_file_is_not_read(tmp_path):
    cfg = MnAgentConfig.model_validate(MN)
    assert MobileNode(cfg)._aodv_sink(time.monotonic()) is None


def test_aodv_home_needs_sinks():
    with pytest.raises(ValidationError, match="sinks"):
        MnAgentConfig.model_validate({**MN, "aodv_home": {"sinks": []}})
    with pytest.raises(ValidationError, match="sinks"):
        MnAgentConfig.model_validate({**MN, "aodv_home": {"sinks": ["not-an-address"]}})


@pytest.mark.parametrize("solicit_wait", [0.0, 0.5])
def test_carrier_up_solicits_and_takes_a_ccoa_at_once(tmp_path, solicit_wait):
    """Issue 14: no fixed waits. On carrier-up the MN solicits in the same tick and, with a
    co-located address on the link and no agent heard, registers it without waiting for an
    answer (solicit_wait 0, the default); the old 0.5 s wait (the other case) does not."""
    mn, status = node(tmp_path)
    mn.cfg.solicit_wait = solicit_wait
    write(status, None)
    sent = []
    mn._solicit = lambda: sent.append(time.monotonic())
    mn._on_carrier([False, True])
    now = time.monotonic()
    mn._ccoa_cache = (now, ("192.0.2.50", 24, "192.0.2.1"))   # what LinkWatch + netlink found
    want = mn._desired(now)
    assert len(sent) == 1
    if solicit_wait == 0:
        assert want is not None and want.mode == "ccoa" and want.coa == "192.0.2.50" and want.agent == "192.0.2.1"
    else:
        assert want is None


def test_leave_notice_config_reaches_both_agents():
    from testbed.aodv.config import HandoverConfig
    cfg = MnAgentConfig.model_validate({**MN, "aodv_home": {"sinks": ["10.0.0.2"], "leave_socket": "/run/x.sock"}})
    assert cfg.aodv_home.leave_socket == "/run/x.sock"
    assert HandoverConfig.model_validate({"leave_socket": "/run/x.sock"}).leave_socket == "/run/x.sock"
    assert MnAgentConfig.model_validate(MN).solicit_wait == 0.0


@pytest.mark.parametrize("configured", [True, False])
def test_registered_away_tells_the_aodv_agent_once(tmp_path, configured):
    """Issue 14: after a new registration away from the sinks, one b"left" datagram reaches
    the AODV agent's leave socket (a real Unix socket here); none for a renewal, none for
    AODV's home, none when no leave socket is configured (the feature off)."""
    from testbed.aodv.leave import LEAVE_NOTICE, open_leave_socket
    from testbed.mip.mn import Target

    path = str(tmp_path / "run" / "leave.sock")   # the directory does not exist yet
    rx = open_leave_socket(path)
    ah = {"status_file": str(tmp_path / "aodv.json"), "sinks": ["10.0.0.2"]}
    if configured:
        ah["leave_socket"] = path
    mn = MobileNode(MnAgentConfig.model_validate({**MN, "aodv_home": ah}))
    fa = Target("fa", "203.0.113.1", "203.0.113.1")
    home = Target("home", "10.0.0.5", AODV)
    assert mn._tell_aodv_left(home, fa) is configured
    assert mn._tell_aodv_left(fa, fa) is False            # a renewal
    assert mn._tell_aodv_left(fa, home) is False          # back at a sink: AODV's own business
    got = []
    while True:
        try:
            got.append(rx.recv(64))
        except BlockingIOError:
            break
    rx.close()
    assert got == ([LEAVE_NOTICE] if configured else [])
