"""The `access` scenario end to end on the engine (issue 5 checks); its report decides."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    for proto in ("diameter", "dhcp"):
        assert f"decodes {proto} in the pcaps" in names, proto
