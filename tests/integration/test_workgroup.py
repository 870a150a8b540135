"""The workgroup scenario end to end in containers (real strongSwan, real MSM, NAPT), run once
per module: the scenario's report decides, and the interop checks with stock strongSwan
(hand-written swanctl.conf + MSM certificate on d; generated configs reloaded with stock
`swanctl --load-all`) are asserted by name so that they cannot silently disappear."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.pytest_plugin import unique_lab_name
from orchestration.scenario import run_scenario



@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path]:
    results = tmp_path_factory.mktemp("wg")
    rep = run_scenario("workgroup", lab_name=unique_lab_name("w"), say=print, results_root=results)
    return rep, results


def checks(rep: dict) -> dict[str, dict]:
    return {c["name"]: c for c in rep["checks"]}


def test_workgroup_scenario_passes(report) -> None:
    rep, results = report
    assert json.loads((results / "workgroup" / "report.json").read_text()) == rep
    failed = [c for c in rep["checks"] if not c["passed"]]
    assert rep["passed"] and not failed, failed
    names = " | ".join(checks(rep))
    for needle in ("two different SAs", "concurrently and both deliver", "answered both over its own tunnels",
                   "dropped at SG-B by the workgroup filter", "SG-B's filter dropped its packets", "marker appears nowhere",
                   "only IP-IP with ESP-in-UDP", "dig at the MSM", "wrong SG", "backbone NAPT"):
        assert needle in names, f"no check about {needle!r}"
    m = rep["metrics"]
    assert m["concurrent_tcp_a_to_b_mbps"] > 1 and m["concurrent_tcp_c_to_b_mbps"] > 1
    assert m["removal_row_gone_at_sgb_s"] < 5 and m["removal_sgb_drops_realm_a_after_row"] > 0
    assert (results / "workgroup" / "pcaps" / "inet-window.pcap").stat().st_size > 0


def test_interop_with_stock_strongswan(report) -> None:
    """d: stock charon + hand-written swanctl.conf + MSM-CA certificate -> SA with SG-B, shown
    by SG-B's swanctl --list-sas; the testbed's generated configs load with stock swanctl."""
    rep, _ = report
    c = checks(rep)
    for name in ("d's SA with SG-B from a hand-written stock swanctl.conf and an MSM certificate",
                 "SG-B's swanctl --list-sas shows d's SA (realm D)",
                 "SG-B's generated responder config loads with stock swanctl --load-all",
                 "b's generated initiator config (to SG-C) loads with stock swanctl --load-all"):
        assert name in c and c[name]["passed"], c.get(name)
