"""Scenarios run end to end as `make scenario` runs them; their reports decide."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.pytest_plugin import unique_lab_name
from orchestration.scenario import run_scenario

REPO = Path(__file__).resolve().parents[2]


def assert_report(report: dict, name: str, results: Path) -> None:
    on_disk = json.loads((results / name / "report.json").read_text())
    assert on_disk == report
    assert set(report) == {"scenario", "passed", "duration_s", "checks", "metrics"}
    assert report["scenario"] == name and isinstance(report["duration_s"], float)
    assert all(set(c) == {"name", "passed", "detail", "claims"} for c in report["checks"])
    failed = [c for c in report["checks"] if not c["passed"]]
    assert report["passed"] and not failed, failed


def test_realms(tmp_path: Path) -> None:
    report = run_scenario("realms", lab_name=unique_lab_name("s"), say=lambda m: None, results_root=tmp_path)
    assert_report(report, "realms", tmp_path)
    assert len(report["checks"]) >= 18
    assert (tmp_path / "realms" / "pcaps" / "lan-a.pcap").stat().st_size > 0
    assert (tmp_path / "realms" / "logs" / "a1" / "container.log").exists()


def test_scenario_command_exit_status_and_unknown_name() -> None:
    testbed = str(Path(sys.executable).parent / "testbed")
    r = subprocess.run([testbed, "scenario", "no-such-scenario"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "no scenario 'no-such-scenario'" in r.stderr and "realms" in r.stderr
