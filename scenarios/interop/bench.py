"""Benchmark `interop`: IKE_SA + CHILD_SA set-up time per matrix cell, median of REPEAT,
against the same-run baseline of stock-to-stock set-up of the same release and proposal.

Cell: stock im-<s> initiates the cell's connection towards our SG-B (through SG-A's
userspace IP-IP tunnel into SG-B's realm namespace and its responder charon).
Baseline: the same im-<s>, the same proposal and certificate key type, towards the stock
responder rs-<s> of the same release (routed by SG-A, no IP-IP). Both are timed inside
im-<s> around `swanctl --initiate` (which returns once the CHILD_SA is installed), and
the two are interleaved so a slow moment of the shared machine hits both alike.
`ratio` = median(cell) / median(baseline); what it includes beyond the baseline: the
IP-IP encapsulation in Python at both SGs and our SG's responder settings.
"""
from __future__ import annotations

import statistics
from typing import Any, Callable

from orchestration.images import PEER_SUITES
from orchestration.interop import labspec as L
from orchestration.interop.matrix import KEY_TYPES, PROPOSALS, SUITE_RELEASE, missing_features
from orchestration.interop.peer import cell_name
from orchestration.interop.runner import MatrixRun
from orchestration.lab import Lab

REPEAT = 5


def bench(say: Callable[[str], None] = print, suites: tuple[str, ...] = PEER_SUITES,
          repeat: int = REPEAT, lab_name: str = "benchiop") -> dict[str, Any]:
    lab = Lab.from_dict(L.topology(suites, name=lab_name), name=lab_name,
                        workdir=f"/var/lib/testbed/bench-{lab_name}")
    lab.up(say=say)
    out: dict[str, Any] = {"repeat": repeat, "unit": "ms", "cells": {}}
    try:
        run = MatrixRun(lab, list(suites), say=say)
        run.prepare()
        for s in suites:
            node = L.initiator_node(s)
            for p in PROPOSALS:
                for k in KEY_TYPES:
                    key = f"{s} ({SUITE_RELEASE[s]}) {p} {k}"
                    if missing_features(SUITE_RELEASE[s], p, k):
                        out["cells"][key] = "not supported"
                        continue
                    conn = cell_name(p, k)
                    ours, base = [], []
                    for _ in range(repeat):
                        for name, into in ((conn, ours), ("b" + conn, base)):
                            ok, ms, text = run.initiate(node, name)
                            run.terminate(node, name)
                            if not ok or ms is None:
                                raise RuntimeError(f"{key}: {name} did not come up: {text.strip()[-300:]}")
                            into.append(ms)
                    med_o, med_b = statistics.median(ours), statistics.median(base)
                    out["cells"][key] = {"ours_ms": round(med_o, 1), "stock_ms": round(med_b, 1),
                                         "ratio": round(med_o / med_b, 2),
                                         "samples": {"ours": [round(x, 1) for x in ours],
                                                     "stock": [round(x, 1) for x in base]}}
                    say(f"interop bench {key}: ours {med_o:.0f} ms, stock-to-stock {med_b:.0f} ms")
        ratios = [c["ratio"] for c in out["cells"].values() if isinstance(c, dict)]
        if ratios:
            out["ratio_median"] = round(statistics.median(ratios), 2)
    finally:
        lab.down(say=say)
    return out
