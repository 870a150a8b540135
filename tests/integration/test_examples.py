"""The lab files under examples/ run end to end (testbed run), each with its own checks;
and a check of one of them is shown to fail when the lab takes its feature away."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.domain import compile_lab, load_lab
from orchestration.domain.schedule import report_path, run_lab
from orchestration.pytest_plugin import unique_lab_name
from orchestration.yamlfile import load_yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def failed(report: dict) -> list[dict]:
    return [c for c in report["checks"] if not c["passed"]]


@pytest.mark.parametrize("name", ["workgroup", "roaming", "handover", "otherplan"])
def test_example_runs_and_passes(name: str) -> None:
    compiled = load_lab(EXAMPLES / f"{name}.yaml")
    # the report under results/examples/<name>/ is what `testbed claims` reads
    report = run_lab(compiled, lab_name=unique_lab_name("x"), say=lambda m: None, report=report_path(EXAMPLES / f"{name}.yaml"))
    assert len(report["checks"]) == len(compiled.lab.checks) >= 3
    assert report["passed"] and not failed(report), failed(report)


def test_workgroup_check_fails_when_b_is_no_member() -> None:
    """The same lab with b signed on to its own workgroup V instead of W: a -> b must fail,
    and so must the status and counter checks of SG-B's filter row for a (the checks are
    not true by construction); the row for c stays absent."""
    data = load_yaml(EXAMPLES / "workgroup.yaml")
    data["workgroups"] = {"W": ["a"], "V": ["b"]}
    data["mobile_nodes"]["b"]["workgroup"] = "V"
    kinds = {c.get("name", ""): c for c in data["checks"]}
    row_a, no_c, count_a = (next(c for n, c in kinds.items() if n.startswith(p)) for p in
                            ("SG-B's workgroup filter has a row for a", "and no row for c", "SG-B's row for a counted"))
    data["checks"] = [dict(data["checks"][0], retry=15), dict(row_a, retry=5), count_a, no_c]
    report = run_lab(compile_lab(data, "workgroup-without-b"), lab_name=unique_lab_name("x"), say=lambda m: None)
    assert not report["passed"] and len(failed(report)) == 3, report
    assert [c["name"] for c in failed(report)] == [c["name"] for c in data["checks"][:3]]
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


def test_scenario_with_a_lab_file_runs_the_labs_schedule_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scenario.yaml may name a lab file: the lab's own schedule and checks run after the
    scenario's, and a failing lab check fails the scenario."""
    import yaml

    from orchestration import scenario as sc

    data = load_yaml(EXAMPLES / "handover.yaml")
    data["checks"].append({"name": "deliberately wrong: mn reaches an address nobody has", "node": "mn",
                           "run": "ping -c1 -W1 10.20.9.9", "match": " 1 received"})
    folder = tmp_path / "scen" / "labho"
    folder.mkdir(parents=True)
    (folder / "lab.yaml").write_text(yaml.safe_dump(data))
    (folder / "scenario.yaml").write_text("topology: lab.yaml\n")
    monkeypatch.setattr(sc, "SCENARIOS_DIR", tmp_path / "scen")
    report = sc.run_scenario("labho", lab_name=unique_lab_name("x"), say=lambda m: None, results_root=tmp_path / "res")
    names = [c["name"] for c in report["checks"]]
    assert names[:4] == [c["name"] for c in data["checks"][:4]]
    assert [c["name"] for c in failed(report)] == ["deliberately wrong: mn reaches an address nobody has"]
