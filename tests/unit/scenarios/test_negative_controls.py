"""Negative controls of the scenarios' comparison checks (issue 11, section 1): each judge
gets the values measured in a good run (they pass) and the values of a run with the feature
switched off or the wrong input (they must fail). The values come from the scenarios'
descriptions and reports; the full runs are in tests/integration."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from orchestration.scenario import load_module

SCENARIOS = Path(__file__).resolve().parents[3] / "scenarios"


def scenario(name: str):
    return load_module(SCENARIOS / name / "scenario.py", f"negctl_{name.replace('-', '_')}")


def verdicts(checks: list[tuple[str, bool, str]]) -> dict[str, bool]:
    return {name: ok for name, ok, _ in checks}


def failing(checks: list[tuple[str, bool, str]], needle: str) -> bool:
    hit = [ok for name, ok, _ in checks if needle in name]
    assert hit, f"no check about {needle!r}"
    return not all(hit)


# ---- ring-search ----------------------------------------------------------------------------
def rs_run(per: list[tuple[str, str, int, int, int]]) -> dict:
    rows = [{"src": s, "dst": d, "reached": True, "rreq_tx": tx, "hops": h, "next_hop": f"10.30.0.{nh}"}
            for s, d, tx, h, nh in per]
    return {"per": rows, "total": sum(r["rreq_tx"] for r in rows)}


# measured (scenarios/ring-search/description.md): plain 145, weighted 42
RS_PLAIN = rs_run([("n1", "n5", 50, 4, 2), ("n6", "n10", 43, 4, 7), ("n2", "n9", 25, 3, 3), ("n10", "n1", 27, 4, 9)])
RS_WEIGHTED = rs_run([("n1", "n5", 8, 4, 2), ("n6", "n10", 15, 6, 1), ("n2", "n9", 10, 3, 3), ("n10", "n1", 9, 6, 5)])


def test_ring_search_passes_on_the_measured_run() -> None:
    assert all(verdicts(scenario("ring-search").judge(RS_PLAIN, RS_WEIGHTED)).values())


def test_ring_search_fails_with_weights_switched_off() -> None:
    rs = scenario("ring-search")
    off = copy.deepcopy(RS_PLAIN)  # the "weighted" run with the weights off is plain AODV
    res = rs.judge(RS_PLAIN, off)
    assert failing(res, "sends at most") and failing(res, "the weights change the route")


def test_ring_search_rreq_bound_is_a_measured_margin_not_a_bare_less_than() -> None:
    rs = scenario("ring-search")
    nearly = copy.deepcopy(RS_PLAIN)  # 144 vs 145 passed the old bare '<'
    nearly["per"][0]["rreq_tx"] -= 1
    nearly["total"] -= 1
    nearly["per"][1].update(hops=6, next_hop="10.30.0.1")
    assert failing(rs.judge(RS_PLAIN, nearly), "sends at most")
    assert not failing(rs.judge(RS_PLAIN, nearly), "the weights change the route")


def test_ring_search_compares_only_discoveries_both_runs_made() -> None:
    # measured: plain n10 -> n1 needed no discovery (a reverse route from n1's flood was
    # still valid): 118 plain in total, 42 weighted; over the same three discoveries 118/33
    rs = scenario("ring-search")
    plain = copy.deepcopy(RS_PLAIN)
    plain["per"][3].update(rreq_tx=0, hops=None, next_hop=None)
    plain["per"][1].update(hops=5, next_hop="10.30.0.1")  # measured: plain took a 5-hop path over n1
    plain["total"] = 118
    assert all(verdicts(rs.judge(plain, RS_WEIGHTED)).values())


# ---- long-session ---------------------------------------------------------------------------
def ls_run(disc: int, rreq: int, expired_a: int, grat: int, gaps: list | None = None, lost: int = 0) -> dict:
    return {"sent": 800, "lost": lost, "gaps": gaps or [], "discoveries_a": disc, "rreq_tx": rreq,
            "routes_expired_a": expired_a, "grat_rrep_sent": grat}


# measured (scenarios/long-session/description.md and report metrics)
LS_GOOD = {"none": ls_run(7, 25, 7, 0), "refresh": ls_run(15, 46, 0, 0), "with": ls_run(1, 16, 0, 9)}


def test_long_session_passes_on_the_measured_run() -> None:
    assert all(verdicts(scenario("long-session").judge(LS_GOOD)).values())


def test_long_session_fails_with_gratuitous_rreps_switched_off() -> None:
    ls = scenario("long-session")
    off = copy.deepcopy(LS_GOOD)
    off["with"] = copy.deepcopy(LS_GOOD["refresh"])  # the 'with' run without the extension
    res = ls.judge(off)
    # "no gap, nothing lost" holds for the baseline too: it is not what decides
    assert not failing(res, "no gap, nothing lost")
    for needle in ("only the extension sends", "a single discovery", "RREQ transmissions"):
        assert failing(res, needle), needle
    # and against the baseline without refresh, the lapsing route is what differs
    off["with"] = copy.deepcopy(LS_GOOD["none"])
    assert failing(ls.judge(off), "never lapsed")
