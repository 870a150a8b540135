"""The intruder scenario (issue 9) end to end: its report decides; the attempt checks are
asserted by name so that none can silently disappear. The slow test runs the same scenario
against an MSM with the test-only `insecure_no_authz: true`: the attempt checks must fail
there, which shows they can fail."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import orchestration.scenario as scenario_mod
from orchestration.pytest_plugin import unique_lab_name
from orchestration.scenario import run_scenario

ATTEMPTS = ("d adds itself to W", "d signs on as itself to W", "d signs on as member a",
            "d mints an enrolment token for user a", "d enrols as a with a guessed secret",
            "d mints an SG token for M-VPN B", "d reads M-VPN B's filter rows",
            "d enrols a second time with its own, used token", "x adds itself to W",
            "x signs on as member a", "x enrols for SG-B's address", "x reads M-VPN B's filter rows",
            "x replays a's captured sign-on")
OTHERS = ("no private key and no enrolment token secret in the Internet capture",
          "still removed from W", "can no longer reach b", "tore down d's SA",
          "next IKE authentication at SG-B is refused", "refuses d's revoked client certificate")


def by_prefix(rep: dict, prefix: str) -> list[dict]:
    return [c for c in rep["checks"] if c["name"].startswith(prefix) or prefix in c["name"]]


def test_intruder_scenario_passes(tmp_path: Path) -> None:
    rep = run_scenario("intruder", lab_name=unique_lab_name("i"), say=print, results_root=tmp_path)
    assert json.loads((tmp_path / "intruder" / "report.json").read_text()) == rep
    failed = [c for c in rep["checks"] if not c["passed"]]
    assert rep["passed"] and not failed, failed
    for needle in ATTEMPTS + OTHERS:
        assert by_prefix(rep, needle), f"no check about {needle!r}"
    assert rep["metrics"]["msm_version_after_restart"] > rep["metrics"]["msm_version_before_removal"]


@pytest.mark.slow
def test_intruder_checks_fail_without_authorisation(tmp_path: Path, monkeypatch) -> None:
    """The same scenario, its MSM started with `insecure_no_authz: true`: every attempt check
    must fail (the portal lets the intruders in), while the positive controls still pass."""
    root = tmp_path / "scenarios"
    for name in ("intruder", "workgroup"):   # intruder's scenario.py reuses workgroup's helpers
        shutil.copytree(scenario_mod.SCENARIOS_DIR / name, root / name)
    topo = root / "intruder" / "topology.yaml"
    data = yaml.safe_load(topo.read_text())
    assert data["kind"] == "lab"
    data.setdefault("testing", {}).setdefault("msm", {})["insecure_no_authz"] = True  # MSM config field
    topo.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setattr(scenario_mod, "SCENARIOS_DIR", root)
    rep = run_scenario("intruder", lab_name=unique_lab_name("n"), say=print, results_root=tmp_path / "results")
    for needle in ("d adds itself to W", "d mints an enrolment token for user a", "d mints an SG token for M-VPN B",
                   "d reads M-VPN B's filter rows", "x adds itself to W", "x reads M-VPN B's filter rows"):
        checks = by_prefix(rep, needle)
        assert checks and not any(c["passed"] for c in checks), (needle, checks)
    assert not rep["passed"]
    controls = [c for c in rep["checks"] if c["name"].startswith("control: a -> b")]
    assert controls and all(c["passed"] for c in controls), controls
