"""Benchmark: interruption and loss per move of the MN, with the handover extension and
with plain AODV, all measured in one lab in one run (see scenario.py).

Baselines: plain AODV with the same carrier (link-layer) detection, and plain AODV that
learns of the lost sink from missed hellos only. Ratios are extension / baseline of the
interruption (ms) per move and direction, medians over the two moves.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Callable

from orchestration.lab import Lab
from orchestration.scenario import load_module

HERE = Path(__file__).resolve().parent


def _scenario():
    mod = load_module(HERE / "scenario.py", "handover_scenario")
    return mod


def bench(say: Callable[[str], None] = print, lab_name: str = "benchho") -> dict[str, Any]:
    sc = _scenario()
    lab = Lab.from_file(HERE / "topology.yaml", name=lab_name, workdir=f"/var/lib/testbed/bench-{lab_name}")
    lab.up(say=say)
    try:
        res = sc.run_comparison(lab, say)
    finally:
        lab.down(say=say)
    out: dict[str, Any] = {"rate_pps": sc.RATE, "moves": []}
    for i in range(len(sc.MOVES)):
        mv = {"to": res["ext"]["moves"][i]["to"], "move_ms": res["ext"]["moves"][i]["move_ms"],
              "ext_signalling_ms": res["ext"]["moves"][i]["signalling_ms"]}
        for d in ("up", "down"):
            mv[d] = {tag: {"interruption_ms": r["moves"][i][d]["interruption_ms"], "lost": r["moves"][i][d]["lost"]}
                     for tag, r in res.items()}
            mv[d]["in_flight_bound"] = res["ext"]["moves"][i][d]["in_flight_bound"]
        out["moves"].append(mv)
    for base in ("plain", "hello"):
        for d in ("up", "down"):
            ratios = [m[d]["ext"]["interruption_ms"] / max(0.1, m[d][base]["interruption_ms"]) for m in out["moves"]]
            out[f"interruption_ratio_ext_over_{base}_{d}"] = round(statistics.median(ratios), 3)
    out["baseline"] = ("plain AODV in the same lab and run: 'plain' with carrier detection, "
                       "'hello' with hello-loss detection only; up = MN -> h, down = h -> MN")
    return out


if __name__ == "__main__":
    print(json.dumps(bench(), indent=2))
