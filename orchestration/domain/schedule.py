"""Running a compiled lab: its schedule of moves and link events, and its checks, on a
timeline that starts when the lab is up.

``{at: 2.5, move: a, to: visited}`` re-attaches a's movable interface (the one the
compiler attached where a starts, ``Compiled.ports``) to segment ``visited`` (Lab.move);
``to: home`` is the M-VPN's home LAN, ``to: <msr>`` that MSR's radio cell (also for a
mobile node of the ``aodv:`` mesh).
``{at: 4, link: a, up: false}`` takes that interface's carrier away (Lab.set_link).
A check with ``at`` runs at that time; checks without run after the last event.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ..checks.session import CheckSession
from ..lab import Lab
from ..scenario import CheckResult, run_check
from .compiler import Compiled, cell, lan
from .homedomain import cell_name
from .model import Event


def target_segment(compiled: Compiled, node: str, to: str) -> str:
    """The segment a move of ``node`` to ``to`` (home, an MSR, an access network) means."""
    lab = compiled.lab
    if lab.aodv and node in lab.aodv.mobile_nodes:  # a mesh MN moves between radio cells
        return cell(to)
    x = lab.mobile_nodes.get(node) or lab.hosts[node]
    if to == "home":
        return lan(x.mvpn)
    if to in lab.mvpns[x.mvpn].msrs:
        return cell_name(lab.mvpns[x.mvpn], to)
    return to


def apply_event(lab: Lab, compiled: Compiled, ev: Event) -> str:
    """Carry out one schedule entry; returns a line saying what was done."""
    if ev.move is not None:
        assert ev.to is not None
        seg = target_segment(compiled, ev.move, ev.to)
        took = lab.move(compiled.ports[ev.move], seg, flap=True)
        return f"moved {ev.move} to {ev.to} ({seg}) in {took * 1000:.0f} ms"
    assert ev.link is not None and ev.up is not None
    lab.set_link(compiled.ports[ev.link], ev.up)
    return f"link of {ev.link} {'up' if ev.up else 'down'}"


def run_timeline(lab: Lab, compiled: Compiled, say: Callable[[str], None] = print) -> list[CheckResult]:
    """Apply the schedule and run the checks in time order from now; returns check results.
    The checks share one orchestration.checks.CheckSession: started now (captures for pcap
    checks, streams for continuity checks, counters at 'start'), marked before and after
    each named schedule entry, closed at the end."""
    items: list[tuple[float, int, Any]] = [(ev.at, 0, ev) for ev in compiled.lab.schedule]
    last = max([ev.at for ev in compiled.lab.schedule], default=0.0)
    items += [(c.at if c.at is not None else last, 1, c) for c in compiled.lab.checks]
    items.sort(key=lambda t: (t[0], t[1]))
    session = CheckSession(lab, list(compiled.lab.checks), lab.workdir, addresses=compiled.addresses)
    session.start()
    t0 = time.monotonic()
    results = []
    try:
        for at, _, item in items:
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if isinstance(item, Event):
                session.mark("before", item.name)
                say(f"t={time.monotonic() - t0:.1f}s {apply_event(lab, compiled, item)}")
                session.mark("after", item.name)
            else:
                res = session.run(item)
                say(f"{'PASS' if res.passed else 'FAIL'} {res.name} ({res.detail})")
                results.append(res)
    finally:
        session.close()
    return results


def report_path(file: str | Path) -> Path:
    """Where ``testbed run FILE`` writes its report: results/examples/<stem>/report.json for
    a file in examples/, results/<stem>/report.json otherwise (read by ``testbed claims``)."""
    from ..scenario import RESULTS_DIR

    p = Path(file)
    return RESULTS_DIR / ("examples" if p.parent.name == "examples" else "") / p.stem / "report.json"


def run_lab(compiled: Compiled, lab_name: str | None = None, keep: bool = False,
            say: Callable[[str], None] = print, report: Path | None = None) -> dict[str, Any]:
    """Bring the lab up, run its timeline, take it down (unless ``keep``). Returns a report
    ``{lab, passed, checks: [{name, passed, detail, claims}], bringup_s}`` and writes it to
    ``report`` if given; a bring-up failure is a failed check with the reason, never an exception."""
    lab = Lab(compiled.topology, name=lab_name)
    results: list[CheckResult] = []
    t = time.monotonic()
    try:
        lab.up(say=say)
        bringup = time.monotonic() - t
        results = run_timeline(lab, compiled, say)
    except Exception as e:  # a lab that breaks is a failed run with a reason
        bringup = time.monotonic() - t
        results.append(CheckResult("lab ran to the end", False, f"{type(e).__name__}: {e}"))
    finally:
        if not keep:
            try:
                lab.collect_logs()
            except Exception:
                pass
            lab.down(say=say)
    out = {"lab": lab.name, "passed": bool(results) and all(r.passed for r in results), "bringup_s": round(bringup, 3),
           "checks": [{"name": r.name, "passed": r.passed, "detail": r.detail, "claims": r.claims} for r in results]}
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(out, indent=2))
    return out
