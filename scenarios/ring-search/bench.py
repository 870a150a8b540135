"""Benchmark: RREQ transmissions for the same discoveries with weighted and with plain
expanding ring search (the scenario's 10-MSR mesh, one lab, one run), and route discovery
time over 1, 3 and 6 hops on a chain of 7 MSRs (plain AODV, default RFC timers, hellos off),
beside the round-trip time over the route it found (the network's own cost of those hops).
"""
from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from orchestration.lab import Lab
from orchestration.scenario import load_module

HERE = Path(__file__).resolve().parent
CHAIN = [f"p{i}" for i in range(1, 8)]
HOPS = {1: "p2", 3: "p4", 6: "p7"}
REPEAT = 3
# hellos off: with them a neighbour's route exists before anyone asks, and a 1-hop
# "discovery" would never happen
CHAIN_LAB = {"kind": "lab", "name": "chain", "aodv": {"prefix": "10.50.0.0/24", "chain": CHAIN, "start": False,
                                                      "hello_enabled": False, "options": {"intermediate_reply": False}}}


def _load(name: str, path: Path):
    mod = load_module(path, name)
    return mod


def discovery_times(say, lab_name: str) -> dict[str, Any]:
    import orchestration.aodv_variants as lib

    from orchestration.domain import compile_lab

    lab = Lab(compile_lab(CHAIN_LAB, "ring-search bench chain").topology, name=lab_name,
              workdir=f"/var/lib/testbed/bench-{lab_name}")
    cfgs = lib.lab_configs(lab, CHAIN)
    addr = {n: cfgs[n]["address"] for n in CHAIN}
    lab.up(say=say)
    out: dict[str, Any] = {}
    try:
        samples: dict[int, list[dict]] = {h: [] for h in HOPS}
        for rep in range(REPEAT):
            lib.start_agents(lab, cfgs, f"chain{rep}")
            if not lib.agents_ready(lab, CHAIN, 60):
                raise RuntimeError("chain agents did not start")
            time.sleep(1.0)
            for hops, dst in HOPS.items():
                lab.exec("p1", f"ping -n -c1 -W5 {addr[dst]}", timeout=20)
                rtt = lab.exec("p1", f"ping -n -c5 -i0.2 -W2 {addr[dst]}", timeout=20).stdout
                m = re.search(r"= [\d.]+/([\d.]+)/", rtt)
                time.sleep(0.6)
                inst = [x for x in lib.status(lab, "p1").get("route_installs", []) if x.get("dst") == addr[dst]]
                if inst:
                    samples[hops].append({"discovery_ms": inst[0]["discovery_ms"], "hops": inst[0]["hop_count"],
                                          "rreqs": inst[0].get("rreq_sent"), "rtt_ms": float(m.group(1)) if m else None})
            lib.stop_agents(lab, CHAIN)
        for hops, s in samples.items():
            d = [x["discovery_ms"] for x in s]
            r = [x["rtt_ms"] for x in s if x["rtt_ms"] is not None]
            out[f"{hops}_hops"] = {"discovery_ms_median": round(statistics.median(d), 1) if d else None,
                                   "discovery_ms": d, "rreqs": [x["rreqs"] for x in s],
                                   "found_hops": [x["hops"] for x in s],
                                   "rtt_ms_median": round(statistics.median(r), 3) if r else None,
                                   "discovery_over_rtt": round(statistics.median(d) / statistics.median(r), 1) if d and r else None}
            say(f"discovery over {hops} hops: {out[f'{hops}_hops']}")
    finally:
        lab.down(say=say)
    return out


def bench(say: Callable[[str], None] = print, lab_name: str = "benchrs") -> dict[str, Any]:
    sc = _load("ring_search_scenario", HERE / "scenario.py")
    lab = Lab.from_file(HERE / "topology.yaml", name=lab_name, workdir=f"/var/lib/testbed/bench-{lab_name}")
    lab.up(say=say)
    try:
        res = sc.run_comparison(lab, say)
    finally:
        lab.down(say=say)
    out: dict[str, Any] = {
        "rreq_tx": {tag: {"total": r["total"], **{f"{p['src']}->{p['dst']}": p["rreq_tx"] for p in r["per"]}}
                    for tag, r in res.items()},
        "rreq_ratio_weighted_over_plain": round(res["weighted"]["total"] / max(1, res["plain"]["total"]), 3),
        "discovery_ms_weighted_vs_plain": {f"{p['src']}->{p['dst']}": [p["discovery_ms"], w["discovery_ms"]]
                                           for p, w in zip(res["plain"]["per"], res["weighted"]["per"])},
    }
    out["route_discovery"] = discovery_times(say, lab_name + "c")
    out["baseline"] = ("plain expanding ring search on the same mesh in the same run; discovery times beside the "
                       "ping RTT over the route found (RFC 3561 default timers, TTL_START 1, TTL_INCREMENT 2)")
    return out


if __name__ == "__main__":
    print(json.dumps(bench(), indent=2))
