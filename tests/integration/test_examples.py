"""The lab files under examples/ run end to end (testbed run), each with its own checks;
and a check of one of them is shown to fail when the lab takes its feature away."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.domain import compile_lab, load_lab
from orchestration.domain.schedule import run_lab
from orchestration.pytest_plugin import unique_lab_name
from orchestration.yamlfile import load_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def failed(report: dict) -> list[dict]:
    return [c for c in report["checks"] if not c["passed"]]


@pytest.mark.parametrize("name", ["workgroup", "roaming", "handover", "otherplan"])
def test_example_runs_and_passes(name: str) -> None:
    compiled = load_lab(EXAMPLES / f"{name}.yaml")
    report = run_lab(compiled, lab_name=unique_lab_name("x"), say=lambda m: None)
    assert len(report["checks"]) == len(compiled.lab.checks) >= 3
    assert report["passed"] and not failed(report), failed(report)


def test_workgroup_check_fails_when_b_is_no_member() -> None:
    """The same lab with b signed on to its own workgroup V instead of W: a -> b must fail
    (the check is not true by construction)."""
    data = load_yaml(EXAMPLES / "workgroup.yaml")
    data["workgroups"] = {"W": ["a"], "V": ["b"]}
    data["mobile_nodes"]["b"]["workgroup"] = "V"
    data["checks"] = [dict(data["checks"][0], retry=15)]
    report = run_lab(compile_lab(data, "workgroup-without-b"), lab_name=unique_lab_name("x"), say=lambda m: None)
    assert not report["passed"] and len(failed(report)) == 1, report
    assert failed(report)[0]["name"].startswith("a reaches b")


def test_start_after_timeout_names_what_did_not_come_up() -> None:
    """A node whose dependency never reports ready: bring-up fails naming node, file and
    reason, and removes what it started."""
    from orchestration.lab import Lab, LabError
    from orchestration.topology import parse_topology

    topo = parse_topology({"name": "x", "nodes": {
        "dep": {"role": "host"},
        "user": {"role": "host", "start": ["sleep 60"],
                 "start_after": [{"node": "dep", "file": "/run/testbed/never.json", "timeout_s": 2, "what": "the never agent"}]}}})
    lab = Lab(topo, name=unique_lab_name("x"))
    with pytest.raises(LabError) as e:
        lab.up()
    assert "not ready after 2 s: the never agent (dep:/run/testbed/never.json: no status file yet)" in str(e.value)
