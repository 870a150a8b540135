"""The roaming scenario end to end (Mobile IP part): its report decides."""
from __future__ import annotations

import json
from pathlib import Path

from orchestration.pytest_plugin import unique_lab_name
from orchestration.scenario import run_scenario


def test_roaming(tmp_path: Path) -> None:
    report = run_scenario("roaming", lab_name=unique_lab_name("r"), say=lambda m: None, results_root=tmp_path)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert report["passed"] and not failed, failed
    assert json.loads((tmp_path / "roaming" / "report.json").read_text()) == report
    m = report["metrics"]
    for step in ("fa", "ccoa", "home"):
        assert 0 < m[f"{step}_registration_ms"] < 2000, m
        assert m[f"{step}_handover_ms"] >= m[f"{step}_registration_ms"] * 0.5, m
        assert f"{step}_interruption_ms" in m and f"{step}_tcp_stall_ms" in m, m
    assert (tmp_path / "roaming" / "timeline.png").stat().st_size > 10000
    assert (tmp_path / "roaming" / "topology.png").stat().st_size > 10000
    assert (tmp_path / "roaming" / "pcaps" / "visited.pcap").stat().st_size > 0
