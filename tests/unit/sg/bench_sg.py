"""Throughput of the SG data plane, each layer against the one below it (run as root):

    /work/main/.venv/bin/python -m tests.unit.sg.bench_sg [--seconds 5] [--json FILE]

Paths measured in one run, iperf3 TCP from 10.0.0.5 to 10.0.0.7:
  plain      two namespaces on one veth, routed
  ipip       through the userspace IP-IP endpoint (two "SGs" between the hosts)
  ipsec      strongSwan kernel-libipsec alone: initiator -> responder over one veth
  ipsec_ipip the same SA, but the path between initiator and responder is our IP-IP tunnel
and the ratios ipip/plain and ipsec_ipip/ipsec (the issue's aim: >= 0.8 for the latter).
Not a pytest test (too slow for CI); `make bench` can call it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed.common.strongswan import Charon, Credentials, render_initiator_swanctl, render_responder_swanctl, write_swanctl_dir
from tests.unit.sg.netns import Lab, sh, wait_for
from tests.unit.sg.pki import ScratchCA


def iperf(lab: Lab, server_ns: str, client_ns: str, dst: str, src: str, seconds: int) -> float:
    srv = lab.spawn(server_ns, ["iperf3", "-s", "-1", "-B", dst], f"iperf-{server_ns}.log")
    time.sleep(0.7)
    proc = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", dst, "-B", src, "-t",
                           str(seconds), "-J"], capture_output=True, text=True, timeout=seconds + 30)
    srv.wait(10)
    doc = json.loads(proc.stdout)
    return doc["end"]["sum_received"]["bits_per_second"] / 1e6


def tunnel(lab: Lab, ns: str, local: str, peer: str, ifname: str, routes: list[str], addresses=(),
           name="t") -> None:
    lab.python(ns, "testbed.tunnel", {
        "local": local, "mode": "userspace", "status_file": str(lab.workdir / f"{name}.status"),
        "peers": {"p": {"addr": peer, "ifname": ifname, "routes": routes,
                        "addresses": list(addresses)}}}, name)
    wait_for(lambda: (lab.workdir / f"{name}.status").exists(), what=f"tunnel {name}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not shutil.which("iperf3"):
        print("iperf3 missing (apt-get install iperf3)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tbt-bench-"))
    res: dict[str, float] = {}
    lab = Lab("b", work)
    charons: list[Charon] = []
    try:
        # plain: I(10.0.0.5) --veth-- R(10.0.0.7)
        i, r = lab.ns("I"), lab.ns("R")
        lab.veth(i, "eth0", r, "eth0")
        sh(f"ip -n {i} addr add 10.0.0.5/24 dev eth0; ip -n {r} addr add 10.0.0.7/24 dev eth0")
        res["plain"] = iperf(lab, r, i, "10.0.0.7", "10.0.0.5", args.seconds)

        # ipip: GA(198.51.100.1, 10.0.0.5 on lo) ==ipip== GB(198.51.100.2, 10.0.0.7 on lo)
        ga, gb = lab.ns("GA"), lab.ns("GB")
        lab.veth(ga, "pub0", gb, "pub0")
        sh(f"ip -n {ga} addr add 198.51.100.1/24 dev pub0; ip -n {gb} addr add 198.51.100.2/24 dev pub0")
        sh(f"ip -n {ga} addr add 10.0.0.5/32 dev lo; ip -n {gb} addr add 10.0.0.7/32 dev lo")
        tunnel(lab, ga, "198.51.100.1", "198.51.100.2", "tbtbt", ["10.0.0.7/32 src 10.0.0.5"], name="ga")
        tunnel(lab, gb, "198.51.100.2", "198.51.100.1", "tbtbt", ["10.0.0.5/32 src 10.0.0.7"], name="gb")
        res["ipip"] = iperf(lab, gb, ga, "10.0.0.7", "10.0.0.5", args.seconds)

        # ipsec alone: MN (10.0.0.5) --veth-- responder (198.51.100.2, target 10.0.0.7 local)
        ca = ScratchCA(work / "pki")
        mn, rs = lab.ns("MN"), lab.ns("RS")
        lab.veth(mn, "eth0", rs, "eth0")
        sh(f"ip -n {mn} addr add 10.0.0.5/32 dev eth0; ip -n {mn} route add 198.51.100.2/32 dev eth0")
        sh(f"ip -n {rs} addr add 198.51.100.2/32 dev eth0; ip -n {rs} addr add 10.0.0.7/32 dev lo;"
           f" ip -n {rs} route add 10.0.0.5/32 dev eth0")

        def ipsec_pair(mn_ns: str, rs_ns: str, tag: str) -> None:
            rc = Credentials(*ca.issue(f"rs{tag}", ["198.51.100.2"]), str(ca.ca_path))
            mc = Credentials(*ca.issue(f"mn{tag}", ["198.51.100.1"]), str(ca.ca_path))
            rch = Charon(f"rs{tag}", work / f"rs{tag}", netns=rs_ns)
            mch = Charon(f"mn{tag}", work / f"mn{tag}", netns=mn_ns)
            charons.extend([rch, mch])
            rch.start()
            mch.start()
            rch.load_swanctl(write_swanctl_dir(work / f"rs{tag}" / "sw", render_responder_swanctl(
                {"A": "198.51.100.1"}, "198.51.100.2", local_ts=["10.0.0.0/24"]), rc))
            mch.load_swanctl(write_swanctl_dir(work / f"mn{tag}" / "sw", render_initiator_swanctl(
                {"B": ("198.51.100.2", ["10.0.0.7"])}, "198.51.100.1"), mc))
            t0 = time.monotonic()
            mch.initiate("wg", "to-B")
            res[f"ike_setup_ms_{tag}"] = (time.monotonic() - t0) * 1000

        ipsec_pair(mn, rs, "alone")
        res["ipsec"] = iperf(lab, rs, mn, "10.0.0.7", "10.0.0.5", args.seconds)

        # ipsec over ipip: MN2 -- XA ==ipip== XB -- RS2 (same addresses, IKE and ESP ride IP-IP)
        mn2, xa, xb, rs2 = lab.ns("M2"), lab.ns("XA"), lab.ns("XB"), lab.ns("R2")
        lab.veth(mn2, "eth0", xa, "lan0")
        lab.veth(xa, "pub0", xb, "pub0")
        lab.veth(xb, "lan0", rs2, "eth0")
        sh(f"ip -n {mn2} addr add 10.0.0.5/32 dev eth0; ip -n {mn2} route add 10.0.0.1 dev eth0;"
           f" ip -n {mn2} route add default via 10.0.0.1")
        sh(f"ip -n {xa} addr add 10.0.0.1/32 dev lan0; ip -n {xa} route add 10.0.0.5/32 dev lan0;"
           f" ip -n {xa} addr add 198.51.100.11/24 dev pub0")
        sh(f"ip -n {xb} addr add 198.51.100.12/24 dev pub0; ip -n {xb} addr add 192.0.2.1/30 dev lan0;"
           f" ip -n {xb} route add 198.51.100.2/32 via 192.0.2.2")
        sh(f"ip -n {rs2} addr add 192.0.2.2/30 dev eth0; ip -n {rs2} addr add 198.51.100.2/32 dev eth0;"
           f" ip -n {rs2} addr add 10.0.0.7/32 dev lo; ip -n {rs2} route add default via 192.0.2.1")
        tunnel(lab, xa, "198.51.100.11", "198.51.100.12", "tbtbx", ["198.51.100.2/32"], name="xa")
        tunnel(lab, xb, "198.51.100.12", "198.51.100.11", "tbtbx", ["10.0.0.5/32"], name="xb")
        ipsec_pair(mn2, rs2, "ipip")
        res["ipsec_ipip"] = iperf(lab, rs2, mn2, "10.0.0.7", "10.0.0.5", args.seconds)
        res["ratio_ipip_vs_plain"] = res["ipip"] / res["plain"]
        res["ratio_ipsec_ipip_vs_ipsec"] = res["ipsec_ipip"] / res["ipsec"]
    finally:
        for c in charons:
            c.stop()
        lab.close()
    out = json.dumps({k: round(v, 3) for k, v in res.items()}, indent=1)
    print(out)
    if args.json:
        Path(args.json).write_text(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
