"""Mobile IP end to end in host namespaces: operator HA with two virtual HAs, shared FA, CCoA.

    hA 10.0.0.10 ─ brHA ─ lanA ┐                         ┌ fa eth0 203.0.113.1 ─ brV (visited, FA)
    hC 10.0.0.10 ─ brHC ─ lanC ┤ op (operator HA):        │ fa eth1 198.51.100.20 ─ brI
                               │  vHA a 198.51.100.11  ─ brI (Internet 198.51.100.0/24)
                               │  vHA c 198.51.100.12   rt 198.51.100.30 / 192.0.2.1 ─ brX (no FA)
    mnA 10.0.0.5 (M-VPN A) and mnC 10.0.0.5 (M-VPN C): the same home address, different HAs.

Both realms are 10.0.0.0/24 and even the correspondents share 10.0.0.10: only the
virtual HAs' namespaces and the FA's (HA, home address, MAC) visitor key keep them apart.
The MNs "move" by re-plugging their switch port to another bridge, as the engine does.
"""
from __future__ import annotations

import os
import time

import pytest

from .nslab import NsLab, counts, needs_root, ping, read_json, sh, udp_send, udp_sink, wait_for

pytestmark = [pytest.mark.netns, needs_root]

KEY_A, KEY_C = "secret-of-mvpn-a", "secret-of-mvpn-c"
#: the IP-IP data planes the moves run on: all userspace, then (where the host can load tc
#: BPF) virtual HA a and the MNs' CCoA tunnels in bpf, virtual HA c in userspace beside it
#: (issue 14 §3: Mobile IP on the BPF plane, with an FA that decapsulates in userspace)
MODES = ["userspace", "bpf"]
VHA = {"a": "198.51.100.11", "c": "198.51.100.12"}


def mn_config(ha: str, key: str, mode: str) -> dict:
    return {"home_address": "10.0.0.5", "home_prefix": "10.0.0.0/24", "home_gateway": "10.0.0.1",
            "home_agent": ha, "security": {"spi": 300, "key": key}, "interface": "eth0",
            "lifetime": 30, "agent_timeout": 1.5, "solicit_wait": 0.5, "retransmit": 0.5,
            "tunnel_mode": mode}


@pytest.fixture(scope="module", params=MODES)
def world(request, tmp_path_factory):
    mode = request.param
    if mode == "bpf":
        from testbed.tunnel.tcbpf import bpf_unavailable
        why = bpf_unavailable()
        if why:
            pytest.skip(f"no tc-BPF plane here: {why}")
    work = tmp_path_factory.mktemp("mip")
    lab = NsLab("m", work)
    try:
        for br in ("brI", "brHA", "brHC", "brV", "brX"):
            lab.bridge(br)
        op, fa, rt = lab.ns("op"), lab.ns("fa"), lab.ns("rt")
        ha_, hc = lab.ns("hA"), lab.ns("hC")
        mna, mnc = lab.ns("mnA"), lab.ns("mnC")
        lab.plug(op, "pub0", "brI", "tbtmpop", "198.51.100.10/24")
        lab.plug(op, "lanA", "brHA", "tbtmplA")
        lab.plug(op, "lanC", "brHC", "tbtmplC")
        lab.plug(fa, "eth0", "brV", "tbtmpfv", "203.0.113.1/24")
        lab.plug(fa, "eth1", "brI", "tbtmpfi", "198.51.100.20/24")
        lab.plug(rt, "eth0", "brI", "tbtmpri", "198.51.100.30/24")
        lab.plug(rt, "eth1", "brX", "tbtmprx", "192.0.2.1/24")
        lab.plug(ha_, "eth0", "brHA", "tbtmphA", "10.0.0.10/24")
        lab.plug(hc, "eth0", "brHC", "tbtmphC", "10.0.0.10/24")
        lab.plug(mna, "eth0", "brHA", "tbtmpmA", "10.0.0.5/24")
        lab.plug(mnc, "eth0", "brHC", "tbtmpmC", "10.0.0.5/24")
        for ns in (ha_, hc):
            sh(f"ip -n {ns} route add default via 10.0.0.1")
        sh(f"ip -n {op} route add 203.0.113.0/24 via 198.51.100.20")
        sh(f"ip -n {op} route add 192.0.2.0/24 via 198.51.100.30")
        sh(f"ip -n {rt} route add 203.0.113.0/24 via 198.51.100.20")
        sh(f"ip -n {fa} route add default via 198.51.100.30")
        for name in VHA:
            lab.adopt(f"tbtmv{os.getpid() % 100000}{name}")
        has = [{"name": n, "address": VHA[n], "home_prefix": "10.0.0.0/24", "netns": f"tbtmv{os.getpid() % 100000}{n}",
                "home_interfaces": [f"lan{n.upper()}"], "interfaces": {f"lan{n.upper()}": "10.0.0.1/24"},
                "max_lifetime": 60 if n == "a" else 4,   # c: short lifetimes -> renewals, expiry
                **({"ipsec_ccoa": {"workdir": str(work / "ipsec-ha-a")}, "tunnel_mode": mode} if n == "a" else {}),
                "mobile_nodes": {"10.0.0.5": {"spi": 300, "key": KEY_A if n == "a" else KEY_C}}}
               for n in VHA]
        st = {"ha": lab.agent(op, "ha", {"home_agents": has, "tunnel_mode": "userspace", "adv_interval": 0.5,
                                         "operator": {"backbone_interface": "pub0", "services": ["198.51.100.13"]}}, "ha")}
        wait_for(lambda: all(h["error"] is None and h["tunnel"] for h in read_json(st["ha"])["home_agents"].values()),
                 timeout=15, what="virtual HAs up")
        assert {n: h["tunnel"]["mode"] for n, h in read_json(st["ha"])["home_agents"].items()} == \
            {"a": mode, "c": "userspace"}
        st["fa"] = lab.agent(fa, "fa", {"address": "203.0.113.1", "interface": "eth0", "adv_interval": 0.5,
                                        "adv_lifetime": 3, "max_lifetime": 60, "pending_timeout": 1.5}, "fa")
        st["mnA"] = lab.agent(mna, "mn", {**mn_config(VHA["a"], KEY_A, mode),
                                          "ipsec_to_ha": {"workdir": str(work / "ipsec-mn-a")}}, "mnA")
        st["mnC"] = lab.agent(mnc, "mn", mn_config(VHA["c"], KEY_C, mode), "mnC")
        sinks = {"mnA": work / "sinkA.json", "mnC": work / "sinkC.json", "hA": work / "sinkhA.json"}
        udp_sink(lab, mna, 5000, sinks["mnA"])
        udp_sink(lab, mnc, 5000, sinks["mnC"])
        udp_sink(lab, ha_, 5000, sinks["hA"])
        for mn in ("mnA", "mnC"):
            wait_for(lambda: read_json(st[mn])["mode"] == "home", timeout=10, what=f"{mn} at home")
        yield {"lab": lab, "ns": {"op": op, "fa": fa, "rt": rt, "hA": ha_, "hC": hc, "mnA": mna, "mnC": mnc},
               "st": st, "sinks": sinks, "work": work, "mode": mode}
    finally:
        lab.close()


def mn_status(world, mn):
    return read_json(world["st"][mn])


def test_1_at_home_direct_delivery(world):
    ns = world["ns"]
    assert ping(ns["hA"], "10.0.0.5") == 3
    ha = read_json(world["st"]["ha"])["home_agents"]
    assert ha["a"]["bindings"] == {} and ha["c"]["bindings"] == {}


def test_2_two_same_address_visitors_at_the_shared_fa(world):
    lab, ns, st = world["lab"], world["ns"], world["st"]
    lab.move("tbtmpmA", "brV")
    lab.move("tbtmpmC", "brV")
    for mn in ("mnA", "mnC"):
        wait_for(lambda: mn_status(world, mn)["mode"] == "fa", timeout=10, what=f"{mn} registered via FA")
    want = {(VHA["a"], "10.0.0.5"), (VHA["c"], "10.0.0.5")}
    fa = wait_for(lambda: (f := read_json(st["fa"])) and {(v["ha"], v["home"]) for v in f["visitors"]} == want and f,
                  what="both visitors in the FA's status")
    assert len({v["mac"] for v in fa["visitors"]}) == 2
    # the correspondents (both 10.0.0.10, in different realms) reach "their" 10.0.0.5
    assert ping(ns["hA"], "10.0.0.5") == 3
    assert ping(ns["hC"], "10.0.0.5") == 3
    udp_send(ns["hA"], "10.0.0.5", 5000, "from-A", 30)
    udp_send(ns["hC"], "10.0.0.5", 5000, "from-C", 30)
    wait_for(lambda: counts(world["sinks"]["mnA"]).get("10.0.0.10|from-A", 0) >= 25, what="A's datagrams at mnA")
    wait_for(lambda: counts(world["sinks"]["mnC"]).get("10.0.0.10|from-C", 0) >= 25, what="C's datagrams at mnC")
    # reverse tunnel with UDP: the veth leaves the checksum to offload, the FA completes it
    udp_send(ns["mnA"], "10.0.0.10", 5000, "up-from-A", 30)
    wait_for(lambda: counts(world["sinks"]["hA"]).get("10.0.0.5|up-from-A", 0) >= 25, what="mnA's datagrams at hA")
    # a full-size packet (1500 bytes on the visited link) still fits: the FA fragments the outer packet
    big = "B" * 1472
    udp_send(ns["mnA"], "10.0.0.10", 5000, big, 5)
    wait_for(lambda: counts(world["sinks"]["hA"]).get(f"10.0.0.5|{big}", 0) >= 4, what="1500-byte packets reverse-tunnelled")
    if world["mode"] == "bpf":   # they came in outer fragments: the bpf plane's slow path took them
        wait_for(lambda: read_json(st["ha"])["home_agents"]["a"]["tunnel"]["reassembled_in"] >= 4,
                 what="HA a's reassembled IP-IP count (status written each second)")
    time.sleep(0.3)
    assert "10.0.0.10|from-C" not in counts(world["sinks"]["mnA"])
    assert "10.0.0.10|from-A" not in counts(world["sinks"]["mnC"])
    wait_for(lambda: all(h["bindings"]["10.0.0.5"]["coa"] == "203.0.113.1"
                         for h in read_json(st["ha"])["home_agents"].values()), what="both HAs bound to the FA")
    wait_for(lambda: (c := read_json(st["fa"])["counters"])["reverse_tunnelled"] >= 6
             and c["delivered_to_visitors"] >= 60, what="FA counters (status written each second)")
    lat = [r["latency_ms"] for r in mn_status(world, "mnA")["registrations"] if r["mode"] == "fa"]
    print(f"registration latency via FA: {lat} ms")


SPOOF = r"""
import socket, struct, sys
def ip(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    s = sum(struct.unpack("!10H", h)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return h[:10] + struct.pack("!H", ~s & 0xffff) + h[12:] + payload
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for inner_src in sys.argv[1:]:
    msg = f"spoof-{inner_src}".encode()
    udp = struct.pack("!HHHH", 4000, 5000, 8 + len(msg), 0) + msg
    for _ in range(5):
        raw.sendto(ip("203.0.113.1", "198.51.100.11", 4, ip(inner_src, "10.0.0.10", 17, udp)), ("198.51.100.11", 0))
"""


def test_2b_reverse_tunnel_accepts_only_home_addresses_bound_to_the_care_of_address(world):
    import subprocess
    import sys
    ns = world["ns"]
    # IP-IP "from the FA" (forged outer source) into virtual HA a: 10.0.0.5 is bound to
    # the FA's care-of address there, 10.0.0.99 is not
    subprocess.run(["ip", "netns", "exec", ns["rt"], sys.executable, "-c", SPOOF, "10.0.0.5", "10.0.0.99"],
                   check=True, timeout=10)
    wait_for(lambda: counts(world["sinks"]["hA"]).get("10.0.0.5|spoof-10.0.0.5", 0) >= 5,
             what="bound home address passes the reverse tunnel")
    time.sleep(0.3)
    assert "10.0.0.99|spoof-10.0.0.99" not in counts(world["sinks"]["hA"])


def test_3_colocated_care_of_address_without_fa(world):
    lab, ns, st = world["lab"], world["ns"], world["st"]
    lab.move("tbtmpmA", "brX", flap=True)   # carrier loss: the MN solicits at once
    # what a DHCP server on the visited network would hand out
    sh(f"ip -n {ns['mnA']} addr add 192.0.2.50/24 dev eth0")
    sh(f"ip -n {ns['mnA']} route replace default via 192.0.2.1 dev eth0")
    wait_for(lambda: mn_status(world, "mnA")["mode"] == "ccoa", timeout=15, what="mnA registered with CCoA")
    s = mn_status(world, "mnA")
    assert s["care_of_address"] == "192.0.2.50" and s["counters"]["solicitations_sent"] >= 1
    assert s["counters"]["carrier_up"] >= 1
    wait_for(lambda: read_json(st["ha"])["home_agents"]["a"]["bindings"]["10.0.0.5"]["coa"] == "192.0.2.50",
             what="HA binding to the CCoA (status written each second)")
    assert ping(ns["hA"], "10.0.0.5") == 3
    # mnC is still at the FA and still reachable
    assert ping(ns["hC"], "10.0.0.5") == 3
    lat = [r["latency_ms"] for r in s["registrations"] if r["mode"] == "ccoa"]
    print(f"registration latency via CCoA: {lat} ms")


def child_bytes(status: dict) -> tuple[int, int]:
    kids = [c for sa in (status.get("ipsec") or {}).get("sas", []) for c in sa["children"]]
    return (sum(int(c["bytes-in"] or 0) for c in kids), sum(int(c["bytes-out"] or 0) for c in kids))


def test_3b_claim24_ipsec_to_the_ha_inside_the_ccoa_tunnel(world):
    ns, st = world["ns"], world["st"]
    wait_for(lambda: mn_status(world, "mnA")["ipsec"]["state"] == "up", timeout=15, what="IKE MN -> HA")
    sas = mn_status(world, "mnA")["ipsec"]["sas"]
    assert sas[0]["state"] == "ESTABLISHED"
    child = sas[0]["children"][0]
    assert child["local-ts"] == ["10.0.0.5/32"] and child["remote-ts"] == ["10.0.0.0/24"]
    before = child_bytes(read_json(st["ha"])["home_agents"]["a"])
    assert ping(ns["hA"], "10.0.0.5", count=5) == 5
    # the HA's charon en- and decrypted the pings: they ran through ESP inside IP-IP
    wait_for(lambda: (b := child_bytes(read_json(st["ha"])["home_agents"]["a"]))[0] > before[0]
             and b[1] > before[1], what="ESP bytes both ways at the HA")
    peers = read_json(st["ha"])["home_agents"]["a"]["tunnel"]["peers"]
    assert [p["addr"] for p in peers.values()] == ["192.0.2.50"], peers   # only the CCoA tunnel carries it


def test_4_return_home_deregisters(world):
    lab, ns, st = world["lab"], world["ns"], world["st"]
    sh(f"ip -n {ns['mnA']} addr del 192.0.2.50/24 dev eth0")
    lab.move("tbtmpmA", "brHA", flap=True)
    wait_for(lambda: mn_status(world, "mnA")["mode"] == "home", timeout=10, what="mnA home")
    wait_for(lambda: "10.0.0.5" not in read_json(st["ha"])["home_agents"]["a"]["bindings"], what="binding removed")
    assert ping(ns["hA"], "10.0.0.5") == 3
    ha = read_json(st["ha"])["home_agents"]["a"]
    assert ha["counters"]["deregistrations"] >= 2   # at start and on return
    wait_for(lambda: mn_status(world, "mnA")["ipsec"]["state"] == "down", what="IPsec to the HA closed at home")
    wait_for(lambda: read_json(st["ha"])["home_agents"]["a"]["ipsec"]["sas"] == [], what="HA's SA deleted by IKE")
    assert ha["counters"].get("registrations_denied", 0) == 0


SEND_RAW = r"""
import socket, sys
dst, hexes = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for h in hexes:
    s.sendto(bytes.fromhex(h), (dst, 434))
"""


ASK_FA = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.0.5", 0)); s.settimeout(8)
s.sendto(bytes.fromhex(sys.argv[1]), ("203.0.113.1", 434))
print(s.recv(4096).hex())
"""


def test_5_garbage_and_forged_registrations_are_counted_not_fatal(world):
    import sys
    import subprocess

    from testbed.mip import messages as m
    from testbed.mip.security import ntp_now
    ns, st = world["ns"], world["st"]
    forged = m.build_request(flags=m.F_T, lifetime=60, home="10.0.0.5", ha=VHA["a"], coa="192.0.2.66",
                             ident=ntp_now(), spi=300, key=b"not the key")
    garbage = ["", "01", "0300", "ff" * 40, (m.build_request(flags=0, lifetime=1, home="10.0.0.5", ha=VHA["a"],
                                                           coa="1.2.3.4", ident=1, spi=300, key=b"x")[:30]).hex()]
    subprocess.run(["ip", "netns", "exec", ns["rt"], sys.executable, "-c", SEND_RAW, VHA["a"], forged.hex(), *garbage],
                   check=True, timeout=10)
    # and at the FA, from a node on the visited link
    subprocess.run(["ip", "netns", "exec", ns["mnC"], sys.executable, "-c", SEND_RAW, "203.0.113.1", *garbage[1:]],
                   check=True, timeout=10)
    wait_for(lambda: read_json(st["ha"])["home_agents"]["a"]["counters"].get("malformed_dropped", 0) >= 3
             and read_json(st["ha"])["home_agents"]["a"]["counters"].get("denied_ha_mn_failed_authentication") == 1,
             what="HA counted garbage and the forged request")
    wait_for(lambda: read_json(st["fa"])["counters"].get("malformed_dropped", 0) >= 2, what="FA counted garbage")
    # a request for a home agent that never answers: the FA says "registration timeout"
    lost_ha = m.build_request(flags=m.F_T, lifetime=60, home="10.0.0.5", ha="198.51.100.99", coa="203.0.113.1",
                              ident=ntp_now(), spi=300, key=b"k")
    got = subprocess.run(["ip", "netns", "exec", ns["mnC"], sys.executable, "-c", ASK_FA, lost_ha.hex()],
                         capture_output=True, text=True, timeout=15)
    reply = m.parse_registration(bytes.fromhex(got.stdout.strip()))
    assert reply.pkt.code == m.FA_REGISTRATION_TIMEOUT and reply.pkt.haaddr == "198.51.100.99"
    # nothing changed: mnA is home, mnC still served through the FA
    assert "10.0.0.5" not in read_json(st["ha"])["home_agents"]["a"]["bindings"]
    assert ping(ns["hA"], "10.0.0.5") == 3 and ping(ns["hC"], "10.0.0.5") == 3


def test_5b_backbone_napt_to_a_service_and_no_private_source_on_the_internet(world):
    """Claims 19, 22: both 10.0.0.5 reach a backbone service, seen as their HA's address;
    a private source never leaves the backbone towards the Internet."""
    lab, ns, st, work = world["lab"], world["ns"], world["st"], world["work"]
    svc, inet = work / "svc.json", work / "inet.json"
    udp_sink(lab, ns["op"], 5002, svc)          # a service on the backbone (MSM portal stand-in)
    udp_sink(lab, ns["rt"], 5003, inet)         # a host on the Internet
    time.sleep(0.5)
    udp_send(ns["mnA"], "198.51.100.13", 5002, "portal-A", 10)   # mnA at home (realm A)
    udp_send(ns["mnC"], "198.51.100.13", 5002, "portal-C", 10)   # mnC via the FA (realm C)
    wait_for(lambda: counts(svc).get("198.51.100.11|portal-A", 0) >= 8
             and counts(svc).get("198.51.100.12|portal-C", 0) >= 8, what="NAPT'd portal requests")
    assert not any(k.startswith("10.") for k in counts(svc))
    # replies find their way back into the right realm (conntrack mark -> routing table)
    assert ping(ns["mnA"], "198.51.100.13") == 3 and ping(ns["mnC"], "198.51.100.13") == 3
    udp_send(ns["mnA"], "198.51.100.30", 5003, "leak", 10)
    time.sleep(0.5)
    assert counts(inet) == {}
    wait_for(lambda: read_json(st["ha"])["dispatcher"]["198.51.100.11"]["private_source_dropped"] >= 10,
             what="private sources counted at the backbone")


def test_6_short_lifetimes_are_renewed_and_expire_when_the_mn_vanishes(world):
    """vHA c grants 4 s: mnC must have renewed all along; killed, its binding expires."""
    st, lab = world["st"], world["lab"]
    mn = mn_status(world, "mnC")
    assert mn["mode"] == "fa" and mn["lifetime_granted"] == 4
    before = mn["counters"].get("re_registrations", 0)
    wait_for(lambda: mn_status(world, "mnC")["counters"].get("re_registrations", 0) >= before + 2, timeout=10,
             what="two more renewals at 70 % of 4 s")
    hc = read_json(st["ha"])["home_agents"]["c"]
    assert hc["counters"]["re_registrations"] >= before + 1 and hc["counters"].get("bindings_expired", 0) == 0
    proc = lab.named["mnC"]
    proc.terminate()          # the MN disappears without deregistering
    proc.wait(5)
    wait_for(lambda: "10.0.0.5" not in read_json(st["ha"])["home_agents"]["c"]["bindings"], timeout=8,
             what="binding of the vanished MN expired")
    assert read_json(st["ha"])["home_agents"]["c"]["counters"]["bindings_expired"] == 1
    wait_for(lambda: all(v["ha"] != VHA["c"] for v in read_json(st["fa"])["visitors"]), timeout=8,
             what="FA visitor expired")
    assert ping(world["ns"]["hC"], "10.0.0.5", count=2) == 0
