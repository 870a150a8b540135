"""The domain compiler for the roaming and access scenarios without Docker: SG in a virtual HA
(claim 15), home sinks and roaming MNs (claims 14, 24), the access plane (claims 40-62),
and every validation error of these shown to fire on the wrong input (and not on the right)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from test_domain import compiled, faults  # the same compile and fault helpers (this folder)

from orchestration.domain import agents as agent_mod
from orchestration.domain.enrolment import TOKEN_FILE, TOKENS

REPO = Path(__file__).resolve().parents[3]
SC = REPO / "scenarios"


def lab(name: str) -> dict:
    return yaml.safe_load((SC / name / "topology.yaml").read_text())


def conf(c, node: str, path: str) -> dict:  # type: ignore[no-untyped-def]
    return yaml.safe_load(c.topology.nodes[node].files[path])


def addrs(c, node: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The node's link addresses in interface order (eth0, eth1, ...)."""
    t = c.topology
    own = [str(l.address) for l in t.nodes[node].links]
    peers = [str(l.peer_address) for n in t.nodes.values() for l in n.links if l.peer == node]
    return own + peers


# --- roaming (claims 14-24) ------------------------------------------------------------------

def test_roaming_lab_is_a_quarter_of_the_old_file_and_keeps_the_scenarios_names() -> None:
    assert len((SC / "roaming" / "topology.yaml").read_text().splitlines()) <= 89  # was 355
    c = compiled(lab("roaming"))
    t = c.topology
    # scenario.py, scenario.yaml and bench.py use these node and segment names
    assert {"opha", "s1", "s2", "fa", "rt", "h", "hc", "a", "c", "sg-b", "b"} <= set(t.nodes)
    assert {"inet", "sink1", "sink2", "visited", "hotspot"} <= set(t.segments)
    assert c.ports["a"] == "sink1:a" and c.ports["c"] == "lan-c:c"
    assert addrs(c, "fa")[0] == "203.0.113.1/24" and addrs(c, "rt")[0] == "192.0.2.1/24"


def test_sg_runs_inside_its_virtual_ha_and_enrols_after_the_msm_on_that_node() -> None:
    c = compiled(lab("roaming"))
    opha = c.topology.nodes["opha"]
    sg = conf(c, "opha", "/etc/testbed/sg-a.yaml")
    assert sg["public_address"] == "198.51.100.11" and sg["peers"] == {"B": {"public": "198.51.100.40"}}
    assert sg["status_file"] == "/run/testbed/sg-a.json" and "lan_interface" not in sg["ipsec"]
    # start order on the operator HA: HA agent (makes vha-a), MSM, then the SG in vha-a
    assert [s.split()[2] if s.startswith("python3") else s for s in opha.start] == [
        "testbed.mip", "testbed.msm", "sh /etc/testbed/start-sg-a.sh"]
    script = opha.files["/etc/testbed/start-sg-a.sh"]
    assert "nsenter --net=/run/netns/vha-a python3 -m testbed.sg --config /etc/testbed/sg-a.yaml" in script
    ha = conf(c, "opha", agent_mod.AGENTS["mip-ha"][0])
    assert [h["address"] for h in ha["home_agents"]] == ["198.51.100.11", "198.51.100.12"]
    assert ha["operator"]["services"] == ["198.51.100.13"]
    # the backbone NAPT links only the standalone SG (B); A's portal traffic uses the operator's
    assert [l.peer for l in c.topology.nodes["bb"].links if l.peer] == ["sg-b"]
    # SG-B's peer is the virtual HA; the MSM knows C by its virtual HA (no SG of its own)
    assert conf(c, "sg-b", "/etc/testbed/sg.yaml")["peers"] == {"A": {"public": "198.51.100.11"}}
    msm = conf(c, "opha", "/etc/testbed/msm.yaml")
    assert msm["log_level"] == "DEBUG"  # the claim-22 check reads the portal's request log
    seed = msm["seed"]
    assert {m["name"]: m["sg_public"] for m in seed["mvpns"]} == {
        "A": "198.51.100.11", "C": "198.51.100.12", "B": "198.51.100.40"}
    if TOKENS:
        tok = opha.files["/etc/testbed/enrol-sg-a.token"].strip()
        assert {"identity": "A", "kind": "sg", "token": tok, "ttl_s": 3600} in seed["tokens"]
        # c is a member of P without a sign-on agent: it holds a token to enrol by hand
        assert c.topology.nodes["c"].files[TOKEN_FILE].strip() in [t["token"] for t in seed["tokens"]]


def test_home_sinks_sit_on_the_home_lan_with_proxy_arp_and_announce_hosts_and_internet() -> None:
    c = compiled(lab("roaming"))
    s1 = c.topology.nodes["s1"]
    assert [(l.segment, l.name, str(l.address) if l.address else None) for l in s1.links[:2]] == [
        ("lan-a", "home", "10.0.0.2/24"), ("sink1", "cell", None)]
    assert [(str(r.to), str(r.via)) for r in s1.routes] == [("default", "10.0.0.1")]
    assert any("net.ipv4.conf.home.proxy_arp=1" in s for s in s1.setup)
    a = conf(c, "s1", "/etc/testbed/aodv.yaml")
    assert a["announced_prefixes"] == ["10.0.0.10/32", "198.51.100.0/24"] and a["managed_prefixes"] == []


def test_roaming_mn_is_at_home_with_a_home_sink_and_has_the_claim_24_sa() -> None:
    c = compiled(lab("roaming"))
    mip = conf(c, "a", agent_mod.AGENTS["mip-mn"][0])
    assert mip["aodv_home"]["sinks"] == ["10.0.0.2", "10.0.0.3"] and mip["home_agent"] == "198.51.100.11"
    assert mip["ipsec_to_ha"]["protect"] == "all"
    aodv = conf(c, "a", "/etc/testbed/aodv.yaml")
    assert aodv["handover"]["catchall_only_with_sink"] and aodv["managed_prefixes"] == ["10.0.0.0/24", "198.51.100.0/24"]
    assert "snat to 10.0.0.5" in c.topology.nodes["a"].files["/etc/testbed/roam.nft"]
    # a's workgroup agent waits for the SG inside virtual HA a, by that SG's status file
    assert ("opha", "/run/testbed/sg-a.json") in [(w.node, w.file) for w in c.topology.nodes["a"].start_after]
    ha = conf(c, "opha", agent_mod.AGENTS["mip-ha"][0])
    assert [("ipsec_ccoa" in h) for h in ha["home_agents"]] == [True, False]  # only a asked for it
    assert not compiled(_without(lab("roaming"), "ipsec_to_ha")).topology.nodes["a"].files[
        agent_mod.AGENTS["mip-mn"][0]].count("ipsec_to_ha")


def _without(data: dict, key: str) -> dict:
    d = copy.deepcopy(data)
    d["mobile_nodes"]["a"].pop(key)
    return d


def test_sg_in_virtual_ha_with_another_address_or_node_is_refused() -> None:
    d = lab("roaming")
    d["mvpns"]["A"]["home_agent"] = {"operator": "opha", "address": "198.51.100.14"}
    d["mvpns"]["A"]["sg"] = {"address": "198.51.100.11", "node": "sgx"}
    got = dict(faults(d))
    assert "give both the same address" in got["mvpns.A.home_agent.address"]
    assert "leave sg.node out" in got["mvpns.A.sg.node"]
    d["mvpns"]["A"]["home_agent"] = {"operator": "opha", "address": "198.51.100.11"}  # the same: fine
    d["mvpns"]["A"]["sg"] = "198.51.100.11"
    compiled(d)


def test_mn_at_a_sink_with_mobile_ip_needs_home_sinks() -> None:
    d = lab("roaming")
    d["mvpns"]["A"]["home_sinks"] = False
    assert "set mvpns.A.home_sinks: true" in dict(faults(d))["mobile_nodes.a.at"]


def test_cells_of_unknown_msrs_home_sinks_without_gateway_ipsec_without_ha() -> None:
    d = lab("roaming")
    d["mvpns"]["A"]["cells"]["s9"] = "x"
    d["mvpns"]["B"].update({"sg": None, "msrs": ["s3"], "home_sinks": True})
    d["mobile_nodes"]["b"] = {"mvpn": "B", "ipsec_to_ha": True}
    d["workgroups"]["W"] = ["a"]
    got = dict(faults(d))
    assert "'s9' is no MSR of M-VPN A" in got["mvpns.A.cells.s9"]
    assert "give M-VPN B an sg or a home_agent" in got["mvpns.B.home_sinks"]
    assert "give mvpns.B.home_agent an operator HA" in got["mobile_nodes.b.ipsec_to_ha"]


# --- access (claims 40-62) -------------------------------------------------------------------

#: the plumbing of the hand-written access topology (before the domain format), per node:
#: addresses in interface order, and routes; scenario.py relies on these names and addresses
OLD_ACCESS = {
    "msm": (["10.10.1.2/24"], [("10.10.0.0/24", "10.10.1.1")]),
    "msr1": (["10.10.0.1/24", "10.10.1.1/24", "10.10.30.1/30"], []),
    "d1": (["10.10.30.2/30"], []),
    "h1": (["10.10.1.10/24"], [("10.10.0.0/24", "10.10.1.1")]),
    "fa": (["10.10.1.20/24", "10.20.0.254/24"], [("10.10.0.0/24", "10.10.1.1")]),
    "hb": (["10.20.0.1/24"], [("10.20.0.9/32", "10.20.0.254")]),
    "mn1": (["10.10.0.5/24"], []), "mn2": (["10.10.0.6/24"], []), "forger": (["10.10.0.7/24"], []),
    "v1": (["10.10.0.77/24"], []), "p1": (["10.10.0.8/24"], []),
}


def test_access_lab_compiles_to_the_plumbing_of_the_old_access_topology() -> None:
    assert len((SC / "access" / "topology.yaml").read_text().splitlines()) <= 29  # was 115
    c = compiled(lab("access"))
    t = c.topology
    assert set(t.nodes) == set(OLD_ACCESS)
    assert {"radio", "core"} <= set(t.segments)  # the scenario captures these two
    for n, (want, routes) in OLD_ACCESS.items():
        assert addrs(c, n) == want, n
        if routes:
            assert [(str(r.to), str(r.via)) for r in t.nodes[n].routes] == routes, n
    assert [(str(r.to), str(r.via)) for r in t.nodes["msr1"].routes] == [("10.20.0.0/24", "10.10.1.20")]
    assert t.nodes["msr1"].setup == ["ip addr flush dev eth2 && ip addr add 10.10.30.1/32 dev eth2"]
    assert not t.nodes["msr1"].start  # the scenario starts the sink once its certificate exists
    assert t.nodes["p1"].setup == ["ip addr flush dev eth0"]
    assert "ip addr add 10.10.31.1/32 dev lo" in t.nodes["d1"].setup[0]


def test_access_msm_has_diameter_users_and_secrets_from_the_cells_nodes() -> None:
    c = compiled(lab("access"))
    msm = conf(c, "msm", "/etc/testbed/msm.yaml")
    assert msm["allow_test_certs"] is True and msm["dns_enabled"] is False
    d = msm["diameter"]
    assert d["enabled"] and d["exchange_log"] == "/var/log/testbed/msm-diameter.jsonl"
    assert d["secrets"] == {"mn1.mwg.test": "secret-one", "mn3.mwg.test": "secret-three", "p1.mwg.test": "secret-p1"}
    assert d["gateways"] == {"A": "10.10.1.1"}
    assert [(u["fqdn"], u["private_address"]) for u in msm["seed"]["users"]] == [
        ("mn1.mwg.test", "10.10.0.5"), ("mn2.mwg.test", "10.10.0.6"), ("mn3.mwg.test", "10.10.0.7"),
        ("p1.mwg.test", "10.10.0.8")]
    tun = yaml.safe_load(c.topology.nodes["fa"].files["/etc/testbed/tunnel.yaml"])
    assert tun["peers"] == {"v1": {"addr": "10.10.0.77", "routes": ["10.20.0.9/32"]}}


def test_access_addresses_are_derived_when_left_out() -> None:
    d = lab("access")
    for x in d["access"]["nodes"].values():
        x.pop("address")
    d["access"]["fa"].pop("address")
    c = compiled(d)
    # the sink takes the cell's first address, the given visitor keeps .77, the others follow
    assert [addrs(c, n)[0] for n in ("msr1", "mn1", "mn2", "forger", "p1", "v1")] == [
        "10.10.0.1/24", "10.10.0.2/24", "10.10.0.3/24", "10.10.0.4/24", "10.10.0.5/24", "10.10.0.77/24"]
    assert addrs(c, "fa")[0] == "10.10.1.3/24"  # after the sink (.1) and the MSM (.2)


def test_access_plane_faults_name_path_and_fix() -> None:
    d = lab("access")
    a = d["access"]
    a["cell"]["subnet"] = "10.30.0.0/24"
    a["core"]["subnet"] = "10.10.1.0/24"
    a["nodes"]["mn2"]["address"] = "10.10.0.5"
    a["neighbour"]["link"] = "10.10.30.0/29"
    a["fa"]["visitors"]["v1"]["home"] = "10.10.5.5"
    a["core"]["hosts"]["mn1"] = None
    got = faults(d)
    where = dict(got)
    assert "outside M-VPN A's realm 10.10.0.0/16" in where["access.cell.subnet"]
    assert "is not on the cell 10.30.0.0/24" in where["access.nodes.mn1.address"]
    assert any(p == "access.nodes.mn2.address" and "already used by access.nodes.mn1" in m for p, m in got)
    assert "must be a /30" in where["access.neighbour.link"]
    assert "outside M-VPN B's realm" in where["access.fa.visitors.v1.home"]
    assert "name 'mn1' is also used by access.core.hosts.mn1" in where["access.nodes.mn1"]
    d = lab("access")
    d["access"]["fa"]["mvpn"] = "A"
    assert "another M-VPN" in dict(faults(d))["access.fa.mvpn"]
    d["access"]["fa"]["mvpn"] = "Z"
    assert "unknown M-VPN 'Z'" in dict(faults(d))["access.fa.mvpn"]
    d = lab("access")
    d["access"]["core"]["subnet"] = "10.10.0.0/23"
    assert "overlaps the cell" in dict(faults(d))["access.core.subnet"]
    d = lab("access")
    d["access"]["mvpn"] = "Q"
    assert faults(d) == [("access.mvpn", "unknown M-VPN 'Q'; declare it under 'mvpns'")]
    d = lab("access")
    d["access"]["nodes"]["mn1"]["colour"] = "red"
    assert any(p == "access.nodes.mn1.colour" for p, _ in faults(d))
