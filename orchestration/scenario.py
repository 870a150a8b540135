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
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .backend import repo_root
from .lab import Lab
from .topology import TopologyError, _loc, read_yaml_file

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
    allow a protocol time to converge before the check fails.

    A check that expects failure must say why it fails: ``reason`` is a regular expression
    searched in stdout and stderr together (``0 received``, ``Network is unreachable``,
    ``AUTHENTICATION_FAILED``), so that a typo in the command, which fails too, does not
    pass the check."""

    model_config = ConfigDict(extra="forbid")
    name: str
    node: str
    run: str
    expect: Literal["ok", "fail"] = "ok"
    match: str | None = None
    no_match: str | None = None
    reason: str | None = Field(None, description="why an 'expect: fail' check fails: regex over stdout + stderr")
    retry: float = 0.0
    timeout: float = 30.0

    @model_validator(mode="after")
    def _fail_says_why(self) -> "Check":
        if self.expect == "fail" and not self.reason:
            raise ValueError("a check with 'expect: fail' needs 'reason': a regex over stdout+stderr "
                             "that says why the command fails (e.g. reason: '2 packets transmitted, 0 received')")
        if self.expect == "ok" and self.reason:
            raise ValueError("'reason' is for 'expect: fail' checks; use 'match' for output of a command that succeeds")
        for k in ("match", "no_match", "reason"):
            v = getattr(self, k)
            if v is not None:
                try:
                    re.compile(v)
                except re.error as e:
                    raise ValueError(f"{k}: {v!r} is not a regular expression ({e})") from None
        return self


class ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topology: str = "topology.yaml"
    capture: list[str] = Field([], description="links or segments captured for the whole run")
    steps: list[Step] = []
    checks: list[Check] = []
    settle: float = Field(0.0, description="seconds to wait after bring-up before steps")
    evidence: list[Literal["aodv", "mip", "diameter", "dhcp", "isakmp"]] = Field(
        [], description="protocols tshark must decode in the captures (on their registered ports); "
                        "every scenario with captures is also checked for malformed frames")


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
    sys.modules[spec.name] = mod  # dataclasses and pickling look their module up by name
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


def judge(c: Check, exit_code: int, stdout: str, stderr: str) -> tuple[bool, str]:
    """Decide one attempt of a check from the command's exit status and output.

    Returns (passed, detail); the detail names what was missing or present."""
    ok = (exit_code == 0) == (c.expect == "ok")
    detail = f"exit {exit_code}"
    if ok and c.reason and not re.search(c.reason, stdout + "\n" + stderr):
        ok, detail = False, f"{detail}; failed, but not because /{c.reason}/"
    if ok and c.match and not re.search(c.match, stdout):
        ok, detail = False, f"{detail}; output lacks /{c.match}/"
    if ok and c.no_match and re.search(c.no_match, stdout):
        ok, detail = False, f"{detail}; output has /{c.no_match}/"
    if not ok:
        tail = (stdout + stderr).strip().splitlines()[-3:]
        detail += ("; " + " | ".join(tail)) if tail else ""
    return ok, detail


def run_check(lab: Lab, c: Check, interval_s: float = 0.5) -> CheckResult:
    """Run one check on a lab, again every ``interval_s`` until it passes or ``c.retry``
    seconds are over. A command that cannot be run (the node is gone, the exec times out)
    fails this check with the exception in its detail; the other checks still run."""
    deadline = time.monotonic() + c.retry
    while True:
        try:
            r = lab.exec(c.node, c.run, timeout=c.timeout)
            ok, detail = judge(c, r.exit_code, r.stdout, r.stderr)
        except Exception as e:  # noqa: BLE001 - any failure to run is this check's failure
            ok, detail = False, f"could not run: {type(e).__name__}: {e}"
        if ok or time.monotonic() >= deadline:
            return CheckResult(c.name, ok, detail)
        time.sleep(interval_s)


def evidence_checks(ctx: ScenarioContext, pcaps: list[Path], expected: list[str]) -> None:
    """tshark over the scenario's pcaps (after the lab is down, so they are complete): no
    malformed frame, and each expected protocol decoded by Wireshark's own dissector."""
    from .evidence import EvidenceError, decode, judge as judge_pcaps

    try:
        decoded = [decode(p) for p in pcaps]
    except (EvidenceError, OSError, subprocess.TimeoutExpired) as e:
        ctx.check("tshark decodes the scenario's pcaps", False, str(e))
        return
    for name, ok, detail in judge_pcaps(decoded, expected):
        ctx.check(name, ok, detail)


def _declared_outputs(folder: Path) -> tuple[str, ...]:
    """File names a scenario.py declares in OUTPUTS (written under its results folder): a run
    removes them first, so a run that stops early shows none of the previous run's."""
    code = folder / "scenario.py"
    try:
        return tuple(getattr(load_module(code), "OUTPUTS", ())) if code.is_file() else ()
    except Exception:  # a broken scenario.py fails later, inside the run, with its reason
        return ()


def run_scenario(name: str, lab_name: str | None = None, keep: bool = False,
                 say: Callable[[str], None] = print, results_root: Path | None = None,
                 topology: dict | None = None, results_dir: Path | None = None) -> dict[str, Any]:
    """Run one scenario end to end and return its report (also written to report.json).
    `topology` replaces the scenario's topology file (e.g. a subset of it), `results_dir`
    the folder results/<name>."""
    folder = scenario_folder(name)
    spec = load_scenario(folder)
    results = results_dir or (results_root or RESULTS_DIR) / name
    results.mkdir(parents=True, exist_ok=True)
    for old in ("report.json", *_declared_outputs(folder)):
        (results / old).unlink(missing_ok=True)
    # Volumes keep a node's data across its restarts within one run, never across runs: the
    # MSM applies its seed (and the lab's one-time tokens) only to an empty store (issue 9).
    shutil.rmtree(results / "volumes", ignore_errors=True)
    compiled = None
    data = None if topology is not None else read_yaml_file(folder / spec.topology)
    if topology is not None:  # a generated low-level topology (e.g. `testbed interop --peer`)
        lab = Lab.from_dict(topology, name=lab_name, workdir=results)
    elif isinstance(data, dict) and data.get("kind") == "lab":  # a lab file: its schedule and checks run too
        from .domain import compile_lab

        compiled = compile_lab(data, str(folder / spec.topology))
        lab = Lab(compiled.topology, name=lab_name, workdir=results)
    else:
        lab = Lab.from_file(folder / spec.topology, name=lab_name, workdir=results)
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
        if not ctx.checks:
            ctx.check("the scenario checked something", False, "no checks in scenario.yaml and none from scenario.py")
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
    if spec.capture:
        evidence_checks(ctx, [results / "pcaps" / f"{key.replace(':', '_')}.pcap" for key in spec.capture], spec.evidence)
    report = {
        "scenario": name,
        "passed": bool(ctx.checks) and all(c.passed for c in ctx.checks),
        "duration_s": round(time.monotonic() - t0, 3),
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in ctx.checks],
        "metrics": ctx.metrics,
    }
    (results / "report.json").write_text(json.dumps(report, indent=2))
    return report
