"""Scenario `interop`: the strongSwan interop matrix in one lab (issue 12, description.md).

Every tested cell is one check of the report (pass or fail). Cells that were not tested
are no checks: "n/a" (the role does not use the column) and "not supported by <release>"
are counted apart (metrics cells_na, cells_unsupported; matrix.json "counts"), and the
support knowledge behind the latter is one check per release against `swanctl --list-algs`.
The table goes to results/interop/matrix.{json,md,html} (OUTPUTS, removed at the start).
"""
from __future__ import annotations

import statistics

from orchestration.interop.matrix import SUITE_RELEASE
from orchestration.interop.runner import OUTPUTS, MatrixRun, suites_in, write_results

__all__ = ["OUTPUTS", "run"]


def run(ctx, **kw) -> MatrixRun:
    suites = suites_in(ctx.lab)
    m = MatrixRun(ctx.lab, suites, say=ctx.say, **kw)
    try:
        m.prepare()
        for s in suites:
            wrong = m.check_algorithms(s)
            ctx.check(f"{s} ({SUITE_RELEASE[s]}): swanctl --list-algs agrees with the support knowledge",
                      not wrong, f"disagree on {wrong}" if wrong else "every feature listed exactly when known")
            m.run_rows(s)
    finally:
        m.collect_logs()
        if m.cells:
            write_results(m.cells, ctx.results)
    for c in m.cells:
        if c.status in ("pass", "fail"):
            ctx.check(f"{c.suite} as {c.role}: {c.column}", c.status == "pass", c.reason or c.status)
    by_status = {st: sum(c.status == st for c in m.cells) for st in ("pass", "fail", "n/a", "unsupported")}
    for st, n in by_status.items():
        ctx.metric(f"cells_{st.replace('/', '')}", n)
    ctx.say(f"matrix written to {ctx.results}/matrix.md: {by_status['pass']} pass, {by_status['fail']} fail, "
            f"{by_status['n/a']} n/a, {by_status['unsupported']} not supported (n/a and not supported untested)")
    for role in ("mn", "sg", "ha"):
        times = [c.setup_ms for c in m.cells if c.role == role and c.status == "pass" and c.setup_ms]
        if times:
            ctx.metric(f"ike_child_setup_ms_median_{role}", round(statistics.median(times), 1))
    times = [c.setup_ms for c in m.cells if c.status == "pass" and c.setup_ms]
    if times:
        ctx.metric("ike_child_setup_ms_median", round(statistics.median(times), 1))
    lost = [c.steps.get("rekey lost") for c in m.cells if isinstance(c.steps.get("rekey lost"), int)]
    if lost:
        ctx.metric("rekey_lost_packets_max", max(lost))
        ctx.metric("rekey_cells_with_loss", sum(x > 0 for x in lost))
        ctx.metric("rekey_cells", len(lost))
    return m
