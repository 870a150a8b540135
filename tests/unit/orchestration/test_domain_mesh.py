"""The lab format's AODV mesh (orchestration.domain.mesh) without Docker: the four AODV
scenario labs compile to the plumbing their scenario.py files use, and every mesh fault is
refused naming the path and the fix (and the right input is not)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestration.domain import Secrets, compile_lab
from orchestration.domain.mesh import AGENT_FILE
from orchestration.topology import TopologyError, load_topology

REPO = Path(__file__).resolve().parents[3]
SC = REPO / "scenarios"
#: lines of each scenario's hand-written low-level topology.yaml before the lab format
BEFORE = {"ring-search": 88, "handover": 60, "long-session": 30, "handover-offpath": 75}


def lab(name: str) -> dict:
    return yaml.safe_load((SC / name / "topology.yaml").read_text())


def compiled(data: dict):  # type: ignore[no-untyped-def]
    return compile_lab(data, "lab.yaml", Secrets("unit"), check_nft=False)


def cfg(c, node: str) -> dict:  # type: ignore[no-untyped-def]
    return yaml.safe_load(c.topology.nodes[node].files[AGENT_FILE])


def addrs(c, node: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """interface -> address from the node's setup lines."""
    out = {}
    for line in c.topology.nodes[node].setup:
        words = line.split()
        out[words[words.index("dev") + 1]] = words[words.index("add") + 1]
    return out


def faults(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as e:
        compiled(data)
    assert e.value.source == "lab.yaml"
    return e.value.problems


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_each_aodv_scenario_lab_is_at_most_a_quarter_of_its_old_topology(name: str) -> None:
    lines = len((SC / name / "topology.yaml").read_text().splitlines())
    assert lab(name)["kind"] == "lab" and lines <= BEFORE[name] // 4, (name, lines)
    t = load_topology(SC / name / "topology.yaml")  # what `testbed scenario` and the benches load
    assert all(not nd.start for nd in t.nodes.values()), "scenario.py starts the agents (start: false)"


def test_ring_search_mesh_has_the_grid_addresses_and_weights() -> None:
    c = compiled(lab("ring-search"))
    t = c.topology
    assert set(t.nodes) == {f"n{i}" for i in range(1, 11)} and not t.segments
    # n10 is linked to n9 and n5 only; its /32 on both veths, named after the peer
    assert addrs(c, "n10") == {"to-n9": "10.30.0.10/32", "to-n5": "10.30.0.10/32"}
    assert sorted(cfg(c, "n1")["interfaces"]) == ["to-n2", "to-n6", "to-n7"]
    assert t.nodes["n1"].sysctls["net.ipv4.conf.all.rp_filter"] == 0
    ws = cfg(c, "n1")["weighted_search"]
    # a hop towards a bottom-row MSR costs 5, towards a top-row one 1 (default)
    assert ws == {"enabled": True, "fanout": 1, "weights": {"10.30.0.2": 1, "10.30.0.6": 5, "10.30.0.7": 5}}
    assert cfg(c, "n1")["intermediate_reply"] is False and cfg(c, "n1")["managed_prefixes"] == ["10.30.0.0/16"]


def test_handover_mesh_has_cells_a_mobile_node_and_a_host_behind_the_gateway() -> None:
    c = compiled(lab("handover"))
    t = c.topology
    assert set(t.segments) == {"cell-m2", "cell-m3", "cell-m4"}
    assert sorted(cfg(c, "m3")["interfaces"]) == ["cell", "to-m2", "to-m4"]
    assert cfg(c, "m1")["announced_prefixes"] == ["198.51.100.0/24"] and cfg(c, "m1")["handover"] == {"enabled": True}
    mn = cfg(c, "mn")
    assert mn["role"] == "mn" and mn["address"] == "10.20.1.5" and mn["interfaces"] == ["eth0"]
    assert mn["managed_prefixes"] == ["10.20.0.0/16", "198.51.100.0/24"]
    assert t.nodes["mn"].links[0].segment == "cell-m4" and c.ports["mn"] == "cell-m4:mn"
    link = [x for x in t.nodes["m1"].links if x.peer == "h"][0]
    assert (str(link.address), str(link.peer_address), link.name) == ("198.51.100.1/24", "198.51.100.10/24", "to-h")
    assert [(str(r.to), str(r.via)) for r in t.nodes["h"].routes] == [("10.20.0.0/16", "198.51.100.1")]
    off = compiled(lab("handover-offpath"))
    assert sorted(cfg(off, "m3")["interfaces"]) == ["to-m2", "to-m4", "to-m5"]
    assert cfg(off, "m6")["address"] == "10.20.0.6" and set(off.topology.segments) == {"cell-m4", "cell-m6"}


def test_started_mesh_starts_agents_and_the_mobile_node_after_its_sink() -> None:
    data = lab("handover")
    data["aodv"]["start"] = True
    t = compiled(data).topology
    assert t.nodes["m2"].start == ["python3 -m testbed.aodv --config /etc/testbed/aodv.yaml"]
    assert [(s.node, s.key) for s in t.nodes["mn"].start_after] == [("m4", "counters")]
    assert not t.nodes["h"].start


def test_options_merge_per_node_and_addresses_can_be_pinned() -> None:
    data = {"kind": "lab", "name": "x", "aodv": {
        "prefix": "10.9.0.0/24", "chain": ["a", "b", "c"], "addresses": {"b": "10.9.0.77"},
        "options": {"timers": {"active_route_timeout_ms": 1000}, "hello_enabled": False},
        "node_options": {"c": {"timers": {"ttl_start": 3}}}, "link_layer_detection": False}}
    c = compiled(data)
    assert [cfg(c, n)["address"] for n in "abc"] == ["10.9.0.1", "10.9.0.77", "10.9.0.2"]
    assert cfg(c, "c")["timers"] == {"active_route_timeout_ms": 1000, "ttl_start": 3}
    assert cfg(c, "a")["timers"] == {"active_route_timeout_ms": 1000}
    assert cfg(c, "a")["hello_enabled"] is False and cfg(c, "a")["link_layer_detection"] is False
    assert "weighted_search" not in cfg(c, "a")  # no weights: plain expanding ring search


# --- every mesh fault, with the path and the fix -----------------------------------------------

GOOD = {"kind": "lab", "name": "x", "aodv": {"prefix": "10.9.0.0/24", "links": ["a-b", "b-c"], "cells": ["c"],
                                             "mobile_nodes": {"mn": {"at": "c"}},
                                             "hosts": {"h": {"at": "a", "address": "198.51.100.10/24"}}}}


def bad(**change: object) -> list[tuple[str, str]]:
    data = copy.deepcopy(GOOD)
    data["aodv"].update(change)
    return faults(data)


def test_the_good_mesh_compiles() -> None:
    c = compiled(GOOD)
    assert cfg(c, "mn")["address"] == "10.9.0.4" and cfg(c, "a")["announced_prefixes"] == ["198.51.100.0/24"]


@pytest.mark.parametrize("change, path, words", [
    ({"chain": ["a", "b", "a"], "links": []}, "aodv.chain[2]", "already at aodv.chain[0]"),
    ({"chain": ["a"], "links": []}, "aodv.chain", "at least two"),
    ({"links": []}, "aodv", "give 'chain"),
    ({"links": ["a-b", "b-a"]}, "aodv.links[1]", "already linked by aodv.links[0]"),
    ({"links": ["a-b", "b-b", "b-c"]}, "aodv.links[1]", "to itself"),
    ({"links": ["a-b-c"]}, "aodv.links[0]", "write 'a-b', or [a, b]"),
    ({"cells": ["zz"]}, "aodv.cells[0]", "unknown MSR 'zz' (known: a, b, c); add it to aodv.chain or aodv.links"),
    ({"weights": {"zz": 5}}, "aodv.weights.zz", "unknown MSR 'zz'"),
    ({"node_options": {"zz": {}}}, "aodv.node_options.zz", "unknown MSR 'zz'"),
    ({"hosts": {"h": {"at": "zz", "address": "198.51.100.10/24"}}}, "aodv.hosts.h.at", "unknown MSR 'zz'"),
    ({"hosts": {"h": {"at": "a", "address": "10.9.0.200/24"}}}, "aodv.hosts.h.address", "overlaps the mesh prefix"),
    ({"mobile_nodes": {"mn": {"at": "b"}}}, "aodv.mobile_nodes.mn.at", "has no radio cell (cells: c); add it to aodv.cells"),
    ({"mobile_nodes": {"mn": {"at": "c", "address": "10.1.0.5"}}}, "aodv.mobile_nodes.mn.address", "outside the mesh prefix"),
    ({"addresses": {"a": "10.9.0.9", "b": "10.9.0.9"}}, "aodv.addresses.b", "already a's address"),
    ({"mobile_nodes": {"b": {"at": "c"}}}, "aodv.mobile_nodes.b", "node name 'b' is also aodv.links; rename one"),
    ({"links": ["a-averyverylongname"]}, "aodv", "longer than Linux's 15 characters"),
    ({"prefix": "10.9.0.0/30"}, "aodv.prefix", "too few addresses"),
    ({"colour": "blue"}, "aodv.colour", "unknown field"),
])
def test_mesh_faults_name_the_path_and_the_fix(change: dict, path: str, words: str) -> None:
    found = bad(**change)
    assert any(p == path and words in m for p, m in found), found


def test_a_mesh_node_may_not_reuse_another_nodes_name_and_checks_know_mesh_nodes() -> None:
    data = copy.deepcopy(GOOD)
    data.update(mvpns={"R": {"realm": "10.0.0.0/24"}}, mobile_nodes={"a": {"mvpn": "R"}})
    assert ("aodv.links", "node name 'a' is also a node elsewhere in the lab; rename one of them") in faults(data)
    data = copy.deepcopy(GOOD)
    data["checks"] = [{"name": "mn reaches h", "node": "mn", "run": "true"}]
    assert compiled(data).lab.checks[0].node == "mn"
    data["checks"][0]["node"] = "nobody"
    assert any(p.startswith("checks[0]") and "unknown node 'nobody'" in m for p, m in faults(data))


def test_an_option_the_aodv_agent_would_refuse_is_refused_before_anything_starts() -> None:
    found = bad(options={"timers": {"ttl_start": 0}})
    assert any(p == f"nodes.a.files.{AGENT_FILE}" and "aodv agent would refuse it: timers.ttl_start" in m
               for p, m in found), found


def test_cli_validate_json_names_the_file_and_the_path(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["aodv"].update(chain=["a", "b", "a"], links=["b-c"])
    p = tmp_path / "mesh.yaml"
    p.write_text(yaml.safe_dump(data))
    r = subprocess.run([str(Path(sys.executable).parent / "testbed"), "validate", "--json", str(p)],
                       capture_output=True, text=True, cwd=REPO)
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["valid"] is False and out["file"] == str(p)
    assert [x["path"] for x in out["problems"]] == ["aodv.chain[2]"]


def test_a_mesh_mobile_node_moves_between_radio_cells_on_the_schedule() -> None:
    from orchestration.domain.schedule import target_segment

    data = copy.deepcopy(GOOD)
    data["aodv"]["cells"] = ["b", "c"]
    data["schedule"] = [{"at": "2s", "move": "mn", "to": "b"}, {"at": "3s", "link": "mn", "up": False}]
    c = compiled(data)
    assert target_segment(c, "mn", "b") == "cell-b" and c.ports["mn"] == "cell-c:mn"
    data["schedule"][0]["to"] = "a"  # a has no radio cell
    assert ("schedule[0].to", "no network 'a' that mn can move to; use one of b, c") in faults(data)
