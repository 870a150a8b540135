"""IP-IP data planes between namespace "SGs" on the host (no Docker): bpf and userspace.

Topology (all inside namespaces this test makes and removes; names start with tbt):

    hA 10.0.0.5 ── A 198.51.100.1 ─┐                         ┌─ B 198.51.100.2 ── hB 10.0.0.7
                   C 198.51.100.3 ─┴── bridge in namespace I ┘
                   (10.0.0.5 on C's lo: the same private address as hA, another realm)

A and C each run an endpoint with peer B; B runs one with peers A (device tA) and C (tC).
Checks per mode: traffic both ways; B's devices keep the two 10.0.0.5 apart (per-device nft
counters), and a peer B does not know is dropped and counted, not delivered; the outer DF
bit copies the inner one (captured on B's public link); a DF packet larger than the tunnel
MTU is answered with ICMP "fragmentation needed" carrying the tunnel MTU (RFC 2003 3.1).
Under CI=true a mode this machine cannot run fails the test instead of skipping it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from netns_support import require_tunnel_mode
from sg.netns import Lab, needs_root, ping, sh, wait_for

pytestmark = [pytest.mark.netns, needs_root]

PUB = {"A": "198.51.100.1", "B": "198.51.100.2", "C": "198.51.100.3"}
# userspace: A's public link is narrowed so that the path, not the device, limits the tunnel
PUB_MTU = {"bpf": 1500, "userspace": 1400}
TUNNEL_MTU = {"bpf": 1480, "userspace": 1380}


@pytest.fixture(scope="module", params=["bpf", "userspace"])
def world(request, tmp_path_factory):
    mode = request.param
    require_tunnel_mode(mode)
    work = tmp_path_factory.mktemp(f"tun-{mode}")
    lab = Lab("u" if mode == "userspace" else "p", work)
    try:
        inet = lab.ns("I")
        br = f"{lab.prefix}br"
        sh(f"ip -n {inet} link add {br} type bridge; ip -n {inet} link set {br} up")
        ns = {}
        for name, addr in PUB.items():
            n = ns[name] = lab.ns(name)
            lab.veth(n, "pub0", inet, f"{lab.prefix}p{name}")
            sh(f"ip -n {inet} link set {lab.prefix}p{name} master {br}")
            sh(f"ip -n {n} addr add {addr}/24 dev pub0")
        sh(f"ip -n {ns['A']} link set pub0 mtu {PUB_MTU[mode]}")
        ha, hb = lab.ns("hA"), lab.ns("hB")
        lab.veth(ns["A"], "lan0", ha, "eth0")
        sh(f"ip -n {ns['A']} addr add 10.0.0.1/24 dev lan0; ip -n {ha} addr add 10.0.0.5/32 dev eth0")
        sh(f"ip -n {ha} route add 10.0.0.1 dev eth0; ip -n {ha} route add default via 10.0.0.1")
        lab.veth(ns["B"], "lan0", hb, "eth0")
        sh(f"ip -n {ns['B']} addr add 10.0.0.1/24 dev lan0")
        # /32 on hB: 10.0.0.5 lives in other realms and must not look on-link
        sh(f"ip -n {hb} addr add 10.0.0.7/32 dev eth0; ip -n {hb} route add 10.0.0.1 dev eth0")
        sh(f"ip -n {hb} route add default via 10.0.0.1")
        sh(f"ip -n {ns['C']} addr add 10.0.0.5/32 dev lo")
        for name, routes in (("A", ["10.0.0.7/32"]), ("C", ["10.0.0.7/32 src 10.0.0.5"])):
            lab.python(ns[name], "testbed.tunnel", {
                "local": PUB[name], "mode": mode, "log_level": "DEBUG",
                "status_file": str(work / f"tun{name}.status"),
                "peers": {"B": {"addr": PUB["B"], "ifname": "tB", "routes": routes}}}, f"tun{name}")
        lab.python(ns["B"], "testbed.tunnel", {
            "local": PUB["B"], "mode": mode, "log_level": "DEBUG",
            "status_file": str(work / "tunB.status"),
            "peers": {"A": {"addr": PUB["A"], "ifname": "tA", "routes": ["10.0.0.5/32"]},
                      "C": {"addr": PUB["C"], "ifname": "tC"}}}, "tunB")
        for name in PUB:
            wait_for(lambda: (work / f"tun{name}.status").exists(), timeout=20,
                     what=f"tunnel {name} status ({lab.log('tun' + name + '.log')[-600:]})")
        # B counts what each realm's device delivers from 10.0.0.5 (the realm-indexed view)
        subprocess.run(["ip", "netns", "exec", ns["B"], "nft", "-f", "-"], check=True, text=True, input="""
table ip tbt_realms {
    counter from_A {}
    counter from_C {}
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname "tA" ip saddr 10.0.0.5 udp dport 5000 counter name from_A
        iifname "tC" ip saddr 10.0.0.5 udp dport 5000 counter name from_C
    }
}""")
        yield {"lab": lab, "ns": ns, "ha": ha, "hb": hb, "work": work, "mode": mode}
    finally:
        lab.close()


def status(world, name):
    return json.loads((world["work"] / f"tun{name}.status").read_text())


def nft_counter(world, name) -> int:
    out = sh(f"ip netns exec {world['ns']['B']} nft -j list counter ip tbt_realms {name}").stdout
    return [o["counter"]["packets"] for o in json.loads(out)["nftables"] if "counter" in o][0]


SEND = r"""
import socket, sys
dst, port, msg, n, df, size = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2 if df else 0)   # IP_MTU_DISCOVER: DO / DONT
payload = (msg * (size // len(msg) + 1))[:max(size - 28, len(msg))]
for _ in range(n):
    try:
        s.sendto(payload, (dst, port))
    except OSError:
        pass
"""


def send(ns, dst, port, msg, n=10, df=True, size=100):
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SEND, dst, str(port), msg, str(n),
                    str(int(df)), str(size)], check=True, timeout=30)


def test_mode_is_reported(world):
    for name in PUB:
        st = status(world, name)
        assert st["mode"] == world["mode"] and st["mode_requested"] == world["mode"], st


def test_carries_traffic_both_ways(world):
    assert ping(world["ha"], "10.0.0.7", "10.0.0.5", 3) == 3
    for me, peer in (("A", "B"), ("B", "A")):
        wait_for(lambda: (lambda c: c["packets_out"] >= 3 and c["packets_in"] >= 3)(
            status(world, me)["peers"][peer]), what=f"{me}'s counters for {peer}")


def test_realms_apart_by_outer_source(world):
    """Two 10.0.0.5 (hA behind A, C's own) reach B on their own peer's device."""
    base_a, base_c = nft_counter(world, "from_A"), nft_counter(world, "from_C")
    send(world["ha"], "10.0.0.7", 5000, "fromA", n=7)
    send(world["ns"]["C"], "10.0.0.7", 5000, "fromC", n=11)
    wait_for(lambda: nft_counter(world, "from_A") - base_a == 7 and nft_counter(world, "from_C") - base_c == 11,
             timeout=5, what="per-realm counters at B")
    time.sleep(0.3)
    assert (nft_counter(world, "from_A") - base_a, nft_counter(world, "from_C") - base_c) == (7, 11)


CAPTURE = r"""
import json, socket, struct, sys, time
ifname, port, out, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
# ETH_P_ALL: such taps see a frame before tc ingress (the decap program) does
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((ifname, 0)); s.settimeout(0.2)
open(out + ".ready", "w").close()
seen, end = [], time.time() + secs
while time.time() < end:
    try:
        f = s.recv(65535)
    except socket.timeout:
        continue
    ip = f[14:]
    if f[12:14] != b"\x08\x00" or len(ip) < 48 or ip[9] != 4:
        continue
    o_ihl = (ip[0] & 15) * 4
    inner = ip[o_ihl:]
    i_ihl = (inner[0] & 15) * 4
    if inner[9] != 17 or struct.unpack("!H", inner[i_ihl + 2:i_ihl + 4])[0] != port:
        continue
    seen.append({"outer_df": bool(ip[6] & 0x40), "inner_df": bool(inner[6] & 0x40),
                 "outer_fragment": bool(ip[6] & 0x3f or ip[7]), "outer_len": struct.unpack("!H", ip[2:4])[0],
                 "outer_proto": ip[9], "outer_src": socket.inet_ntoa(ip[12:16])})
json.dump(seen, open(out, "w"))
"""


def test_outer_df_copies_inner(world):
    """Issue 11's input: 1450-byte packets (DF set, then clear) from C to hB leave C as one
    1470-byte outer packet each, whose DF equals the inner one (RFC 2003 3.1)."""
    lab, out = world["lab"], world["work"] / "df.json"
    lab.spawn(world["ns"]["B"], [sys.executable, "-c", CAPTURE, "pub0", "5001", str(out), "4"], "capture.log")
    wait_for(lambda: (world["work"] / "df.json.ready").exists(), what="capture ready")
    send(world["ns"]["C"], "10.0.0.7", 5001, "df", n=5, df=True, size=1450)
    send(world["ns"]["C"], "10.0.0.7", 5001, "nodf", n=5, df=False, size=1450)
    seen = wait_for(lambda: json.loads(out.read_text()), timeout=10, what="capture result")
    assert len(seen) == 10, seen
    assert all(p["outer_df"] == p["inner_df"] for p in seen), seen
    assert sum(p["outer_df"] for p in seen) == 5
    assert all(not p["outer_fragment"] and p["outer_len"] == 1470 for p in seen), seen
    assert {p["outer_src"] for p in seen} == {PUB["C"]}


PMTU = r"""
import socket, sys
dst, size = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)   # IP_PMTUDISC_DO: DF set, learn the path MTU
s.connect((dst, 5002))
for _ in range(4):   # PMTUD as a sender does it: each answer lowers what it sends next
    size = min(size, s.getsockopt(socket.IPPROTO_IP, 14))  # IP_MTU
    try:
        s.send(b"x" * (size - 28))
    except OSError:
        pass
    import time; time.sleep(0.3)
print(s.getsockopt(socket.IPPROTO_IP, 14))
"""


def test_df_too_big_answered_with_tunnel_mtu(world):
    """hA sends DF datagrams of its path MTU towards hB, starting at 1500: the tunnel answers
    "fragmentation needed" with its MTU and hA's kernel learns it (IP_MTU drops to the tunnel
    MTU). bpf: the peer device's 1480. userspace: A's public link is 1400, so the device's
    1480 is answered by the kernel first and 1380 (path - 20) by the endpoint itself."""
    mode = world["mode"]
    before = status(world, "A")["peers"]["B"]
    proc = subprocess.run(["ip", "netns", "exec", world["ha"], sys.executable, "-c", PMTU, "10.0.0.7", "1500"],
                          capture_output=True, text=True, timeout=20)
    assert int(proc.stdout.strip()) == TUNNEL_MTU[mode], proc
    if mode == "userspace":
        after = wait_for(lambda: (lambda p: p if p["frag_needed_sent"] > before["frag_needed_sent"] else None)(
            status(world, "A")["peers"]["B"]), what="frag_needed_sent counted")
        assert after["send_errors"] == before["send_errors"]


def test_unknown_peer_dropped_and_counted(world):
    """Without its map entry / peer entry, C's packets are dropped and counted, never
    delivered on A's device: realm selection is by outer source, nothing else."""
    base_a = nft_counter(world, "from_A")
    # C now claims to be a peer of B that B does not know: re-address C's endpoint source
    # is not possible without a restart, so use a raw IP-IP packet from a fresh address.
    code = r"""
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
s.bind(("198.51.100.9", 0))
def csum(b):
    t = sum(struct.unpack(f"!{len(b)//2}H", b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
udp = struct.pack("!HHHH", 40000, 5000, 8 + 5, 0) + b"spoof"
h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton("10.0.0.5"), socket.inet_aton("10.0.0.7"))
h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
for _ in range(4):
    s.sendto(h + udp, ("198.51.100.2", 0))
"""
    sh(f"ip -n {world['ns']['C']} addr add 198.51.100.9/24 dev pub0")
    before = status(world, "B")["unknown_peer_dropped"]
    subprocess.run(["ip", "netns", "exec", world["ns"]["C"], sys.executable, "-c", code], check=True, timeout=10)
    wait_for(lambda: status(world, "B")["unknown_peer_dropped"] - before >= 4, timeout=5,
             what="unknown peer drops counted")
    assert nft_counter(world, "from_A") == base_a


MALFORMED = r"""
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
s.bind(("198.51.100.1", 0))
bad = [b"\x60" + b"\0" * 39,                                   # IPv6 inside IPv4-in-IPv4
       b"\x45\0",                                              # 2 bytes: no header at all
       b"\x44" + b"\0" * 39,                                   # IHL 4 (< 5)
       struct.pack("!BBH", 0x45, 0, 9000) + b"\0" * 36]        # total length beyond the data
for p in bad:
    s.sendto(p, ("198.51.100.2", 0))
"""


def test_malformed_inner_from_a_known_peer_dropped_and_counted(world):
    """IP-IP from A (a known peer) whose inner packet is not sane IPv4 is dropped and counted
    per peer in both planes; nothing of it reaches B's realm-A device."""
    before = status(world, "B")["peers"]["A"]["malformed_dropped"]
    subprocess.run(["ip", "netns", "exec", world["ns"]["A"], sys.executable, "-c", MALFORMED],
                   check=True, timeout=10)
    wait_for(lambda: status(world, "B")["peers"]["A"]["malformed_dropped"] - before == 4, timeout=5,
             what="4 malformed inner packets counted at B for peer A")


def _tx_packets(ns: str, dev: str) -> int:
    return json.loads(sh(f"ip -n {ns} -s -j link show dev {dev}").stdout)[0]["stats64"]["tx"]["packets"]


def test_encapsulated_packets_follow_a_route_change(world):
    """A's route to B moves to a second public link: the tunnel follows within the endpoint's
    route refresh (bpf sends out of a device it looked up; userspace lets the kernel route)."""
    lab, a, inet = world["lab"], world["ns"]["A"], lab_inet(world)
    lab.veth(a, "pub1", inet, f"{lab.prefix}p1")
    sh(f"ip -n {inet} link set {lab.prefix}p1 master {lab.prefix}br")
    sh(f"ip -n {a} route add {PUB['B']}/32 dev pub1")
    try:
        def moved():
            before = _tx_packets(a, "pub1")
            return ping(world["ha"], "10.0.0.7", "10.0.0.5", 2) == 2 and _tx_packets(a, "pub1") - before >= 2
        wait_for(moved, timeout=15, interval=0.5, what="pings leaving A on pub1")
    finally:
        sh(f"ip -n {a} route del {PUB['B']}/32 dev pub1", check=False)

    def back():
        b0, b1 = _tx_packets(a, "pub0"), _tx_packets(a, "pub1")
        ok = ping(world["ha"], "10.0.0.7", "10.0.0.5", 2) == 2
        return ok and _tx_packets(a, "pub0") - b0 >= 2 and _tx_packets(a, "pub1") - b1 < 2
    wait_for(back, timeout=15, interval=0.5, what="pings back on pub0")


def lab_inet(world) -> str:
    return f"{world['lab'].prefix}I"
