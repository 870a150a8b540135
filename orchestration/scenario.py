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
from .checks.model import AnyCheck, CommandCheck, check_points
from .checks.session import CheckResult, CheckSession, judge, run_check
from .lab import Lab
from .topology import TopologyError, _loc, read_yaml_file

Check = CommandCheck  # the command check, by its old name (orchestration.checks.model has every kind)
SCENARIOS_DIR = repo_root() / "scenarios"
RESULTS_DIR = repo_root() / "results"


class Step(BaseModel):
    """Something done before the checks: a command that must succeed, or one started in the
    background. A ``name`` makes it a point counter checks can count from or to
    (``from: before NAME``, ``to: after NAME``)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    node: str
    run: str | None = None
    spawn: str | None = None
    wait: float = 0.0


class ScenarioFile(BaseModel):
    """A scenario folder's ``scenario.yaml``: its topology file, links captured for the whole
    run, steps (commands, waits), checks of every kind and the protocols its pcaps must show."""

    model_config = ConfigDict(extra="forbid")
    topology: str = "topology.yaml"
    capture: list[str] = Field([], description="links or segments captured for the whole run")
    steps: list[Step] = []
    checks: list[AnyCheck] = Field([], description="checks of every kind (orchestration.checks.model)")
    settle: float = Field(0.0, description="seconds to wait after bring-up before steps")
    evidence: list[Literal["aodv", "mip", "diameter", "dhcp", "isakmp"]] = Field(
        [], description="protocols tshark must decode in the captures (on their registered ports); "
                        "every scenario with captures is also checked for malformed frames")

    @model_validator(mode="after")
    def _points_and_times(self) -> "ScenarioFile":
        steps = {st.name for st in self.steps if st.name}
        for i, c in enumerate(self.checks):
            if c.at is not None:
                raise ValueError(f"checks[{i}] ({c.name!r}): 'at' is for lab files (a schedule's timeline); "
                                 "scenario.yaml checks run after the steps, in order")
        for i, where, name in check_points(self.checks):
            if name not in steps:
                raise ValueError(f"checks[{i}]: no step named {name!r} to count {where}; name a step "
                                 f"('name: {name}' under steps) or use start/end (named steps: {sorted(steps) or 'none'})")
        return self


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

    def check(self, name: str, passed: bool, detail: str = "", claims: list[int] | tuple[int, ...] = ()) -> bool:
        """Record a check decided in scenario.py; ``claims`` it exercises show in ``testbed claims``."""
        self.checks.append(CheckResult(name, bool(passed), detail, list(claims)))
        self.say(f"{'PASS' if passed else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))
        return bool(passed)

    def metric(self, name: str, value: float) -> None:
        """Record a measured value (unit in its name, e.g. ``gap_ms``) for the report."""
        self.metrics[name] = value

    def pcap(self, name: str) -> Path:
        """Path for a capture file of this run: ``results/<scenario>/pcaps/<name>``."""
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
    """The folder of scenario ``name``. Raises FileNotFoundError listing the scenarios there are."""
    folder = SCENARIOS_DIR / name
    if not (folder / "scenario.yaml").is_file():
        have = sorted(p.name for p in SCENARIOS_DIR.iterdir() if (p / "scenario.yaml").is_file())
        raise FileNotFoundError(f"no scenario {name!r} (no {folder / 'scenario.yaml'}); scenarios: {', '.join(have)}")
    return folder


def load_scenario(folder: Path) -> ScenarioFile:
    """Read and validate ``folder/scenario.yaml``. Raises TopologyError naming the file and each
    field path that is wrong, DuplicateKeyError for a key given twice."""
    path = folder / "scenario.yaml"
    try:
        return ScenarioFile.model_validate(read_yaml_file(path) or {})
    except ValidationError as e:
        raise TopologyError(str(path), [(_loc(err["loc"]), err["msg"]) for err in e.errors()]) from None


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
    captures = {key: results / "pcaps" / f"{key.replace(':', '_')}.pcap" for key in spec.capture}
    session = CheckSession(lab, spec.checks, results, captures=captures)
    t0 = time.monotonic()
    error = None
    try:
        lab.up(say=say)
        ctx.metric("bringup_s", round(lab.timings["up"] - lab.timings.get("images", 0), 3))
        for key, path in captures.items():
            lab.capture(key, path)
        time.sleep(spec.settle)
        session.start()
        for st in spec.steps:
            session.mark("before", st.name)
            if st.run:
                lab.exec(st.node, st.run, check=True, timeout=120)
            if st.spawn:
                lab.spawn(st.node, st.spawn)
            time.sleep(st.wait)
            session.mark("after", st.name)
        for c in spec.checks:
            ctx.checks.append(res := session.run(c))
            say(f"{'PASS' if res.passed else 'FAIL'} {res.name} ({res.detail})")
        session.close()
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
        session.close()
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
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail, "claims": c.claims} for c in ctx.checks],
        "metrics": ctx.metrics,
    }
    (results / "report.json").write_text(json.dumps(report, indent=2))
    return report
