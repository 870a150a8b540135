"""The DIAMETER benchmark runs end to end (tiny sizes; speed is judged by `make bench`, not here)."""

from __future__ import annotations

import asyncio

import pytest

from testbed.diameter import bench

pytestmark = pytest.mark.timeout(120)


def test_bench_measures_both_sides_with_no_errors():
    r = asyncio.run(bench.run(rounds=1, n=20, clients=3, duration_s=0.3))
    assert r["aa_errors"] == 0 and r["message_bytes"] == len(bench.aar_bytes())
    for key in ("aa_round_trip_median_ms", "aa_round_trip_p99_ms", "aa_per_s",
                "echo_round_trip_median_ms", "echo_per_s", "ratio_round_trip", "ratio_per_s"):
        assert r[key] > 0, key
    aa = r["samples"]["aa"][0]
    assert aa["throughput"]["requests"] > 0 and aa["round_trip"]["errors"] == 0
