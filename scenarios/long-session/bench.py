"""Benchmark: a long session (8 x ACTIVE_ROUTE_TIMEOUT) with gratuitous RREPs against its
baselines from the same lab and run: no refresh at all, and the requester's own refresh.
Numbers: gaps (silences > 200 ms), longest silence, discoveries, RREQ transmissions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from orchestration.lab import Lab
from orchestration.scenario import load_module

HERE = Path(__file__).resolve().parent


def bench(say: Callable[[str], None] = print, lab_name: str = "benchls") -> dict[str, Any]:
    sc = load_module(HERE / "scenario.py", "long_session_scenario")
    lab = Lab.from_file(HERE / "topology.yaml", name=lab_name, workdir=f"/var/lib/testbed/bench-{lab_name}")
    lab.up(say=say)
    try:
        res = sc.run_comparison(lab, say)
    finally:
        lab.down(say=say)
    keys = ("gaps", "longest_gap_ms", "longest_silence_ms", "lost", "discoveries_a", "rreq_tx", "grat_rrep_sent")
    out: dict[str, Any] = {tag: {k: (len(r[k]) if k == "gaps" else r.get(k)) for k in keys} for tag, r in res.items()}
    out["active_route_timeout_ms"] = sc.ART_MS
    out["stream_s"] = sc.SECONDS
    out["rreq_tx_ratio_with_over_refresh"] = round(res["with"]["rreq_tx"] / max(1, res["refresh"]["rreq_tx"]), 3)
    out["rreq_tx_ratio_with_over_none"] = round(res["with"]["rreq_tx"] / max(1, res["none"]["rreq_tx"]), 3)
    out["baseline"] = "same lab and run: 'none' (no gratuitous RREP, no refresh) and 'refresh' (requester refresh only)"
    return out


if __name__ == "__main__":
    print(json.dumps(bench(), indent=2))
