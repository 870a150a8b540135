"""The scale bench's lab generator, size selection and memory reading (no Docker)."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestration import bench_scale
from orchestration.bench_scale import SHAPES, scale_topology
from orchestration.topology import parse_topology, wires


@pytest.mark.parametrize("n", sorted(SHAPES))
def test_each_size_has_that_many_nodes_each_running_an_agent(n: int) -> None:
    topo = parse_topology(scale_topology(*SHAPES[n]))
    assert len(topo.nodes) == n
    assert all(nd.start == [bench_scale.AGENT] for nd in topo.nodes.values())
    # One LAN port per node plus one Internet port per SG: the wiring grows linearly.
    assert len(wires(topo)) == n + SHAPES[n][0]


def test_realms_overlap_and_sgs_are_unique() -> None:
    topo = parse_topology(scale_topology(3, 2))
    lans = [s for s in topo.segments if s.startswith("lan-")]
    assert {str(topo.segments[s].subnet) for s in lans} == {"10.0.0.0/24"}
    sg_public = [str(l.address) for n, nd in topo.nodes.items() if n.startswith("sg") for l in nd.links
                 if l.segment == "inet"]
    assert len(set(sg_public)) == 3


def test_too_large_a_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        scale_topology(251, 1)


def test_sizes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_BENCH_QUICK", raising=False)
    monkeypatch.setenv("TESTBED_SCALE_SIZES", "50,100")
    assert bench_scale._sizes() == [50, 100]
    monkeypatch.setenv("TESTBED_BENCH_QUICK", "1")
    assert bench_scale._sizes() == [20, 50]
    monkeypatch.delenv("TESTBED_BENCH_QUICK")
    monkeypatch.setenv("TESTBED_SCALE_SIZES", "30")
    with pytest.raises(ValueError, match="no shape for"):
        bench_scale._sizes()


def test_plot_is_written(tmp_path: Path) -> None:
    row = {"nodes": 20, "testbed_up_s": 5.0, "baseline_up_s": 4.5, "testbed_down_s": 2.0, "baseline_down_s": 1.5,
           "testbed_mem_per_node_mib": 30.0, "baseline_mem_per_node_mib": 28.0}
    out = tmp_path / "scale.png"
    bench_scale.plot([row, {**row, "nodes": 50}], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_switch_port_names_never_collide_with_bridge_names() -> None:
    from orchestration.links import bridge_name, port_name

    bridges = {bridge_name("scaletb", i) for i in range(256)}
    ports = [port_name("scaletb", s) for s in range(1, 0x10000)]
    assert not bridges & set(ports)
    assert max(len(p) for p in ports) <= 15  # IFNAMSIZ - 1
