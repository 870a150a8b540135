"""Scenarios: a topology, steps, and the checks that decide pass or fail.

A scenario is a folder under ``scenarios/`` (after strongSwan's ``testing/tests``):
``description.md`` says what it shows, ``topology.yaml`` what it builds, ``scenario.yaml``
its captures, steps and data checks (one line a check: node, command, expected exit and
pattern), and an optional ``scenario.py`` with ``run(ctx)`` for checks that need logic
(measurements, moves, counters). A run writes ``results/<name>/report.json`` beside each
node's logs and the pcaps it took, prints a table, and tears the lab down, then checks
that nothing of the lab is left.
"""
from __future__ import annotations

import importlib.util
import json
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .backend import repo_root
from .lab import Lab
from .topology import TopologyError, _loc, parse_topology, read_yaml_file

SCENARIOS_DIR = repo_root() / "scenarios"
RESULTS_DIR = repo_root() / "results"


class Step(BaseModel):
    """Something done before the checks: a command that must succeed, or one started in the background."""

    model_config = ConfigDict(extra="forbid")
    node: str
    run: str | None = None
    spawn: str | None = None
    wait: float = 0.0


class Check(BaseModel):
    """One line of evaluation: run ``run`` on ``node``; pass if the exit status is as
    ``expect`` says and stdout matches ``match`` (and not ``no_match``). ``retry`` seconds
    allow a protocol time to converge before the check fails."""

    model_config = ConfigDict(extra="forbid")
    name: str
    node: str
    run: str
    expect: Literal["ok", "fail"] = "ok"
    match: str | None = None
    no_match: str | None = None
    retry: float = 0.0
    timeout: float = 30.0


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topology: str = "topology.yaml"
    capture: list[str] = Field([], description="links or segments captured for the whole run")
    steps: list[Step] = []
    checks: list[Check] = []
    settle: float = Field(0.0, description="seconds to wait after bring-up before steps")


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ScenarioContext:
    """What ``scenario.py`` gets: the running lab and the means to report."""

    name: str
    lab: Lab
    folder: Path
    results: Path
    say: Callable[[str], None]
    checks: list[CheckResult] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(CheckResult(name, bool(passed), detail))
        self.say(f"{'PASS' if passed else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))
        return bool(passed)

    def metric(self, name: str, value: float) -> None:
        self.metrics[name] = value

    def pcap(self, name: str) -> Path:
        return self.results / "pcaps" / name


def load_module(path: Path, name: str | None = None) -> ModuleType:
    """Import a scenario's own Python file (scenario.py, bench.py) by path: scenario
    folders are not packages, and their names may hold dashes."""
    spec = importlib.util.spec_from_file_location(name or f"scenario_{path.parent.name.replace('-', '_')}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scenario_folder(name: str) -> Path:
    folder = SCENARIOS_DIR / name
    if not (folder / "scenario.yaml").is_file():
        have = sorted(p.name for p in SCENARIOS_DIR.iterdir() if (p / "scenario.yaml").is_file())
        raise FileNotFoundError(f"no scenario {name!r} (no {folder / 'scenario.yaml'}); scenarios: {', '.join(have)}")
    return folder


def load_scenario(folder: Path) -> ScenarioFile:
    path = folder / "scenario.yaml"
    try:
        return ScenarioFile.model_validate(read_yaml_file(path) or {})
    except ValidationError as e:
        raise TopologyError(str(path), [(_loc(err["loc"]), err["msg"]) for err in e.errors()]) from None


def run_check(lab: Lab, c: Check) -> CheckResult:
    deadline = time.monotonic() + c.retry
    while True:
        r = lab.exec(c.node, c.run, timeout=c.timeout)
        ok = (r.exit_code == 0) == (c.expect == "ok")
        detail = f"exit {r.exit_code}"
        if ok and c.match and not re.search(c.match, r.stdout):
            ok, detail = False, f"{detail}; output lacks /{c.match}/"
        if ok and c.no_match and re.search(c.no_match, r.stdout):
            ok, detail = False, f"{detail}; output has /{c.no_match}/"
        if ok or time.monotonic() >= deadline:
            if not ok:
                tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
                detail += ("; " + " | ".join(tail)) if tail else ""
            return CheckResult(c.name, ok, detail)
        time.sleep(0.5)


def run_scenario(name: str, lab_name: str | None = None, keep: bool = False,
                 say: Callable[[str], None] = print, results_root: Path | None = None) -> dict[str, Any]:
    """Run one scenario end to end and return its report (also written to report.json)."""
    folder = scenario_folder(name)
    spec = load_scenario(folder)
    results = (results_root or RESULTS_DIR) / name
    results.mkdir(parents=True, exist_ok=True)
    for old in ("report.json",):
        (results / old).unlink(missing_ok=True)
    compiled = None
    data = read_yaml_file(folder / spec.topology)
    if isinstance(data, dict) and data.get("kind") == "lab":  # a lab file: its schedule and checks run too
        from .domain import compile_lab

        compiled = compile_lab(data, str(folder / spec.topology))
        lab = Lab(compiled.topology, name=lab_name, workdir=results)
    else:
        lab = Lab(parse_topology(data, str(folder / spec.topology)), name=lab_name, workdir=results)
    ctx = ScenarioContext(name, lab, folder, results, say)
    t0 = time.monotonic()
    error = None
    try:
        lab.up(say=say)
        ctx.metric("bringup_s", round(lab.timings["up"] - lab.timings.get("images", 0), 3))
        for key in spec.capture:
            lab.capture(key, results / "pcaps" / f"{key.replace(':', '_')}.pcap")
        time.sleep(spec.settle)
        for st in spec.steps:
            if st.run:
                lab.exec(st.node, st.run, check=True, timeout=120)
            if st.spawn:
                lab.spawn(st.node, st.spawn)
            time.sleep(st.wait)
        for c in spec.checks:
            ctx.checks.append(res := run_check(lab, c))
            say(f"{'PASS' if res.passed else 'FAIL'} {res.name} ({res.detail})")
        if compiled is not None:
            from .domain.schedule import run_timeline

            ctx.checks.extend(run_timeline(lab, compiled, say))
        code = folder / "scenario.py"
        if code.is_file():
            load_module(code).run(ctx)
    except Exception as e:  # a scenario that breaks is a failed scenario with a reason
        error = f"{type(e).__name__}: {e}"
        ctx.check("scenario ran to the end", False, error)
        (results / "error.txt").write_text(traceback.format_exc())
    finally:
        try:
            lab.collect_logs()
        except Exception:
            pass
        if not keep:
            from .cleanup import leftovers

            lab.down(say=say)
            left = {k: v for k, v in leftovers(lab.name, lab.backend).items() if v}
            ctx.check("nothing of the lab remains after down", not left, json.dumps(left) if left else "no containers, namespaces, interfaces or state")
    report = {
        "scenario": name,
        "passed": bool(ctx.checks) and all(c.passed for c in ctx.checks),
        "duration_s": round(time.monotonic() - t0, 3),
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in ctx.checks],
        "metrics": ctx.metrics,
    }
    (results / "report.json").write_text(json.dumps(report, indent=2))
    return report
