"""Long session: a 100/s UDP stream a -> d over 3 hops lasting 8 x ACTIVE_ROUTE_TIMEOUT, with
routes living only as long as their RREP said (`refresh_on_use: false`, the patent's
premise). Once with gratuitous RREPs from the reply source d (claims 67-70), once, in the
same lab, without; the requester's own refresh threshold is the same in both runs.
"""
from __future__ import annotations

import time
from pathlib import Path

from orchestration.scenario import load_module

HERE = Path(__file__).resolve().parent
lib = load_module(HERE.parent / "handover" / "aodvlab.py", "aodvlab")

NODES = ["a", "b", "c", "d"]
ADDR = {n: f"10.40.0.{i}" for i, n in enumerate(NODES, start=1)}
IFS = {"a": ["to-b"], "b": ["to-a", "to-c"], "c": ["to-b", "to-d"], "d": ["to-c"]}
ART_MS = 1000                  # ACTIVE_ROUTE_TIMEOUT; a RREP's lifetime is MY_ROUTE_TIMEOUT = 2 x ART
SECONDS = 8 * ART_MS / 1000    # >= 3 x ACTIVE_ROUTE_TIMEOUT
RATE = 100.0
PORT = 5007
GAP_S = 0.2                    # a silence at the receiver longer than this is a gap (nominal 10 ms)


# with: gratuitous RREPs from the reply source; refresh: none, the requester re-discovers
# 500 ms before its route runs out (what a node does on its own); none: neither, the route
# simply runs out under the stream (RFC 3561 with refresh_on_use off)
VARIANTS = {"none": {"gratuitous": False, "refresh_ms": 0},
            "refresh": {"gratuitous": False, "refresh_ms": 500},
            "with": {"gratuitous": True, "refresh_ms": 500}}


def configs(gratuitous: bool, refresh_ms: int = 500) -> dict[str, dict]:
    return {n: {"address": ADDR[n], "interfaces": IFS[n], "managed_prefixes": ["10.40.0.0/16"],
                "refresh_on_use": False, "route_refresh_threshold_ms": refresh_ms,
                "timers": {"active_route_timeout_ms": ART_MS},
                "gratuitous": {"enabled": gratuitous, "threshold_ms": 1300}} for n in NODES}


def phase(lab, tag: str, say) -> dict:
    lib.start_agents(lab, configs(VARIANTS[tag]["gratuitous"], VARIANTS[tag]["refresh_ms"]), tag)
    if not lib.agents_ready(lab, NODES):
        raise RuntimeError(f"{tag}: agents did not write their status")
    deg = {"a": 1, "b": 2, "c": 2, "d": 1}
    lib.wait(lambda: all(len(s.get("neighbours", [])) >= deg[n] for n, s in lib.statuses(lab, NODES).items()), 15, 0.5)
    lib.start_stream(lab, "a", "d", ADDR["d"], PORT, RATE, SECONDS, tag)
    sent, recs = lib.stream_result(lab, "a", "d", tag, timeout=SECONDS + 20)
    time.sleep(0.6)
    st = lib.statuses(lab, NODES)
    lib.stop_agents(lab, NODES)
    w = lib.window(sent, recs, sent["t0"], sent["t0"] + SECONDS)
    gs = lib.gaps(sent, recs, GAP_S)
    c = {n: st[n].get("counters", {}) for n in NODES}
    r = {"sent": w["sent"], "lost": w["lost"], "gaps": gs, "longest_gap_ms": max((g["ms"] for g in gs), default=0.0),
         "longest_silence_ms": max((g["ms"] for g in lib.gaps(sent, recs, 0.0)), default=0.0),
         "discoveries_a": c["a"].get("discoveries_started", 0),
         "rreq_refresh_a": c["a"].get("rreq_refresh", 0),
         "routes_expired": sum(c[n].get("routes_expired", 0) for n in NODES),
         "grat_rrep_sent": sum(c[n].get("grat_rrep_sent", 0) for n in NODES),
         "rreq_tx": sum(c[n].get("rreq_tx", 0) for n in NODES),
         "buffered_a": c["a"].get("buffered", 0)}
    say(f"{tag}: {r}")
    return r


def run_comparison(lab, say, variants=tuple(VARIANTS)) -> dict:
    lib.install_stream(lab, ["a", "d"])
    return {tag: phase(lab, tag, say) for tag in variants}


NAMES = {"none": "without gratuitous RREP or refresh", "refresh": "without gratuitous RREP, requester refresh",
         "with": "with gratuitous RREPs"}


def run(ctx) -> None:
    res = run_comparison(ctx.lab, ctx.say)
    wi = res["with"]
    ctx.check(f"the stream lasted >= 3 x ACTIVE_ROUTE_TIMEOUT ({ART_MS} ms) in every run",
              min(r["sent"] for r in res.values()) >= 3 * ART_MS / 1000 * RATE,
              ", ".join(f"{t} {r['sent']}" for t, r in res.items()) + f" datagrams at {RATE:.0f}/s")
    ctx.check("with gratuitous RREPs: no gap, nothing lost, a single discovery (claims 67-70)",
              not wi["gaps"] and wi["lost"] == 0 and wi["discoveries_a"] == 1 and wi["grat_rrep_sent"] >= 3,
              f"gaps {wi['gaps']}, lost {wi['lost']}, discoveries {wi['discoveries_a']}, gratuitous RREPs {wi['grat_rrep_sent']}")
    for tag in ("none", "refresh"):
        r = res[tag]
        ctx.check(f"{NAMES[tag]}: no gratuitous RREP, and the route had to be found again (what happened is in the detail)",
                  r["grat_rrep_sent"] == 0 and r["discoveries_a"] > 1,
                  f"discoveries {r['discoveries_a']}, gaps {r['gaps']}, lost {r['lost']}, routes expired "
                  f"{r['routes_expired']}, RREQ transmissions {r['rreq_tx']}")
    for tag, r in res.items():
        ctx.metric(f"{tag}_gaps", len(r["gaps"]))
        ctx.metric(f"{tag}_longest_silence_ms", r["longest_silence_ms"])
        ctx.metric(f"{tag}_lost", r["lost"])
        ctx.metric(f"{tag}_discoveries", r["discoveries_a"])
        ctx.metric(f"{tag}_rreq_tx", r["rreq_tx"])
        ctx.metric(f"{tag}_routes_expired", r["routes_expired"])
        ctx.metric(f"{tag}_grat_rrep_sent", r["grat_rrep_sent"])
