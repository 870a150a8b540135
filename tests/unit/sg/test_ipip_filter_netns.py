"""Userspace IP-IP between three netns "SGs" and the realm-indexed filter at SG-B.

Topology (all inside our own namespaces):

    sgA 198.51.100.1 ─┐                          ┌─ lanB: b = 10.0.0.7
    sgB 198.51.100.2 ─┼─ bridge in tbt..I ─       sgB 10.0.0.1 ─┘
    sgC 198.51.100.3 ─┘
    a = 10.0.0.5 on sgA's lo, c = 10.0.0.5 on sgC's lo (colliding private addresses)

sgB terminates A and C on tunnel interfaces of their own, so its filter can tell a from c.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.sg.portal_follower import PortalFollower
from testbed.sg.workgroup_filter import FilterRow, WorkgroupFilter

from .netns import Lab, needs_root, ping, read_json, sh, sink_counts, udp_send, udp_sink, wait_for
from .portal_stub import PortalStub

pytestmark = [pytest.mark.netns, needs_root]

PUB = {"A": "198.51.100.1", "B": "198.51.100.2", "C": "198.51.100.3"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("ipip")
    lab = Lab("f", work)
    try:
        inet = lab.ns("I")
        sh(f"ip -n {inet} link add tbtfbr type bridge; ip -n {inet} link set tbtfbr up")
        ns = {}
        for name, addr in PUB.items():
            n = ns[name] = lab.ns(name)
            lab.veth(n, "pub0", inet, f"tbtfp{name}")
            sh(f"ip -n {inet} link set tbtfp{name} master tbtfbr")
            sh(f"ip -n {n} addr add {addr}/24 dev pub0")
        lan = lab.ns("L")
        lab.veth(ns["B"], "lan0", lan, "eth0")
        sh(f"ip -n {ns['B']} addr add 10.0.0.1/24 dev lan0")
        # /32 on b: a peer at 10.0.0.5 must not look on-link (it lives in another realm)
        sh(f"ip -n {lan} addr add 10.0.0.7/32 dev eth0; ip -n {lan} route add 10.0.0.1 dev eth0")
        sh(f"ip -n {lan} route add default via 10.0.0.1")
        for name in ("A", "C"):
            sh(f"ip -n {ns[name]} addr add 10.0.0.5/32 dev lo")
            lab.python(ns[name], "testbed.tunnel", {
                "local": PUB[name], "mode": "userspace", "log_level": "DEBUG",
                "status_file": str(work / f"tun{name}.status"),
                "peers": {"B": {"addr": PUB["B"], "ifname": "tbtftB",
                                "routes": ["10.0.0.7/32 src 10.0.0.5"]}}}, f"tun{name}")
        # B: both peers on interfaces of their own; replies to 10.0.0.5 go back to A only
        # (the reverse direction of the real design runs over b's own tunnels, claim 12).
        lab.python(ns["B"], "testbed.tunnel", {
            "local": PUB["B"], "mode": "userspace", "log_level": "DEBUG",
            "status_file": str(work / "tunB.status"),
            "peers": {"A": {"addr": PUB["A"], "ifname": "tbtftA", "routes": ["10.0.0.5/32"]},
                      "C": {"addr": PUB["C"], "ifname": "tbtftC"}}}, "tunB")
        for name in PUB:
            wait_for(lambda: (work / f"tun{name}.status").exists(), what=f"tunnel {name} status")
        sink = work / "sink.json"
        udp_sink(lab, lan, 5000, sink)
        yield {"lab": lab, "ns": ns, "lan": lan, "work": work, "sink": sink}
    finally:
        lab.close()


def status(world, name):
    return read_json(world["work"] / f"tun{name}.status")


def test_inner_ping_through_userspace_tunnel_is_ip_in_ip_on_the_wire(world):
    ns, work = world["ns"], world["work"]
    cap = None
    if shutil.which("tcpdump"):
        pcap = work / "pub.pcap"
        cap = subprocess.Popen(["ip", "netns", "exec", ns["B"], "tcpdump", "-q", "-n", "-U", "-i", "pub0",
                                "-w", str(pcap), "ip"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: pcap.exists() and pcap.stat().st_size >= 24, what="tcpdump started")
        time.sleep(0.5)
    before = status(world, "B")["peers"]["A"]
    assert ping(ns["A"], "10.0.0.7", "10.0.0.5", count=3) == 3, (world["work"] / "tunB.log").read_text()[-3000:]
    after = status(world, "B")["peers"]["A"]
    wait_for(lambda: status(world, "B")["peers"]["A"]["packets_in"] >= before["packets_in"] + 3,
             what="B's counters for A")
    wait_for(lambda: status(world, "A")["peers"]["B"]["packets_in"] >= 3,  # replies decapsulated at A
             what="A's counters for B")
    if cap is not None:
        time.sleep(0.5)
        cap.terminate()
        cap.wait(5)
        from scapy.all import IP, rdpcap
        pkts = [p for p in rdpcap(str(pcap)) if IP in p]
        between = [p for p in pkts if p[IP].src in PUB.values() and p[IP].dst in PUB.values()]
        assert len(between) >= 6, [p.summary() for p in pkts]
        assert {p[IP].proto for p in between} == {4}, [p.summary() for p in between]
        assert all(p[IP].payload.src in ("10.0.0.5", "10.0.0.7") for p in between)
    assert after["malformed_dropped"] == 0


def test_filter_tells_colliding_initiators_apart_and_follows_portal(world):
    ns, sink = world["ns"], world["sink"]
    portal = PortalStub()
    wf = WorkgroupFilter(peer_ifaces={PUB["A"]: "tbtftA", PUB["C"]: "tbtftC"},
                         table="tbt_wg", nft_cmd=["ip", "netns", "exec", ns["B"], "nft"])
    applied = []
    follower = PortalFollower(portal.url, "B", lambda v, rows: (wf.apply(rows, v), applied.append(v)),
                              poll_timeout=2)
    try:
        # Only a (realm A) may reach b; c (realm C, same 10.0.0.5) may reach 10.0.0.8 only.
        portal.set_rows("B", [
            {"peer_sg_public": PUB["A"], "initiator_private": "10.0.0.5", "targets": ["10.0.0.7"],
             "initiator_fqdn": "a.A.example"},
            {"peer_sg_public": PUB["C"], "initiator_private": "10.0.0.5", "targets": ["10.0.0.8"],
             "initiator_fqdn": "c.C.example"}])
        follower.start()
        wait_for(lambda: applied, what="first filter apply")
        udp_send(ns["A"], "10.0.0.7", 5000, "10.0.0.5", "from-A", n=20)
        udp_send(ns["C"], "10.0.0.7", 5000, "10.0.0.5", "from-C", n=20)
        wait_for(lambda: sink_counts(sink).get("10.0.0.5|from-A", 0) >= 18, what="a's datagrams at b")
        time.sleep(0.3)
        assert sink_counts(sink).get("10.0.0.5|from-C", 0) == 0
        st = wf.status()
        rows = {(r["peer_sg_public"], r["initiator_private"]): r for r in st["rows"]}
        assert rows[(PUB["A"], "10.0.0.5")]["packets"] >= 18
        assert rows[(PUB["C"], "10.0.0.5")]["packets"] == 0
        assert st["drops"][PUB["C"]]["packets"] >= 18
        assert st["drops"][PUB["A"]]["packets"] == 0
        a_row_before = rows[(PUB["A"], "10.0.0.5")]["packets"]

        # Portal change: c now admitted to b, a removed. Must take effect within seconds.
        t0 = time.monotonic()
        portal.set_rows("B", [
            {"peer_sg_public": PUB["C"], "initiator_private": "10.0.0.5", "targets": ["10.0.0.7"]}])
        wait_for(lambda: wf.version == portal.version, timeout=5, what="filter follows portal")
        assert time.monotonic() - t0 < 5
        udp_send(ns["C"], "10.0.0.7", 5000, "10.0.0.5", "from-C", n=20)
        udp_send(ns["A"], "10.0.0.7", 5000, "10.0.0.5", "from-A2", n=20)
        wait_for(lambda: sink_counts(sink).get("10.0.0.5|from-C", 0) >= 18, what="c's datagrams at b")
        time.sleep(0.3)
        assert sink_counts(sink).get("10.0.0.5|from-A2", 0) == 0
        st = wf.status()
        rows = {(r["peer_sg_public"], r["initiator_private"]): r for r in st["rows"]}
        assert (PUB["A"], "10.0.0.5") not in rows
        assert rows[(PUB["C"], "10.0.0.5")]["packets"] >= 18
        assert st["drops"][PUB["A"]]["packets"] >= 18
        assert a_row_before >= 18
        # the C drop counter kept its earlier value across the atomic replace
        assert st["drops"][PUB["C"]]["packets"] >= 18
    finally:
        follower.stop()
        portal.close()
        wf.remove()


def test_portal_outage_keeps_last_rows(world):
    ns = world["ns"]
    portal = PortalStub()
    wf = WorkgroupFilter(peer_ifaces={PUB["A"]: "tbtftA"}, table="tbt_wg2",
                         nft_cmd=["ip", "netns", "exec", ns["B"], "nft"])
    follower = PortalFollower(portal.url, "B", lambda v, rows: wf.apply(rows, v), poll_timeout=1,
                              max_backoff=0.5)
    try:
        portal.set_rows("B", [{"peer_sg_public": PUB["A"], "initiator_private": "10.0.0.5",
                               "targets": ["10.0.0.7"]},
                              {"peer_sg_public": "not-an-address", "initiator_private": "10.0.0.9"}])
        follower.start()
        wait_for(lambda: wf.version == portal.version, what="first apply")
        assert len(wf.rows) == 1 and follower.problems and "peer_sg_public" in follower.problems[0]
        portal.broken = True
        wait_for(lambda: follower.errors >= 2, what="follower notices outage")
        assert len(wf.rows) == 1  # fail-static
        assert "tbt_wg2" in sh(f"ip netns exec {ns['B']} nft list tables").stdout
    finally:
        follower.stop()
        portal.close()
        wf.remove()


def test_malformed_and_unknown_ipip_are_counted_not_fatal(world):
    ns = world["ns"]
    before = status(world, "B")
    # From A's public address: bad inner packets. From an unknown address: anything.
    sh(f"ip -n {ns['A']} addr add 198.51.100.9/24 dev pub0")
    script = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
s.bind((sys.argv[1], 0))
dst = sys.argv[2]
good = bytes([0x45, 0, 0, 28]) + bytes(8) + bytes([64, 17, 0, 0]) + socket.inet_aton("10.0.0.5") + socket.inet_aton("10.0.0.7") + bytes(8)
bad = [b"", b"\x00" * 5, b"\x65" + bytes(30), b"\x45\x00\xff\xff" + bytes(30), b"\x41" + bytes(30)]
if sys.argv[3] == "bad":
    for b in bad:
        s.sendto(b, (dst, 0))
else:
    s.sendto(good, (dst, 0))
"""
    subprocess.run(["ip", "netns", "exec", ns["A"], sys.executable, "-c", script, PUB["A"], PUB["B"], "bad"],
                   check=True)
    subprocess.run(["ip", "netns", "exec", ns["A"], sys.executable, "-c", script, "198.51.100.9", PUB["B"],
                    "good"], check=True)
    wait_for(lambda: status(world, "B")["peers"]["A"]["malformed_dropped"]
             >= before["peers"]["A"]["malformed_dropped"] + 5, what="malformed counted")
    wait_for(lambda: status(world, "B")["unknown_peer_dropped"] >= before["unknown_peer_dropped"] + 1,
             what="unknown peer counted")
    assert status(world, "B")["unknown_sources"].get("198.51.100.9", 0) >= 1
    # still alive and forwarding
    assert ping(ns["A"], "10.0.0.7", "10.0.0.5", count=2) == 2


def test_filter_rendering_refuses_bad_rows():
    with pytest.raises(ValueError, match="initiator_private"):
        FilterRow.from_json({"peer_sg_public": "198.51.100.1", "initiator_private": "10.0.0.300"})
    with pytest.raises(ValueError, match="targets"):
        FilterRow.from_json({"peer_sg_public": "198.51.100.1", "initiator_private": "10.0.0.5",
                             "targets": "10.0.0.7"})


RUNTIME_PEERS = r"""
import json, subprocess, sys
from testbed.tunnel.ipip import IpipEndpoint, kernel_ipip_available
def links():
    return {l["ifname"] for l in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)}
ep = IpipEndpoint("198.51.100.1", peers={"B": "198.51.100.2"}, ifname_prefix="tbtr")
from testbed.tunnel.tcbpf import bpf_unavailable
out = {"auto_mode": ep.mode, "probe": kernel_ipip_available("198.51.100.1"), "after_init": "tbtrB" in links(),
       "bpf_probe": bpf_unavailable("198.51.100.1") is None}
ep.start()
ep.add_peer("C", "198.51.100.3")
out["after_add"] = "tbtrC" in links()
try:
    ep.add_peer("C2", "198.51.100.3")
except ValueError as exc:
    out["dup_refused"] = str(exc)
ep.remove_peer("B")
out["after_remove"] = "tbtrB" in links()
out["peers"] = sorted(ep.status()["peers"])
ep.close()
out["after_close"] = "tbtrC" in links()
print(json.dumps(out))
"""


def test_peers_added_and_removed_at_runtime_and_mode_detection(world):
    proc = subprocess.run(["ip", "netns", "exec", world["ns"]["A"], sys.executable, "-c", RUNTIME_PEERS],
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[3]), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["after_init"] and out["after_add"] and not out["after_remove"] and not out["after_close"]
    assert out["peers"] == ["C"] and "already used" in out["dup_refused"]
    # auto mode follows what the node can do (this project's kernel has no ipip module, and
    # a root test process may load BPF): kernel, else bpf, else userspace (tunnel/modes.py)
    assert out["auto_mode"] == ("kernel" if out["probe"] else "bpf" if out["bpf_probe"] else "userspace")
    config = subprocess.run("zcat /proc/config.gz 2>/dev/null | grep '^CONFIG_NET_IPIP='", shell=True,
                            capture_output=True, text=True).stdout
    if Path("/proc/config.gz").exists() and config == "":
        assert out["probe"] is False
