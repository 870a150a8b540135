"""The scale bench (no Docker): its labs come from the domain generator, the bare script
builds the same lab, and the aggregation of runs into medians, ratios, growth and aims."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestration import bench_scale
from orchestration.bench_bare import bare_script, write_files
from orchestration.bench_scale import SHAPES, aims, growth, is_member, scale_topology, summarize
from orchestration.lab import Lab
from orchestration.topology import wires

MIB = 1 << 20


@pytest.mark.parametrize("n", sorted(SHAPES))
def test_each_size_is_a_generated_domain_lab_of_that_many_nodes(n: int) -> None:
    topo = scale_topology(*SHAPES[n])
    assert len(topo.nodes) == n
    roles = [nd.role.value for nd in topo.nodes.values()]
    assert roles.count("msm") == 1 and roles.count("sg") == SHAPES[n][0]
    assert roles.count("mn") == SHAPES[n][0] * SHAPES[n][1]
    # every node but the backbone router runs agents, started after what they wait for
    assert all(nd.start for nd in topo.nodes.values() if nd.role.value != "router")
    assert all(nd.start_after for nd in topo.nodes.values() if nd.role.value == "mn")


def _bare(tmp_path: Path, n: int = 20) -> tuple[str, str, Lab]:
    topo = scale_topology(*SHAPES[n])
    lab = Lab(topo, name="scalebl", workdir=tmp_path / "w")
    lab.images = {r: f"img-{r}" for r in ("router", "sg", "mn", "msm")}
    up, down = bare_script(lab, write_files(lab, tmp_path / "files"))
    return up, down, lab


def test_bare_script_builds_the_same_lab(tmp_path: Path) -> None:
    up, down, lab = _bare(tmp_path)
    topo = lab.topology
    runs = [line for line in up.splitlines() if line.startswith("docker run")]
    assert len(runs) == len(topo.nodes)
    assert all("--network none" in r and "--tmpfs /run:rw,exec,mode=755" in r for r in runs)
    assert any("--sysctl net.ipv4.ip_forward=1" in r and "img-sg" in r for r in runs)
    assert up.count("type veth") == len(wires(topo))
    # files copied as one tar stream per node, each file on disk as the node will see it
    assert up.count("| docker exec -i scalebl.") == sum(1 for nd in topo.nodes.values() if nd.files)
    assert (tmp_path / "files" / "msm" / "etc/testbed/msm.yaml").read_text() == topo.nodes["msm"].files["/etc/testbed/msm.yaml"]
    # an MN's agent starts only once its SG's status file is there (the agents' own ready check)
    mn_line = next(line for line in up.splitlines() if "docker exec -d scalebl.m1n1 " in line)
    assert "docker exec scalebl.sg-m1 python3 -m testbed.common.ready --file /run/testbed/sg.json" in mn_line
    assert mn_line.index("testbed.common.ready") < mn_line.index("docker exec -d")
    # the SGs wait for the MSM, the MNs of each M-VPN for their SG: one check per group, not per node
    assert up.count("testbed.common.ready") == 1 + SHAPES[20][0]
    assert mn_line.count("docker exec -d ") == SHAPES[20][1]
    assert down.splitlines()[0].startswith("docker rm -f scalebl.")
    assert "ip netns del scalebl.switch" in down


def test_bare_script_refuses_a_lab_with_files_but_none_given(tmp_path: Path) -> None:
    topo = scale_topology(2, 1)
    lab = Lab(topo, name="scalebl", workdir=tmp_path / "w")
    lab.images = {r: r for r in ("router", "sg", "mn", "msm")}
    with pytest.raises(ValueError, match="have files"):
        bare_script(lab)


def test_member_means_signed_on_and_in_the_workgroup() -> None:
    assert is_member({"member": True, "counters": {"signons": 1}})
    assert not is_member({"member": False, "counters": {"signons": 1}})
    assert not is_member({"member": True, "counters": {"signons": 0}})
    assert not is_member({"member": True})
    assert not is_member(None)
    assert not is_member({"member": "yes", "counters": {"signons": 3}})


def _run(up: float, ready: float | None, down: float, mib: dict[str, float]) -> dict:
    return {"up_s": up, "ready_s": ready, "down_s": down, "mem": {k: int(v * MIB) for k, v in mib.items()}}


def test_summarize_takes_medians_ratios_and_memory_per_role() -> None:
    roles = {"msm": "msm", "sg-m1": "sg", "m1n1": "mn", "m1n2": "mn"}
    mem = {"msm": 60, "sg-m1": 40, "m1n1": 20, "m1n2": 20}
    tb = [_run(10, 20, 4, mem), _run(12, None, 5, mem), _run(11, 22, 6, mem)]
    bl = [_run(9, 18, 2, mem), _run(10, 19, 2, mem), _run(50, 20, 2, mem)]
    row = summarize(4, roles, tb, bl)
    assert row["testbed_up_s"] == 11 and row["baseline_up_s"] == 10 and row["ratio_up"] == 1.1
    assert row["testbed_ready_s"] == 21 and row["runs_without_ready_time"] == {"testbed": 1, "baseline": 0}
    assert row["ratio_down"] == 2.5
    assert row["testbed_mem_per_node_mib"] == 35.0
    assert row["mem_per_role_mib"]["mn"] == {"testbed": 20.0, "baseline": 20.0}
    assert row["samples"]["baseline_up_s"] == [9, 10, 50]
    with pytest.raises(ValueError):
        summarize(4, roles, tb, [])


def test_growth_flags_only_what_grows_faster_than_linear() -> None:
    rows = [{"nodes": 20, "testbed_up_s": 5.0, "baseline_up_s": 4.0, "testbed_mem_per_node_mib": 20.0},
            {"nodes": 200, "testbed_up_s": 50.0, "baseline_up_s": 160.0, "testbed_mem_per_node_mib": 21.0}]
    g = growth(rows)
    assert g["exponent"]["testbed_up_s"] == 1.0 and g["exponent"]["baseline_up_s"] == 1.6
    assert g["superlinear"] == ["baseline_up_s"]
    rows[1]["testbed_mem_per_node_mib"] = 40.0   # memory per node doubling: total grows as n^1.3
    assert "testbed_mem_per_node_mib" in growth(rows)["superlinear"]
    assert growth(rows[:1]) == {}


def test_aims_for_100_nodes() -> None:
    row = {"nodes": 100, "testbed_up_s": 25.0, "ratio_up": 1.1}
    assert aims([row])["met"] is True
    assert aims([{**row, "testbed_up_s": 31.0}])["met"] is False
    assert aims([{**row, "ratio_up": 1.3}])["met"] is False
    assert aims([{**row, "nodes": 50}])["met"] is None


def test_sizes_and_repeats_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("TESTBED_BENCH_QUICK", "TESTBED_SCALE_REPEAT", "TESTBED_SCALE_REPEAT_100", "TESTBED_SCALE_SIZES"):
        monkeypatch.delenv(k, raising=False)
    assert bench_scale._sizes() == [20, 50, 100, 200] and bench_scale._repeat(200) == 5
    monkeypatch.setenv("TESTBED_SCALE_SIZES", "50,100")
    monkeypatch.setenv("TESTBED_SCALE_REPEAT_100", "7")
    assert bench_scale._sizes() == [50, 100] and bench_scale._repeat(100) == 7 and bench_scale._repeat(50) == 5
    monkeypatch.setenv("TESTBED_BENCH_QUICK", "1")
    assert bench_scale._sizes() == [20, 50] and bench_scale._repeat(50) == 2
    monkeypatch.delenv("TESTBED_BENCH_QUICK")
    monkeypatch.setenv("TESTBED_SCALE_SIZES", "30")
    with pytest.raises(ValueError, match="no shape for"):
        bench_scale._sizes()


def test_plot_is_written(tmp_path: Path) -> None:
    row = {"nodes": 20, "testbed_up_s": 5.0, "baseline_up_s": 4.5, "testbed_down_s": 2.0, "baseline_down_s": 1.5,
           "testbed_ready_s": 8.0, "baseline_ready_s": None,
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
