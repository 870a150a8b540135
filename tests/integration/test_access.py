"""The `access` scenario end to end on the engine (issue 5 checks); its report decides."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.evidence import count, decode, port_census
from orchestration.pytest_plugin import unique_lab_name
from orchestration.scenario import run_scenario


@pytest.mark.docker
def test_access(tmp_path: Path) -> None:
    report = run_scenario("access", lab_name=unique_lab_name("x"), say=lambda m: None, results_root=tmp_path)
    assert json.loads((tmp_path / "access" / "report.json").read_text()) == report
    failed = [c for c in report["checks"] if not c["passed"]]
    assert report["passed"] and not failed, failed
    assert len(report["checks"]) >= 20
    for m in ("attach_ms_secret", "attach_ms_certificate", "attach_ms_visitor", "attach_ms_dhcp_sink"):
        assert report["metrics"][m] > 0
    assert (tmp_path / "access" / "pcaps" / "radio.pcap").stat().st_size > 0
    assert (tmp_path / "access" / "pcaps" / "core.pcap").stat().st_size > 0
    names = " | ".join(c["name"] for c in report["checks"])
    for proto in ("aodv", "diameter", "dhcp"):
        assert f"decodes {proto} in the pcaps" in names, proto
    pcaps_open_in_wireshark(sorted((tmp_path / "access" / "pcaps").glob("*.pcap")))


def pcaps_open_in_wireshark(pcaps: list[Path]) -> None:
    """Issue 11 section 5, read from the pcaps themselves: AODV (hellos with the access
    extensions 131-134 included) only on UDP 654, DIAMETER on TCP 3868, DHCP on 67/68, all
    decoded by tshark's own dissectors, no frame malformed or marked as an error, and no
    datagram left on the hello plane's old ports 655/656 (where Wireshark showed bare UDP;
    tests/unit/orchestration/test_evidence.py shows these counts on such a pcap)."""
    assert [p.name for p in pcaps] == ["core.pcap", "radio.pcap"]
    for name in ("aodv", "diameter", "dhcp"):
        total, on_port = port_census(pcaps, name)
        assert total > 0 and on_port == total, (name, total, on_port)
    for ext in (131, 132, 133, 134):  # AUTH, CHUNK, CERTAUTH, ROUTES
        assert sum(count(p, f"aodv.ext_type == {ext} && udp.port == 654") for p in pcaps) > 0, ext
    assert sum(count(p, "udp.port == 655 || udp.port == 656") for p in pcaps) == 0
    # wherever the hellos went, Wireshark must name them: on the radio cell no UDP datagram
    # is left as bare data but the visitor's own test stream to port 9999 (20 datagrams)
    assert count(pcaps[1], "udp && data && !(udp.dstport == 9999)") == 0
    decoded = [decode(p) for p in pcaps]
    assert [m for d in decoded for m in d.malformed + d.errors] == []
