"""Ring search: the same route discoveries on a 10-MSR mesh, once with plain expanding ring
search and once, in the same lab, with weight-controlled search (claims 63-66). RREQ
transmissions (`rreq_tx`: every RREQ packet put on a link, by originators and forwarders)
are summed over all agents' status files.
"""
from __future__ import annotations

import time

import orchestration.aodv_variants as lib

NODES = [f"n{i}" for i in range(1, 11)]
DISCOVERIES = [("n1", "n5"), ("n6", "n10"), ("n2", "n9"), ("n10", "n1")]


def addr(n: str) -> str:
    """n<i>'s node address: topology.yaml's mesh derives 10.30.0.<i> in link order."""
    return f"10.30.0.{n[1:]}"


def configs(lab, weighted: bool) -> dict[str, dict]:
    """topology.yaml's configs (a hop towards a bottom-row MSR n6..n10 costs 5, towards a
    top-row one 1) with weighted search switched on or off."""
    return lib.lab_configs(lab, NODES, weighted_search={"enabled": weighted})


def total_tx(lab) -> int:
    return sum(s.get("counters", {}).get("rreq_tx", 0) for s in lib.statuses(lab, NODES).values())


def phase(lab, weighted: bool, say) -> dict:
    tag = "weighted" if weighted else "plain"
    cfgs = configs(lab, weighted)
    lib.start_agents(lab, cfgs, tag)
    if not lib.agents_ready(lab, NODES, 60):
        raise RuntimeError(f"{tag}: agents did not write their status")
    # every agent knows all its neighbours (hellos) before the first discovery
    if not lib.wait(lambda: all(len(s.get("neighbours", [])) >= len(cfgs[n]["interfaces"])
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


# Weighted over plain RREQ transmissions, summed over the discoveries both runs made (a
# discovery is skipped when an earlier flood left a valid reverse route, e.g. n10 -> n1 in
# some plain runs): measured 0.26-0.29 (42/145, 42/162; 33/118 over the same discoveries). The bound
# leaves a margin of 0.21 for a ring retried under load; plain against itself (1.0) fails it.
MAX_RREQ_RATIO = 0.5
# n6 -> n10: the discovery where the weights change the route. Weighted search takes the
# cheap top row, 6 hops via n1 (weight 10 against 20 for the bottom row); plain AODV takes
# whichever RREQ reached n10 first: the 4-hop bottom row or a 5-hop path over n3-n9
# (both measured). n1 -> n5 is no test of the weights: the top row is its only 4-hop path.
CHEAP_N6_N10 = {"next_hop": addr("n1"), "hops": 6}


def judge(plain: dict, weighted: dict) -> list[tuple[str, bool, str]]:
    """The comparison checks from the two runs' results (``phase`` output: ``per`` is one dict
    per discovery in DISCOVERIES order with reached, rreq_tx, hops, next_hop; ``total``).
    Returns (name, passed, detail) per check; claims 63-66."""
    out = []
    for tag, r in (("plain", plain), ("weighted", weighted)):
        out.append((f"{tag}: every discovery found its route (ping answered)", all(p["reached"] for p in r["per"]),
                    str([(p["src"], p["dst"], p["reached"]) for p in r["per"]])))
    both = [(p, w) for p, w in zip(plain["per"], weighted["per"]) if p["rreq_tx"] > 0 and w["rreq_tx"] > 0]
    tp, tw = sum(p["rreq_tx"] for p, _ in both), sum(w["rreq_tx"] for _, w in both)
    ratio = tw / max(1, tp)
    out.append((f"weighted search sends at most {MAX_RREQ_RATIO} x the RREQs of plain expanding ring search "
                f"over the same discoveries (measured 0.26-0.29)", len(both) >= 3 and ratio <= MAX_RREQ_RATIO,
                f"{len(both)} discoveries made by both: weighted {tw}, plain {tp}, ratio {ratio:.2f} "
                f"(all: weighted {weighted['total']}, plain {plain['total']})"))
    p, w = plain["per"][1], weighted["per"][1]
    assert (p["src"], p["dst"]) == ("n6", "n10")
    out.append(("the weights change the route: weighted n6 -> n10 takes the cheap top row (next hop n1, 6 hops), "
                "plain a shorter one",
                {k: w[k] for k in CHEAP_N6_N10} == CHEAP_N6_N10 and 0 < (p["hops"] or 0) < CHEAP_N6_N10["hops"],
                f"plain next hop {p['next_hop']}, {p['hops']} hops; weighted next hop {w['next_hop']}, {w['hops']} hops"))
    return out


def run(ctx) -> None:
    res = run_comparison(ctx.lab, ctx.say)
    plain, weighted = res["plain"], res["weighted"]
    for name, ok, detail in judge(plain, weighted):
        # claims: weight-controlled expanding ring search
        ctx.check(name, ok, detail, claims=[63, 64, 65, 66])
    for (p, w) in zip(plain["per"], weighted["per"]):
        ctx.metric(f"rreq_tx_{p['src']}_{p['dst']}_plain", p["rreq_tx"])
        ctx.metric(f"rreq_tx_{p['src']}_{p['dst']}_weighted", w["rreq_tx"])
        ctx.metric(f"hops_{p['src']}_{p['dst']}_plain", p["hops"] or 0)
        ctx.metric(f"hops_{p['src']}_{p['dst']}_weighted", w["hops"] or 0)
    ctx.metric("rreq_tx_total_plain", plain["total"])
    ctx.metric("rreq_tx_total_weighted", weighted["total"])
    ctx.metric("rreq_ratio_weighted_over_plain", round(weighted["total"] / max(1, plain["total"]), 3))
