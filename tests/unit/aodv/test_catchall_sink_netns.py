"""`handover.catchall_only_with_sink`: an MN's catch-alls exist only while a sink serves it.

Why it matters (claim 14, scenario roaming): an MN that also runs Mobile IP leaves the
AODV domain; its catch-alls to the buffer TUN must then stop shadowing Mobile IP's routes.
Real agents in `tbt*` namespaces: sink r and MN m on one veth; m's link goes down (sink
lost: the catch-all goes after the grace time) and up again (attached: it is back).
"""
from __future__ import annotations

import os

import pytest

from .netns_lab import Lab

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

NET = "10.96.0.0/24"


def catchall(lab: Lab, node: str) -> bool:
    out = lab.exec(node, "ip", "-4", "route", "show", "proto", "180").stdout
    return any(line.startswith(NET) and "dev aodv0" in line for line in out.splitlines())


@pytest.fixture
def lab():
    lab = Lab(format(os.getpid() % 4096, "03x") + "c")
    yield lab
    lab.cleanup()


@pytest.mark.parametrize("switch", [True, False])
def test_catchall_follows_the_sink(lab: Lab, switch: bool):
    lab.add_node("r", "10.96.0.1")
    lab.add_node("m", "10.96.0.5")
    lab.link("r", "m")
    lab.start("r", lab.config("r", handover={"enabled": True}, timers={"hello_interval_ms": 200}))
    lab.start("m", lab.config("m", role="mn", managed_prefixes=[NET], timers={"hello_interval_ms": 200},
                              handover={"enabled": True, "catchall_only_with_sink": switch,
                                        "catchall_grace_ms": 200}))
    lab.wait_status("m", lambda s: s["handover"]["sink"] == "10.96.0.1")
    assert catchall(lab, "m")
    ifm = lab.ifname("m", "r")
    lab.exec("m", "ip", "link", "set", ifm, "down")
    lab.wait_status("m", lambda s: s["handover"]["sink"] is None)
    if switch:
        st = lab.wait_status("m", lambda s: s["counters"].get("catchalls_withdrawn") == 1)
        assert not catchall(lab, "m"), lab.log_tail("m")
        assert any(e["kind"] == "catchalls" and e["installed"] is False for e in st["events"])
    else:
        st = lab.status("m")
        assert catchall(lab, "m") and "catchalls_withdrawn" not in st["counters"]
    lab.exec("m", "ip", "addr", "replace", "10.96.0.5/32", "dev", ifm)
    lab.exec("m", "ip", "link", "set", ifm, "up")
    lab.wait_status("m", lambda s: s["handover"]["sink"] == "10.96.0.1")
    if switch:
        lab.wait_status("m", lambda s: s["counters"].get("catchalls_restored") == 1)
    assert catchall(lab, "m"), lab.log_tail("m")


@pytest.mark.parametrize("notice", [True, False])
def test_leave_notice_withdraws_the_catchalls_without_grace(lab: Lab, notice: bool):
    """Issue 14: when the MN's Mobile IP agent says "left", the catch-alls go at once.

    The grace time is 30 s here, so only the notice can withdraw them within the test;
    without a leave socket (notice=False) the same datagram has nobody to reach and the
    catch-alls stay: the check fails when the feature is off.
    """
    from testbed.aodv.leave import send_leave_notice

    sock = str(lab.tmp / "leave.sock")
    lab.add_node("r", "10.96.0.1")
    lab.add_node("m", "10.96.0.5")
    lab.link("r", "m")
    lab.start("r", lab.config("r", handover={"enabled": True}, timers={"hello_interval_ms": 200}))
    ho = {"enabled": True, "catchall_only_with_sink": True, "catchall_grace_ms": 30000}
    if notice:
        ho["leave_socket"] = sock
    lab.start("m", lab.config("m", role="mn", managed_prefixes=[NET], timers={"hello_interval_ms": 200},
                              handover=ho))
    lab.wait_status("m", lambda s: s["handover"]["sink"] == "10.96.0.1")
    assert catchall(lab, "m")
    lab.exec("m", "ip", "link", "set", lab.ifname("m", "r"), "down")   # moved away: sink lost
    lab.wait_status("m", lambda s: s["handover"]["sink"] is None)
    assert send_leave_notice(sock) is notice
    if notice:
        st = lab.wait_status("m", lambda s: s["counters"].get("catchalls_withdrawn") == 1, timeout=5)
        assert st["counters"]["leave_notices"] == 1 and not catchall(lab, "m"), lab.log_tail("m")
    else:
        import time
        time.sleep(1.0)
        st = lab.status("m")
        assert catchall(lab, "m") and "catchalls_withdrawn" not in st["counters"]
