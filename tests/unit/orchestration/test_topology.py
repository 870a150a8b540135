"""The topology schema: what it accepts, and that each fault names file, path and fix."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestration.topology import TopologyError, load_topology, parse_topology, wires

REPO = Path(__file__).resolve().parents[3]

GOOD = {
    "name": "demo",
    "mvpns": {"A": {"realm": "10.0.0.0/24"}, "B": {"realm": "10.0.0.0/24"}},
    "segments": {"lan-a": {"mvpn": "A", "subnet": "10.0.0.0/24"}, "lan-b": {"mvpn": "B", "subnet": "10.0.0.0/24"}},
    "nodes": {
        "sg-a": {"role": "sg", "mvpn": "A", "links": [
            {"segment": "lan-a", "address": "10.0.0.1/24"},
            {"peer": "sg-b", "address": "192.0.2.1/30", "peer_address": "192.0.2.2/30"}]},
        "sg-b": {"role": "sg", "mvpn": "B", "links": [{"segment": "lan-b", "address": "10.0.0.1/24"}]},
        "a": {"role": "host", "mvpn": "A", "links": [{"segment": "lan-a", "address": "10.0.0.5/24"}],
              "routes": [{"to": "default", "via": "10.0.0.1"}]},
        "b": {"role": "host", "mvpn": "B", "links": [{"segment": "lan-b", "address": "10.0.0.5/24"}]},
    },
}


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as e:
        parse_topology(data, "t.yaml")
    return e.value.problems


def edit(path: str, value: object) -> dict:
    """A copy of GOOD with one field set (path in the error-message syntax)."""
    d = copy.deepcopy(GOOD)
    keys: list[object] = []
    for part in path.replace("]", "").split("."):
        name, *idx = part.split("[")
        keys.append(name)
        keys += [int(i) for i in idx]
    cur = d
    for k in keys[:-1]:
        cur = cur[k]  # type: ignore[index]
    cur[keys[-1]] = value  # type: ignore[index]
    return d


def test_good_topology_with_overlapping_realms_is_accepted() -> None:
    topo = parse_topology(GOOD)
    ws = wires(topo)
    keys = {w.key for w in ws}
    assert keys == {"lan-a:sg-a", "sg-a--sg-b", "lan-b:sg-b", "lan-a:a", "lan-b:b"}
    p2p = next(w for w in ws if w.key == "sg-a--sg-b")
    # interface names: sg-a eth0 (lan-a), eth1 (p2p); sg-b eth0 for the p2p declared first, eth1 for lan-b
    assert (p2p.a.ifname, p2p.b.ifname) == ("eth1", "eth0")
    assert next(w for w in ws if w.key == "lan-b:sg-b").a.ifname == "eth1"
    assert p2p.a.realm == "internet" and next(w for w in ws if w.key == "lan-a:a").a.realm == "A"


@pytest.mark.parametrize("path,value,where,words", [
    ("nodes.a.links[0].segment", "lan-z", "nodes.a.links[0].segment", "unknown segment 'lan-z'"),
    ("nodes.sg-a.links[1].peer", "nobody", "nodes.sg-a.links[1].peer", "unknown node 'nobody'"),
    ("nodes.a.links[0].address", "10.0.1.5/24", "nodes.a.links[0].address", "outside segment lan-a's subnet"),
    ("nodes.a.links[0].address", "10.0.0.1/24", "nodes.a.links[0].address", "already used in realm A"),
    ("nodes.a.links[0].address", "8.8.8.8/24", "nodes.a.links[0].address", "outside the ranges a lab may use"),
    ("nodes.a.links[0].address", "10.0.0.0/24", "nodes.a.links[0].address", "network or broadcast"),
    ("nodes.a.links[0].address", "10.0.0.300/24", "nodes.a.links[0].address", "IPv4"),
    ("nodes.a.mvpn", "Z", "nodes.a.mvpn", "unknown M-VPN 'Z'"),
    ("nodes.a.role", "toaster", "nodes.a.role", "'mn'"),
    ("nodes.a.routes[0].via", "10.9.9.9", "nodes.a.routes[0].via", "not on any subnet"),
    ("nodes.sg-a.links[1].peer_address", "192.0.2.9/30", "nodes.sg-a.links[1].peer_address", "same subnet"),
    ("mvpns.A.realm", "192.0.2.0/24", "mvpns.A.realm", "RFC 1918"),
    ("segments.lan-a.subnet", "10.1.0.0/24", "segments.lan-a.subnet", "outside M-VPN A's realm"),
    ("segments.lan-a.loss", 150, "segments.lan-a.loss", "less than or equal to 100"),
    ("segments.lan-a.rate", "fast", "segments.lan-a.rate", "not like 10mbit"),
    ("name", "Bad_Name", "name", "lab name"),
    ("nodes.a.colour", "red", "nodes.a.colour", "unknown field"),
])
def test_each_fault_names_its_path(path: str, value: object, where: str, words: str) -> None:
    found = problems(edit(path, value))
    assert any(p == where and words in m for p, m in found), found


def test_equal_addresses_in_different_realms_are_fine_but_not_in_one() -> None:
    parse_topology(GOOD)  # a and b are both 10.0.0.5, in A and B
    d = copy.deepcopy(GOOD)
    d["nodes"]["b"]["links"][0]["segment"] = "lan-a"
    assert any("already used in realm A" in m for _, m in problems(d))


def test_duplicate_public_address_is_refused() -> None:
    d = copy.deepcopy(GOOD)
    d["nodes"]["sg-b"]["links"].append({"peer": "a", "address": "192.0.2.1/30", "peer_address": "192.0.2.2/30"})
    assert any("already used in the Internet" in m for _, m in problems(d))


def test_link_needs_exactly_one_kind() -> None:
    d = edit("nodes.a.links[0]", {"segment": "lan-a", "peer": "b", "address": "10.0.0.5/24"})
    assert any(p == "nodes.a.links[0]" and "exactly one of" in m for p, m in problems(d))


def test_several_faults_are_reported_together() -> None:
    d = edit("nodes.a.links[0].segment", "nope")
    d["nodes"]["b"]["mvpn"] = "nope"
    assert len(problems(d)) >= 2


def test_load_topology_names_the_file_and_yaml_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nnodes:\n  a: {role: host\n")
    with pytest.raises(TopologyError) as e:
        load_topology(f)
    assert str(f) in str(e.value) and "line" in str(e.value)
    f.write_text(yaml.safe_dump(edit("nodes.a.links[0].segment", "lan-q")))
    with pytest.raises(TopologyError) as e:
        load_topology(f)
    assert f"{f}: nodes.a.links[0].segment: unknown segment 'lan-q'" in str(e.value)
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "missing.yaml")


def test_every_shipped_topology_is_valid() -> None:
    files = sorted((REPO / "scenarios").glob("*/topology*.yaml"))
    assert files
    for f in files:
        load_topology(f)
