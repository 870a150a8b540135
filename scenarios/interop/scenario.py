"""Scenario `interop`: the strongSwan interop matrix in one lab (issue 12, description.md).

Every cell is one check of the report (pass, or "not supported by <release>" which is
not a failure); the table goes to results/interop/matrix.{json,md,html}.
"""
from __future__ import annotations

import statistics

from orchestration.interop.matrix import SUITE_RELEASE
from orchestration.interop.runner import MatrixRun, suites_in, write_results


def run(ctx, **kw) -> MatrixRun:
    suites = suites_in(ctx.lab)
    m = MatrixRun(ctx.lab, suites, say=ctx.say, **kw)
    m.prepare()
    for s in suites:
        wrong = m.check_algorithms(s)
        ctx.check(f"{s} ({SUITE_RELEASE[s]}): swanctl --list-algs agrees with the support knowledge",
                  not wrong, f"listed lacks {wrong}" if wrong else "all needed algorithms listed")
        m.run_rows(s)
    for c in m.cells:
        ok = c.status in ("pass", "unsupported", "n/a")
        ctx.check(f"{c.suite} as {c.role}: {c.column}", ok, c.reason if c.reason else c.status)
    doc = write_results(m.cells, ctx.results)
    ctx.say(f"matrix written to {ctx.results}/matrix.md ({len(doc['cells'])} cells)")
    times = [c.setup_ms for c in m.cells if c.status == "pass" and c.setup_ms]
    if times:
        ctx.metric("ike_child_setup_ms_median", round(statistics.median(times), 1))
    lost = [c.steps.get("rekey lost") for c in m.cells if isinstance(c.steps.get("rekey lost"), int)]
    if lost:
        ctx.metric("rekey_lost_packets_max", max(lost))
    return m
