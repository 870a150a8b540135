"""The domain extensions the workgroup, realms and intruder scenarios need, without Docker:
a routed Internet (``internet.routers``), hosts on the Internet (``internet.hosts``), the
``testing:`` section (extra SG peerings, hand-enrolment tokens, MSM options, SG tunnel
mode), each validation error shown to fire on wrong input with its path and fix, and the
three scenario lab files compiled to the nodes their scenario.py files use."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from orchestration.domain import Secrets, compile_lab
from orchestration.domain import agents as agent_mod
from orchestration.domain.enrolment import TOKEN_FILE, TOKENS
from orchestration.domain.testing import OPERATOR_TOKEN_FILE
from orchestration.topology import TopologyError

REPO = Path(__file__).resolve().parents[3]
SCEN = REPO / "scenarios"

REALMS: dict[str, Any] = {
    "kind": "lab", "name": "rt",
    "mvpns": {"A": {"realm": "10.0.0.0/24", "sg": "192.0.2.1"}, "B": {"realm": "10.0.0.0/24", "sg": "192.0.2.5"},
              "C": {"realm": "10.0.0.0/24", "sg": "192.0.2.9"}},
    "internet": {"subnet": "192.0.2.0/24", "routers": {"r1": ["A", "B"], "r2": [], "r3": ["C"]}},
    "hosts": {"a1": {"mvpn": "A", "address": "10.0.0.10"}},
}
WG: dict[str, Any] = {
    "kind": "lab", "name": "tw",
    "mvpns": {"A": {"realm": "10.0.0.0/24", "sg": "198.51.100.1"}, "B": {"realm": "10.0.0.0/24", "sg": "198.51.100.2"},
              "D": {"realm": "10.0.0.0/24", "sg": "198.51.100.4"}},
    "msm": {"address": "198.51.100.10"},
    "internet": {"hosts": {"x": "198.51.100.66"}},
    "mobile_nodes": {"a": {"mvpn": "A", "address": "10.0.0.5", "workgroup": "W"},
                     "b": {"mvpn": "B", "address": "10.0.0.7", "workgroup": "W"},
                     "d": {"mvpn": "D", "address": "10.0.0.9"}},
    "workgroups": {"W": ["a", "b"]},
    "testing": {"peers": [["B", "D"]], "tokens": {"d": ["mn", "operator"]}, "msm": {"allow_test_certs": True},
                "sg_tunnel": "auto"},
}


def compiled(data: dict):  # type: ignore[no-untyped-def]
    return compile_lab(data, "lab.yaml", Secrets("unit"), check_nft=False)


def wrong(base: dict, change: Callable[[dict], Any]) -> list[tuple[str, str]]:
    data = copy.deepcopy(base)
    change(data)
    with pytest.raises(TopologyError) as e:
        compiled(data)
    assert e.value.source == "lab.yaml"
    assert all(f"lab.yaml: {p}: {m}" in str(e.value) for p, m in e.value.problems)
    return e.value.problems


def config(c, node: str, agent: str) -> dict:  # type: ignore[no-untyped-def]
    return yaml.safe_load(c.topology.nodes[node].files[agent_mod.AGENTS[agent][0]])


# --- internet.routers ------------------------------------------------------------------------

def test_routed_internet_is_a_chain_and_each_sg_has_its_own_slash30() -> None:
    t = compiled(REALMS).topology
    assert "inet" not in t.segments and "bb" not in t.nodes
    sga = t.nodes["sg-a"]
    up = [l for l in sga.links if l.peer == "r1"][0]
    assert (str(up.address), str(up.peer_address), up.name) == ("192.0.2.1/30", "192.0.2.2/30", "inet")
    assert [(r.to, str(r.via)) for r in sga.routes] == [("default", "192.0.2.2")]
    # chain links take the next free /30s: r1--r2 192.0.2.12/30, r2--r3 192.0.2.16/30
    assert [(l.peer, str(l.address)) for l in t.nodes["r1"].links] == [("r2", "192.0.2.13/30")]
    assert [(l.peer, str(l.address)) for l in t.nodes["r2"].links] == [("r3", "192.0.2.17/30")]
    routes = {n: {r.to: str(r.via) for r in t.nodes[n].routes} for n in ("r1", "r2", "r3")}
    assert routes["r1"] == {"192.0.2.8/30": "192.0.2.14", "192.0.2.16/30": "192.0.2.14"}
    assert routes["r2"] == {"192.0.2.0/30": "192.0.2.13", "192.0.2.4/30": "192.0.2.13", "192.0.2.8/30": "192.0.2.18"}
    assert routes["r3"] == {"192.0.2.0/30": "192.0.2.17", "192.0.2.4/30": "192.0.2.17", "192.0.2.12/30": "192.0.2.17"}
    # no router knows a private realm or has a default route
    assert not any(r.to == "default" or r.to.startswith("10.") for n in routes for r in t.nodes[n].routes)


def test_an_sg_without_msm_is_a_plain_gateway_with_its_edge_filter() -> None:
    t = compiled(REALMS).topology
    sg = t.nodes["sg-a"]
    assert not sg.start and agent_mod.AGENTS["sg"][0] not in sg.files
    assert 'iifname "lan" oifname "inet" counter name lan_to_internet drop' in sg.files["/etc/testbed/edge.nft"]
    assert sg.setup == ["nft -f /etc/testbed/edge.nft"]


@pytest.mark.parametrize("change, path, words", [
    (lambda d: d.update(msm={"address": "192.0.2.100"}), "internet.routers", "not msm"),
    (lambda d: d["internet"]["routers"]["r1"].append("Z"), "internet.routers.r1[2]", "unknown M-VPN 'Z'"),
    (lambda d: d["internet"]["routers"]["r2"].append("A"), "internet.routers.r2[0]", "already attached to router r1"),
    (lambda d: d["internet"]["routers"]["r3"].remove("C"), "mvpns.C.sg", "list C under one of internet.routers"),
    (lambda d: d["mvpns"]["B"].update(sg="192.0.2.2"), "mvpns.B.sg.address", "shares the /30 192.0.2.0/30"),
    (lambda d: d["mvpns"]["C"].update(sg="192.0.2.11"), "mvpns.C.sg.address", "use 192.0.2.9 or 192.0.2.10"),
    (lambda d: d["internet"]["routers"].update(a1=[]), "internet.routers.a1", "rename the router"),
    (lambda d: d["mvpns"]["C"].pop("sg"), "internet.routers.r3[0]", "has no SG to attach"),
])
def test_routed_internet_faults_name_path_and_fix(change, path, words) -> None:  # type: ignore[no-untyped-def]
    p = wrong(REALMS, change)
    assert any(pp == path and words in m for pp, m in p), p
    compiled(REALMS)  # the unchanged lab is fine


# --- internet.hosts --------------------------------------------------------------------------

def test_internet_host_sits_on_the_internet_with_a_default_route_to_the_backbone() -> None:
    x = compiled(WG).topology.nodes["x"]
    assert x.role.value == "host" and not x.start and not x.files
    assert [(l.segment, str(l.address)) for l in x.links] == [("inet", "198.51.100.66/24")]
    assert [(r.to, str(r.via)) for r in x.routes] == [("default", "198.51.100.254")]


@pytest.mark.parametrize("change, words", [
    (lambda d: d["internet"]["hosts"].update(x="203.0.113.5"), "is not on the emulated Internet"),
    (lambda d: d["internet"]["hosts"].update(x="198.51.100.2"), "already the address of mvpns.B.sg"),
    (lambda d: d["internet"].update(hosts={"a": "198.51.100.66"}), "rename the host"),
])
def test_internet_host_faults(change, words) -> None:  # type: ignore[no-untyped-def]
    p = wrong(WG, change)
    assert any(pp.startswith("internet.hosts.") and words in m for pp, m in p), p


# --- testing: --------------------------------------------------------------------------------

def test_testing_peers_both_ways_tunnel_mode_and_msm_options() -> None:
    c = compiled(WG)
    assert set(config(c, "sg-b", "sg")["peers"]) == {"A", "D"}
    assert config(c, "sg-d", "sg")["peers"] == {"B": {"public": "198.51.100.2"}}
    assert config(c, "sg-a", "sg")["peers"] == {"B": {"public": "198.51.100.2"}}  # W = {a, b} only
    assert {config(c, n, "sg")["tunnel"]["mode"] for n in ("sg-a", "sg-b", "sg-d")} == {"auto"}
    assert config(c, "msm", "msm")["allow_test_certs"] is True
    plain = copy.deepcopy(WG)
    del plain["testing"]
    c0 = compiled(plain)
    assert config(c0, "sg-d", "sg")["peers"] == {} and config(c0, "sg-b", "sg")["tunnel"]["mode"] == "userspace"
    assert "allow_test_certs" not in config(c0, "msm", "msm")


@pytest.mark.skipif(not TOKENS, reason="this MSM takes no tokens")
def test_testing_tokens_for_a_node_that_enrols_by_hand() -> None:
    c = compiled(WG)
    d = c.topology.nodes["d"]
    seed = {(t["identity"], t["kind"]): t["token"] for t in config(c, "msm", "msm")["seed"]["tokens"]}
    assert d.files[TOKEN_FILE].strip() == seed[("d.mwg.test", "mn")]
    assert d.files[OPERATOR_TOKEN_FILE].strip() == seed[("harness-d.mwg.test", "operator")]
    assert not d.start  # no agent uses them: the scenario enrols d by hand


@pytest.mark.parametrize("change, path, words", [
    (lambda d: d["testing"].update(peers=[["B", "Z"]]), "testing.peers[0]", "unknown M-VPN 'Z'"),
    (lambda d: d["testing"].update(peers=[["B", "B"]]), "testing.peers[0]", "not B twice"),
    (lambda d: d["testing"].update(tokens={"x": ["mn"]}), "testing.tokens.x", "is no mobile node"),
    (lambda d: d["testing"].update(tokens={"a": ["mn"]}), "testing.tokens.a", "already holds its mn token"),
    (lambda d: d["testing"].update(tokens={"d": ["mn", "mn"]}), "testing.tokens.d", "listed twice"),
    (lambda d: (d.pop("msm"), d.pop("workgroups"), [m.pop("workgroup", None) for m in d["mobile_nodes"].values()]),
     "testing", "need the MSM"),
    (lambda d: d["testing"].update(msm={"allow_test_cert": True}), "nodes.msm.files./etc/testbed/msm.yaml",
     "msm agent would refuse it: allow_test_cert"),
    (lambda d: d["testing"].update(sg_tunnel="fast"), "testing.sg_tunnel", "'auto'"),
])
def test_testing_faults_name_path_and_fix(change, path, words) -> None:  # type: ignore[no-untyped-def]
    p = wrong(WG, change)
    assert any(pp == path and words in m for pp, m in p), p


# --- the three scenario lab files ------------------------------------------------------------

@pytest.mark.parametrize("name, old_lines, nodes", [
    ("workgroup", 404, {"msm", "bb", "sg-a", "sg-b", "sg-c", "sg-d", "a", "b", "c", "d"}),
    ("realms", 84, {"r1", "r2", "sg-a", "sg-b", "sg-c", "a1", "a2", "b1", "b2", "c1", "c2"}),
    ("intruder", 314, {"msm", "bb", "sg-a", "sg-b", "sg-d", "a", "b", "d", "x"}),
])
def test_scenario_lab_files_are_a_quarter_and_make_the_nodes_their_checks_use(name, old_lines, nodes) -> None:  # type: ignore[no-untyped-def]
    path = SCEN / name / "topology.yaml"
    text = path.read_text()
    assert len(text.splitlines()) <= old_lines // 4
    c = compile_lab(yaml.safe_load(text), str(path), Secrets("unit"), check_nft=False)
    assert set(c.topology.nodes) == nodes
    for ck in yaml.safe_load((SCEN / name / "scenario.yaml").read_text()).get("checks", []):
        # the node a check runs on: `node` (command), or the subject of a data kind
        subject = [ck[k] for k in ("node", "status", "counter", "continuity") if k in ck]
        if "reach" in ck:
            subject += ck["reach"] + [t for t in ck["to"] if "." not in str(t)]
        assert subject and set(subject) <= nodes, ck["name"]


def test_workgroup_bench_adds_its_plain_path_to_the_compiled_lab() -> None:
    from orchestration.scenario import load_module
    from orchestration.topology import parse_topology

    bench = load_module(SCEN / "workgroup" / "bench.py", "workgroup_bench_under_test")
    t = parse_topology(bench.topology(), "bench")
    assert {"pr", "sg-b", "d"} <= set(t.nodes)
    assert [l.peer or l.segment for l in t.nodes["a"].links] == ["lan-a", "pr"]
    assert [r.to for r in t.nodes["b"].routes] == ["default", "192.168.71.0/30"]
