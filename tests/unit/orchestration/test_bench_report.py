"""The summary table of bench.json (orchestration/bench_report.py), no Docker."""
from __future__ import annotations

from orchestration.bench_report import markdown, summary

RESULTS = {
    "run": {"started": "2026-11-29T19:45:00Z", "quick": False, "duration_s": {"tunnel": 190.2, "scale": 1500.0}},
    "tunnel": {"modes": ["bpf", "userspace"], "median_mbps": {"plain": 12000.0, "ipip_bpf": 9000.0,
               "ipip_userspace": 400.0, "ipsec": 200.0, "ipsec_ipip_bpf": 190.0, "ipsec_ipip_userspace": 100.0},
               "aims": {"ipip_vs_plain": 0.5, "ipsec_ipip_vs_ipsec": 0.9},
               "ratio_ipip_bpf_vs_plain": 0.75, "ratio_ipsec_ipip_bpf_vs_ipsec": 0.95,
               "ratio_ipip_userspace_vs_plain": 0.033, "ratio_ipsec_ipip_userspace_vs_ipsec": 0.5},
    "moves": {"fa": {"gap_ms": 55.0, "aim_ms": 60, "met": True, "registration_ms": 11.0},
              "sink": {"gap_ms": 30.0, "aim_ms": 40, "met": True, "carrier_flap_ms": 20.0},
              "home": {"gap_ms": None, "aim_ms": 60, "met": False}},
    "diameter": {"aa_round_trip_median_ms": 0.4, "echo_round_trip_median_ms": 0.04, "ratio_round_trip": 10.0,
                 "aa_per_s": 2100.4, "echo_per_s": 40000.0, "ratio_per_s": 0.053, "aa_errors": 0,
                 "aims": {"aa_round_trip_median_ms": 3.0, "aa_per_s": 1000}},
    "scale": {"aims": {"up_100_s": 30, "ratio_up_100": 1.2, "met": False},
              "sizes": [{"nodes": 100, "testbed_up_s": 35.0, "baseline_up_s": 30.0, "ratio_up": 1.167,
                         "testbed_ready_s": 50.0, "baseline_ready_s": 45.0, "ratio_ready": 1.111,
                         "testbed_down_s": 8.0, "baseline_down_s": 6.0, "ratio_down": 1.333,
                         "testbed_mem_per_node_mib": 30.0, "baseline_mem_per_node_mib": 29.0}],
              "skipped": {"200": "needs ~9000 MiB"}, "failed": {}},
}

for _name in ("tunnel", "moves", "diameter", "scale"):   # measured by this run
    RESULTS[_name]["run"] = RESULTS["run"]["started"]


def test_a_section_kept_from_an_earlier_run_says_so():
    """A section this run did not measure (it failed, or --only left it out) keeps the old
    numbers in bench.json; the table must not show them as this run's (newcomer trial)."""
    old = {**RESULTS, "moves": {**RESULTS["moves"], "run": "2026-11-28T10:00:00Z"}}
    stale = [r for r in summary(old) if r["section"] == "moves" and "not this one" in r["what"]]
    assert len(stale) == 1 and "2026-11-28T10:00:00Z" in stale[0]["what"]
    assert not [r for r in summary(RESULTS) if "not this one" in r["what"]]


def test_each_section_with_its_baseline_ratio_and_aim():
    rows = {(r["section"], r["what"]): r for r in summary(RESULTS)}
    bpf = rows[("tunnel", "IP-IP bpf, Mbit/s")]
    assert (bpf["ours"], bpf["baseline"], bpf["ratio"], bpf["met"]) == (9000.0, 12000.0, 0.75, True)
    assert rows[("tunnel", "IPsec over IP-IP userspace, Mbit/s")]["met"] is False
    fa = rows[("moves", "fa: UDP gap, ms")]
    assert fa["baseline"] == 11.0 and fa["ratio"] == 5.0 and fa["met"] is True
    assert rows[("moves", "sink: UDP gap, ms")]["baseline_what"].startswith("port flap")
    assert ("moves", "home: UDP gap, ms") not in rows   # not measured: no row, no pass
    assert rows[("diameter", "AA round trip, ms")]["met"] is True
    assert rows[("diameter", "AA/s, 10 clients (0 errors)")]["ours"] == 2100
    up = rows[("scale", "100 nodes up, s")]
    assert up["ratio"] == 1.167 and up["met"] is False
    assert rows[("scale", "200 nodes")]["aim"].startswith("needs")


def test_a_failed_section_is_named_and_errors_fail_the_diameter_aim():
    res = {**RESULTS, "tunnel": {"error": "RuntimeError: boom"},
           "diameter": {**RESULTS["diameter"], "aa_errors": 3}}
    rows = summary(res)
    assert rows[0]["what"] == "FAILED" and "boom" in rows[0]["aim"]
    aps = next(r for r in rows if r["what"].startswith("AA/s"))
    assert aps["met"] is False


def test_markdown_table_has_a_line_per_row_and_the_durations():
    text = markdown(RESULTS)
    lines = text.splitlines()
    assert lines[0].startswith("| section |") and len([l for l in lines if l.startswith("| ")]) == 2 + len(summary(RESULTS))
    assert "| **no** |" in text and "tunnel 190 s, scale 1500 s" in text
