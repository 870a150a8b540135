"""`testbed bench`: a benchmark may fill further top-level sections of bench.json, and the
roaming benchmark's `moves` section (issue 14) judges each move kind against its aim."""
from __future__ import annotations

import json
from pathlib import Path

from orchestration import bench
from orchestration.scenario import load_module

REPO = Path(__file__).resolve().parents[3]


def test_sections_of_a_benchmark_land_at_the_top(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BENCHMARKS", {"demo": lambda say: {"x": 1, "sections": {"moves": {"y": 2}}}})
    monkeypatch.setattr(bench, "_scenario_benchmarks", lambda: {})
    monkeypatch.setattr(bench, "_cleanup_baseline", lambda: None)
    import orchestration.cleanup as cleanup
    monkeypatch.setattr(cleanup, "clean_lab", lambda *a: None)
    out = tmp_path / "bench.json"
    bench.run_benchmarks(output=out, say=lambda m: None)
    assert json.loads(out.read_text()) == {"demo": {"x": 1}, "moves": {"y": 2}}


def test_moves_section_meets_and_misses_its_aims():
    mod = load_module(REPO / "scenarios/roaming/bench.py", "roaming_bench_under_test")
    samples = {"fa_interruption_ms": [50.0, 70.0, 55.0], "fa_registration_ms": [10.0, 12.0, 11.0],
               "ccoa_interruption_ms": [120.0, 130.0, 101.0], "sink_interruption_ms": [30.0]}
    sec = mod.moves_section(samples, 3)
    assert sec["fa"]["gap_ms"] == 55.0 and sec["fa"]["met"] and sec["fa"]["gap_over_registration"] == 5.0
    assert sec["ccoa"]["gap_ms"] == 120.0 and not sec["ccoa"]["met"]   # aim 100 ms
    assert sec["sink"]["met"] and sec["home"]["gap_ms"] is None and not sec["home"]["met"]   # not measured: no pass
