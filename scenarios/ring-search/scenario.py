"""Ring search: the same route discoveries on a 10-MSR mesh, once with plain expanding ring
search and once, in the same lab, with weight-controlled search (claims 63-66). RREQ
transmissions (`rreq_tx`: every RREQ packet put on a link, by originators and forwarders)
are summed over all agents' status files.
"""
from __future__ import annotations

import time
from pathlib import Path

from orchestration.scenario import load_module

HERE = Path(__file__).resolve().parent
lib = load_module(HERE.parent / "handover" / "aodvlab.py", "aodvlab")

NODES = [f"n{i}" for i in range(1, 11)]
EDGES = [(1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (9, 10), (1, 6), (2, 7), (3, 8), (4, 9), (5, 10), (1, 7), (3, 9)]
DISCOVERIES = [("n1", "n5"), ("n6", "n10"), ("n2", "n9"), ("n10", "n1")]


def addr(n: str) -> str:
    return f"10.30.0.{n[1:]}"


def neighbours(n: str) -> list[str]:
    i = int(n[1:])
    return [f"n{b}" for a, b in EDGES if a == i] + [f"n{a}" for a, b in EDGES if b == i]


def configs(weighted: bool) -> dict[str, dict]:
    """A hop towards a bottom-row MSR (n6..n10) costs 5, towards a top-row one 1."""
    out = {}
    for n in NODES:
        ws = {addr(m): (5 if int(m[1:]) > 5 else 1) for m in neighbours(n)}
        out[n] = {"address": addr(n), "interfaces": [f"to-{m}" for m in neighbours(n)],
                  "managed_prefixes": ["10.30.0.0/16"], "intermediate_reply": False,
                  "weighted_search": {"enabled": weighted, "weights": ws, "fanout": 1}}
    return out


def total_tx(lab) -> int:
    return sum(s.get("counters", {}).get("rreq_tx", 0) for s in lib.statuses(lab, NODES).values())


def phase(lab, weighted: bool, say) -> dict:
    tag = "weighted" if weighted else "plain"
    lib.start_agents(lab, configs(weighted), tag)
    if not lib.agents_ready(lab, NODES, 60):
        raise RuntimeError(f"{tag}: agents did not write their status")
    # every agent knows all its neighbours (hellos) before the first discovery
    if not lib.wait(lambda: all(len(s.get("neighbours", [])) >= len(neighbours(n))
                                for n, s in lib.statuses(lab, NODES).items()), 20, 0.5):
        raise RuntimeError(f"{tag}: not every MSR heard all its neighbours")
    time.sleep(0.6)
    base = total_tx(lab)
    per = []
    for src, dst in DISCOVERIES:
        ok = "1 received" in lab.exec(src, f"ping -n -c1 -W4 {addr(dst)}", timeout=20).stdout
        time.sleep(0.7)  # status files are written every 500 ms
        now = total_tx(lab)
        inst = [i for i in lib.status(lab, src).get("route_installs", []) if i.get("dst") == addr(dst)]
        per.append({"src": src, "dst": dst, "reached": ok, "rreq_tx": now - base,
                    "hops": inst[0].get("hop_count") if inst else None,
                    "next_hop": inst[0].get("next_hop") if inst else None,
                    "discovery_ms": inst[0].get("discovery_ms") if inst else None})
        base = now
    lib.stop_agents(lab, NODES)
    say(f"{tag}: {per}")
    return {"per": per, "total": sum(p["rreq_tx"] for p in per)}


def run_comparison(lab, say) -> dict:
    return {"plain": phase(lab, False, say), "weighted": phase(lab, True, say)}


def run(ctx) -> None:
    res = run_comparison(ctx.lab, ctx.say)
    plain, weighted = res["plain"], res["weighted"]
    for tag, r in (("plain", plain), ("weighted", weighted)):
        ctx.check(f"{tag}: every discovery found its route (ping answered)", all(p["reached"] for p in r["per"]),
                  str([(p["src"], p["dst"], p["reached"]) for p in r["per"]]))
    ctx.check("weighted search sends fewer RREQs than plain expanding ring search (same discoveries)",
              weighted["total"] < plain["total"], f"weighted {weighted['total']}, plain {plain['total']}")
    n1n5 = weighted["per"][0]
    ctx.check("weighted n1 -> n5 took the cheap top row (next hop n2, 4 hops)",
              n1n5["next_hop"] == addr("n2") and n1n5["hops"] == 4, f"next hop {n1n5['next_hop']}, {n1n5['hops']} hops")
    for (p, w) in zip(plain["per"], weighted["per"]):
        ctx.metric(f"rreq_tx_{p['src']}_{p['dst']}_plain", p["rreq_tx"])
        ctx.metric(f"rreq_tx_{p['src']}_{p['dst']}_weighted", w["rreq_tx"])
    ctx.metric("rreq_tx_total_plain", plain["total"])
    ctx.metric("rreq_tx_total_weighted", weighted["total"])
    ctx.metric("rreq_ratio_weighted_over_plain", round(weighted["total"] / max(1, plain["total"]), 3))
