"""Long session: a 100/s UDP stream a -> d over 3 hops lasting 8 x ACTIVE_ROUTE_TIMEOUT, with
routes living only as long as their RREP said (`refresh_on_use: false`, the patent's
premise). Once with gratuitous RREPs from the reply source d (claims 67-70), once, in the
same lab, without; the requester's own refresh threshold is the same in both runs.
"""
from __future__ import annotations

import time

import orchestration.aodv_variants as lib

NODES = ["a", "b", "c", "d"]
ADDR = {n: f"10.40.0.{i}" for i, n in enumerate(NODES, start=1)}
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


def configs(lab, gratuitous: bool, refresh_ms: int = 500) -> dict[str, dict]:
    """topology.yaml's chain with short, unrefreshed routes and one variant's settings."""
    return lib.lab_configs(lab, NODES, refresh_on_use=False, route_refresh_threshold_ms=refresh_ms,
                           timers={"active_route_timeout_ms": ART_MS},
                           gratuitous={"enabled": gratuitous, "threshold_ms": 1300})


def phase(lab, tag: str, say) -> dict:
    cfgs = configs(lab, VARIANTS[tag]["gratuitous"], VARIANTS[tag]["refresh_ms"])
    lib.start_agents(lab, cfgs, tag)
    if not lib.agents_ready(lab, NODES):
        raise RuntimeError(f"{tag}: agents did not write their status")
    lib.wait(lambda: all(len(s.get("neighbours", [])) >= len(cfgs[n]["interfaces"])
                         for n, s in lib.statuses(lab, NODES).items()), 15, 0.5)
    expired_before = lib.counters(lab, "a").get("routes_expired", 0)
    lib.start_stream(lab, "a", "d", ADDR["d"], PORT, RATE, SECONDS, tag)
    t_stream = time.time()
    # a's route expiries during the session: read when the stream's schedule ends (after it,
    # with no more data, routes run out as they should)
    time.sleep(max(0.0, t_stream + SECONDS - 0.2 - time.time()))
    expired_in_session = lib.counters(lab, "a").get("routes_expired", 0) - expired_before
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
         "routes_expired_a": expired_in_session,
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


# RREQ bound from the measured runs: with gratuitous RREPs 16 RREQ transmissions (all of them
# the first ring search), with the requester's refresh 44-49: ratio 0.33-0.36; the bound leaves
# ~0.25 of margin and the baseline against itself (1.0) fails it. Against `none` the RREQ count
# is no test (measured 16 vs 23-30, ratio 0.53-0.70: each of its re-discoveries starts at the
# known hop count and costs ~1.5 RREQs); what differs there is the route lapsing, checked below.
MAX_RREQ_OVER_REFRESH = 0.6
MIN_BASELINE_DISCOVERIES = 3   # measured 7-9 (none) and 14-16 (refresh); the extension: 1


def judge(res: dict[str, dict]) -> list[tuple[str, bool, str]]:
    """The comparison checks from the three runs (``phase`` output per variant: sent, lost,
    gaps, discoveries_a, rreq_tx, routes_expired_a, grat_rrep_sent). What the extension buys
    here is not loss or gaps (a buffers, so the baselines rarely lose anything): it is one
    discovery, a route at a that never lapses, and fewer RREQ floods. Claims 67-70."""
    wi, no, rf = res["with"], res["none"], res["refresh"]
    out = [(f"the stream lasted >= 3 x ACTIVE_ROUTE_TIMEOUT ({ART_MS} ms) in every run",
            min(r["sent"] for r in res.values()) >= 3 * ART_MS / 1000 * RATE,
            ", ".join(f"{t} {r['sent']}" for t, r in res.items()) + f" datagrams at {RATE:.0f}/s"),
           ("with gratuitous RREPs: no gap, nothing lost (the baselines often manage this too: not the comparison)",
            not wi["gaps"] and wi["lost"] == 0, f"gaps {wi['gaps']}, lost {wi['lost']}"),
           ("only the extension sends gratuitous RREPs (>= 3 with, 0 without)",
            wi["grat_rrep_sent"] >= 3 and no["grat_rrep_sent"] == 0 and rf["grat_rrep_sent"] == 0,
            f"with {wi['grat_rrep_sent']}, none {no['grat_rrep_sent']}, refresh {rf['grat_rrep_sent']}"),
           (f"a single discovery with gratuitous RREPs; without, the route had to be found again "
            f"(>= {MIN_BASELINE_DISCOVERIES} discoveries in both baselines)",
            wi["discoveries_a"] == 1 and min(no["discoveries_a"], rf["discoveries_a"]) >= MIN_BASELINE_DISCOVERIES,
            f"with {wi['discoveries_a']}, none {no['discoveries_a']}, refresh {rf['discoveries_a']}"),
           ("a's route never lapsed during the session with gratuitous RREPs; without anything it did",
            wi["routes_expired_a"] == 0 and no["routes_expired_a"] >= 1,
            f"routes expired at a: with {wi['routes_expired_a']}, none {no['routes_expired_a']}, "
            f"refresh {rf['routes_expired_a']}"),
           (f"RREQ transmissions with gratuitous RREPs <= {MAX_RREQ_OVER_REFRESH} x those of the requester's "
            f"own refresh (measured 0.33-0.36)",
            wi["rreq_tx"] <= MAX_RREQ_OVER_REFRESH * rf["rreq_tx"],
            f"with {wi['rreq_tx']}, refresh {rf['rreq_tx']} (none {no['rreq_tx']}, not compared)")]
    return out


def run(ctx) -> None:
    res = run_comparison(ctx.lab, ctx.say)
    for name, ok, detail in judge(res):
        # claims: gratuitous route replies for active sessions
        ctx.check(name, ok, detail, claims=[67, 68, 69, 70])
    for tag, r in res.items():
        ctx.metric(f"{tag}_gaps", len(r["gaps"]))
        ctx.metric(f"{tag}_longest_silence_ms", r["longest_silence_ms"])
        ctx.metric(f"{tag}_lost", r["lost"])
        ctx.metric(f"{tag}_discoveries", r["discoveries_a"])
        ctx.metric(f"{tag}_rreq_tx", r["rreq_tx"])
        ctx.metric(f"{tag}_routes_expired", r["routes_expired"])
        ctx.metric(f"{tag}_routes_expired_a", r["routes_expired_a"])
        ctx.metric(f"{tag}_grat_rrep_sent", r["grat_rrep_sent"])
