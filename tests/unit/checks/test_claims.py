"""The claim coverage matrix (`testbed claims`): declared checks from scenario.yaml, lab files,
scenario.py and examples, joined with their last reports; claims no check covers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration.checks.claims import BEGIN, END, ClaimsError, build, markdown, read_claims, update_readme
from orchestration.cli import app

CLAIMS = "# comment\n1\tfirst claim\n2\tsecond claim\n3\tthird claim\n4\tfourth claim\n"


def tree(tmp: Path) -> Path:
    (tmp / "docs").mkdir()
    (tmp / "docs" / "claims.txt").write_text(CLAIMS)
    s = tmp / "scenarios" / "wg"
    s.mkdir(parents=True)
    (s / "scenario.yaml").write_text("topology: lab.yaml\nchecks:\n  - {name: yaml check, node: a, run: 'true', claims: [1]}\n"
                                     "  - {name: no claims, node: a, run: 'true'}\n")
    (s / "lab.yaml").write_text("kind: lab\nname: x\nmvpns: {A: {realm: 10.0.0.0/24}}\n"
                                "checks:\n  - {name: lab check, status: a, agent: sg, path: x, op: exists, claims: [2]}\n")
    (s / "scenario.py").write_text("def run(ctx):\n    ctx.check('py check', True, 'd', claims=[2, 3])\n"
                                   "    for n in (1, 2):\n        ctx.check(f'py {n}', True, claims=[3])\n"
                                   "    ctx.check('no claims', True)\n")
    (tmp / "examples").mkdir()
    (tmp / "examples" / "ex.yaml").write_text("kind: lab\nname: ex\nmvpns: {A: {realm: 10.0.0.0/24}}\n"
                                              "checks:\n  - {name: example check, reach: [a], to: [b], claims: [1]}\n")
    o = tmp / "scenarios" / "other"
    o.mkdir()
    (o / "scenario.yaml").write_text("checks: []\n")
    (o / "scenario.py").write_text("CLAIMS = [4]\n\ndef run(ctx):\n    for n, ok in judge():\n        ctx.check(n, ok, claims=CLAIMS)\n")
    r = tmp / "results" / "wg"
    r.mkdir(parents=True)
    (r / "report.json").write_text(json.dumps({"checks": [
        {"name": "yaml check", "passed": True, "detail": "exit 0", "claims": [1]},
        {"name": "lab check", "passed": False, "detail": "found nothing", "claims": [2]},
        {"name": "py 1", "passed": True, "detail": "", "claims": [3]},
        {"name": "py 2", "passed": False, "detail": "", "claims": [3]}]}))
    return tmp


def test_matrix_joins_declarations_and_reports(tmp_path: Path) -> None:
    m = build(tree(tmp_path), tmp_path / "results", Path("docs/claims.txt"))
    by = {n: {(r.source, r.name): r.status for r in refs} for n, refs in m.checks.items()}
    assert by[1] == {("scenario:wg", "yaml check"): "pass", ("example:ex", "example check"): "not run"}
    assert by[2] == {("scenario:wg", "lab check"): "fail", ("scenario:wg", "py check"): "not run"}
    # the f-string check is replaced by the report's two runs of it, by name
    assert by[3] == {("scenario:wg", "py check"): "not run", ("scenario:wg", "py 1"): "pass", ("scenario:wg", "py 2"): "fail"}
    assert m.uncovered == []
    assert m.counts(3) == {"pass": 1, "fail": 1, "not run": 1}
    assert by[4] == {("scenario:other", "n"): "not run"}  # no report: the expression as written, "not run"
    j = m.to_json()
    assert j["covered"] == 4 and j["total"] == 4 and j["uncovered"] == []
    m.titles[5] = "fifth claim"
    md = markdown(m)
    assert "| 5 | fifth claim | 0 | 0 | 0 | 0 | **no check** |" in md
    assert "4 of 5 claims have a check; no check names claims 5." in md


def test_claims_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ClaimsError, match="no claims file; give --claims FILE"):
        read_claims(tmp_path / "none.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1\tok\nseven\tno number\n")
    with pytest.raises(ClaimsError, match="bad.txt:2: 'seven\\\\tno number' does not start with a claim number"):
        read_claims(bad)


def test_readme_block_is_replaced_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{BEGIN}\nold\n{END}\nafter\n")
    update_readme(readme, "| new |")
    assert readme.read_text() == f"# x\n{BEGIN}\n| new |\n{END}\nafter\n"
    readme.write_text("no markers")
    with pytest.raises(ClaimsError, match="no claims matrix markers"):
        update_readme(readme, "x")


def test_cli_claims_on_this_repository(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["claims", "--json", "--results", str(tmp_path)])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["total"] == 70 and [c["claim"] for c in j["claims"]] == list(range(1, 71))
    # with no reports every declared check is "not run"; the examples name claims 2, 6, 18, 25 at least
    covered = {c["claim"] for c in j["claims"] if c["checks"]}
    assert {2, 6, 18, 25} <= covered and all(c["pass"] == c["fail"] == 0 for c in j["claims"])
    r = CliRunner().invoke(app, ["claims", "--claims", str(tmp_path / "nope.txt")])
    assert r.exit_code == 2 and "no claims file" in r.output
