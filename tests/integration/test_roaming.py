"""The roaming scenario end to end: its report decides.

The full run (about 40 s on the shared 2-core machine: MSM + DNS + NAPT on the backbone,
SG of M-VPN A in virtual HA a, a workgroup session to b in M-VPN B next to the TCP session
to h, a move between two AODV sinks at home (claim 14), shared FA with a same-address
visitor, CCoA with the claim-24 SA, return home; about 70 s with the sinks) stays
under the CI budget, so CI runs the scenario itself rather than a reduced copy.
"""
from __future__ import annotations

import json
from pathlib import Path

from orchestration.pytest_plugin import unique_lab_name
from orchestration.scenario import run_scenario


def test_roaming(tmp_path: Path) -> None:
    report = run_scenario("roaming", lab_name=unique_lab_name("r"), say=lambda m: None, results_root=tmp_path)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert report["passed"] and not failed, failed
    assert json.loads((tmp_path / "roaming" / "report.json").read_text()) == report
    names = " ".join(c["name"] for c in report["checks"])
    for claim in ("claim 15", "claim 20", "claim 21", "claim 22", "claim 24"):
        assert claim in names, claim
    m = report["metrics"]
    for step in ("fa", "ccoa", "home"):
        # registration via FA / CCoA / at home, end to end over the emulated links
        assert 0 < m[f"{step}_registration_ms"] < 2000, m
        assert m[f"{step}_handover_ms"] >= m[f"{step}_registration_ms"] * 0.5, m
        for k in ("interruption_ms", "tcp_stall_ms", "wg_interruption_ms", "wg_tcp_stall_ms"):
            assert f"{step}_{k}" in m and m[f"{step}_{k}"] < 10000, (k, m)
    # claim 14: the move between the two home sinks is AODV's (no Mobile IP registration)
    assert "sink_registration_ms" not in m and 0 < m["sink_handover_ms"] < 5000, m
    for k in ("interruption_ms", "tcp_stall_ms", "wg_interruption_ms", "wg_tcp_stall_ms"):
        assert f"sink_{k}" in m and m[f"sink_{k}"] < 10000, (k, m)
    assert any("Mobile IP stays at home" in c["name"] for c in report["checks"])
    assert (tmp_path / "roaming" / "timeline.png").stat().st_size > 10000
    assert (tmp_path / "roaming" / "topology.png").stat().st_size > 10000
    assert (tmp_path / "roaming" / "pcaps" / "visited.pcap").stat().st_size > 0
