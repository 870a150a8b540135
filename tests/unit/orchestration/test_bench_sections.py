"""`testbed bench`: a benchmark may fill further top-level sections of bench.json, and the
roaming benchmark's `moves` section (issue 14) judges each move kind against its aim."""
from __future__ import annotations

import json

import pytest
from pathlib import Path

from orchestration import bench
from orchestration.scenario import load_module

REPO = Path(__file__).resolve().parents[3]


def test_sections_of_a_benchmark_land_at_the_top(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "DEFAULT", ("demo",))
    monkeypatch.setattr(bench, "BENCHMARKS", {"demo": lambda say: {"x": 1, "sections": {"moves": {"y": 2}}}})
    monkeypatch.setattr(bench, "_scenario_benchmarks", lambda: {})
    monkeypatch.setattr(bench, "_cleanup_baseline", lambda: None)
    import orchestration.cleanup as cleanup
    monkeypatch.setattr(cleanup, "clean_lab", lambda *a: None)
    out = tmp_path / "bench.json"
    bench.run_benchmarks(output=out, say=lambda m: None)
    res = json.loads(out.read_text())
    run = res.pop("run")
    assert run["benchmarks"] == ["demo"]
    # every section says which run measured it (a kept older one then shows as older)
    assert res == {"demo": {"x": 1, "run": run["started"]}, "moves": {"y": 2, "run": run["started"]}}


def test_moves_section_meets_and_misses_its_aims():
    mod = load_module(REPO / "scenarios/roaming/bench.py", "roaming_bench_under_test")
    samples = {"fa_interruption_ms": [50.0, 70.0, 55.0], "fa_registration_ms": [10.0, 12.0, 11.0],
               "ccoa_interruption_ms": [120.0, 130.0, 101.0], "sink_interruption_ms": [30.0]}
    sec = mod.moves_section(samples, 3)
    assert sec["fa"]["gap_ms"] == 55.0 and sec["fa"]["met"] and sec["fa"]["gap_over_registration"] == 5.0
    assert sec["ccoa"]["gap_ms"] == 120.0 and not sec["ccoa"]["met"]   # aim 100 ms
    assert sec["sink"]["met"] and sec["home"]["gap_ms"] is None and not sec["home"]["met"]   # not measured: no pass


def test_move_breakdown_puts_phases_after_the_cut_and_picks_the_move_gap():
    mod = load_module(REPO / "scenarios/roaming/bench.py", "roaming_bench_under_test")
    cut = {"down": 100.0, "up": 100.002}
    reg = {"phases": {"carrier_down": 100.001, "carrier_up": 100.003, "request": 100.010, "reply": 100.017,
                      "solicit": 99.0}}   # a phase long before the cut is an earlier move's
    events = [{"kind": "handover_done", "t": 99.9}, {"kind": "interface_up", "t": 100.004},
              {"kind": "interface_up", "t": 100.5}, {"kind": "hello", "t": 100.006}]
    probe = {"gaps": [[90.0, 91.0], [99.999, 100.030], [100.1, 100.115]]}   # the first ended before the cut
    b = mod.move_breakdown(cut, reg, events, probe)
    assert b == {"last_echo_before": -1.0, "mn_carrier_down": 1.0, "carrier_restored": 2.0, "mn_carrier_up": 3.0,
                 "aodv_interface_up": 4.0, "mn_request": 10.0, "mn_reply": 17.0, "first_echo_after": 30.0}
    assert list(b) == sorted(b, key=b.get)   # in time order
    sec = mod.moves_section({"fa_interruption_ms": [31.0, 29.0]}, 2,
                            {"fa": [b, {**b, "mn_reply": 19.0, "first_echo_after": 28.0}]})
    assert sec["fa"]["phases_ms"]["mn_reply"] == 18.0 and sec["fa"]["phases_ms"]["first_echo_after"] == 29.0
    assert "phases_ms" not in sec["ccoa"]   # no rounds: no phases


def test_default_run_is_issue_14s_sections_and_only_takes_a_list():
    names = ["bringup", "diameter", "tunnel", "scale", "portal", "roaming", "workgroup"]
    assert bench.chosen(names) == ["diameter", "tunnel", "roaming", "scale"]   # the longest last
    assert bench.chosen(names, run_all=True) == [n for n in names if n != "scale"] + ["scale"]
    assert bench.chosen(names, only="workgroup, tunnel") == ["tunnel", "workgroup"]
    with pytest.raises(ValueError, match="no benchmark 'nope'"):
        bench.chosen(names, only="tunnel,nope")


def test_a_failing_section_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(say):
        raise RuntimeError("engine gone")

    monkeypatch.setattr(bench, "BENCHMARKS", {"tunnel": broken, "diameter": lambda say: {"ratio": 2.0}})
    monkeypatch.setattr(bench, "_scenario_benchmarks", lambda: {})
    monkeypatch.setattr(bench, "_cleanup_baseline", lambda: None)
    import orchestration.cleanup as cleanup
    monkeypatch.setattr(cleanup, "clean_lab", lambda *a: None)
    out = tmp_path / "bench.json"
    with pytest.raises(bench.BenchError, match="tunnel: RuntimeError: engine gone"):
        bench.run_benchmarks(output=out, say=lambda m: None)
    res = json.loads(out.read_text())
    assert res["diameter"] == {"ratio": 2.0, "run": res["run"]["started"]} and "engine gone" in res["tunnel"]["error"]
    assert set(res["run"]["duration_s"]) == {"tunnel", "diameter"}
