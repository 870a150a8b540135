"""Benchmark `tunnel` (issue 14): iperf3 TCP through the IP-IP data planes, each beside the
same path without the thing measured, in host namespaces (no Docker), one run, interleaved.

Every leg is its own chain of namespaces with the same hops, so one leg differs from its
baseline in one thing only:

    ipip_<mode> / plain          h1 10.0.0.5 - G1 ==IP-IP (mode)== G2 - h2 10.0.0.7
                                 vs the same chain routed without a tunnel
    ipsec_ipip_<mode> / ipsec    one strongSwan SA (kernel-libipsec, ESP-in-UDP) from h1 to a
                                 responder behind G2, carried over the IP-IP tunnel G1 == G2
                                 vs the same SA over the same chain routed plainly

Modes: bpf and userspace (kernel ipip where the kernel has it). Medians over REPEAT runs of
SECONDS each; the aims (issue 14): ipip/plain >= 0.5, ipsec_ipip/ipsec >= 0.9.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from testbed.common.enroll import sign_local_key
from testbed.msm.ca import CertificateAuthority
from testbed.common.strongswan import (Charon, Credentials, render_initiator_swanctl, render_responder_swanctl,
                                   write_swanctl_dir)
from testbed.tunnel.ipip import kernel_ipip_available
from testbed.tunnel.tcbpf import bpf_unavailable

from .backend import repo_root
from .scenario import load_module

Say = Callable[[str], None]
SECONDS = 5
REPEAT = 5
AIM_IPIP = 0.5
AIM_IPSEC = 0.9
RS_PUBLIC = "203.0.113.2"     # the IPsec responder's public address (behind G2)
MN_SG_PUBLIC = "203.0.113.1"  # the identity the initiator's certificate carries (claim 10)


def _support():
    """tests/unit/netns_support.py: namespaces, veths, processes, and their exact cleanup."""
    return load_module(repo_root() / "tests" / "unit" / "netns_support.py", "netns_support")


class Chain:
    """h1 - G1 - G2 - h2 (namespaces `<prefix><tag>{h1,g1,g2,h2}`); `mode` None: plain routing."""

    def __init__(self, lab, tag: str, index: int, mode: str | None, h2_addr: str = "10.0.0.7") -> None:
        sh = _support().sh
        self.lab, self.tag, self.mode = lab, tag, mode
        self.h1, self.g1, self.g2, self.h2 = (lab.ns(f"{tag}{x}", forward=True) for x in ("h1", "g1", "g2", "h2"))
        pub1, pub2 = f"198.51.100.{2 * index + 1}", f"198.51.100.{2 * index + 2}"
        lab.veth(self.h1, "eth0", self.g1, "lan0")
        lab.veth(self.g1, "pub0", self.g2, "pub0")
        lab.veth(self.g2, "lan0", self.h2, "eth0")
        sh(f"ip -n {self.h1} addr add 10.0.0.5/32 dev eth0; ip -n {self.h1} route add 10.0.0.1 dev eth0;"
           f" ip -n {self.h1} route add default via 10.0.0.1")
        sh(f"ip -n {self.g1} addr add 10.0.0.1/32 dev lan0; ip -n {self.g1} route add 10.0.0.5 dev lan0;"
           f" ip -n {self.g1} addr add {pub1}/24 dev pub0")
        sh(f"ip -n {self.g2} addr add {pub2}/24 dev pub0; ip -n {self.g2} addr add 192.0.2.1/30 dev lan0")
        sh(f"ip -n {self.h2} addr add 192.0.2.2/30 dev eth0; ip -n {self.h2} addr add {h2_addr}/32 dev lo;"
           f" ip -n {self.h2} addr add {RS_PUBLIC}/32 dev lo; ip -n {self.h2} route add default via 192.0.2.1")
        sh(f"ip -n {self.g2} route add {h2_addr}/32 via 192.0.2.2; ip -n {self.g2} route add {RS_PUBLIC}/32 via 192.0.2.2")
        far = [f"{h2_addr}/32", f"{RS_PUBLIC}/32"]
        if mode is None:
            for r in far:
                sh(f"ip -n {self.g1} route add {r} via {pub2}")
            sh(f"ip -n {self.g2} route add 10.0.0.5/32 via {pub1}")
            return
        for ns, local, peer, routes in ((self.g1, pub1, pub2, far), (self.g2, pub2, pub1, ["10.0.0.5/32"])):
            status = lab.workdir / f"{ns}.status"
            lab.python(ns, "testbed.tunnel", {"local": local, "mode": mode, "status_file": str(status),
                                              "peers": {"p": {"addr": peer, "ifname": "tp", "routes": routes}}},
                       f"{ns}-tunnel")
            deadline = time.monotonic() + 20
            while not status.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tunnel {mode} in {ns} did not start: {lab.log(f'{ns}-tunnel.log')[-800:]}")
                time.sleep(0.1)

    def status(self, which: str) -> dict:
        """The tunnel agent's status JSON of gateway ``which`` ("g1"; anything else means g2)
        as a dict (mode, peers with their packet counters). Only for a chain with a ``mode``: a
        plain chain runs no agent, and FileNotFoundError follows; ValueError for a half-written file.
        """
        ns = self.g1 if which == "g1" else self.g2
        return json.loads((self.lab.workdir / f"{ns}.status").read_text())


def iperf(lab, server_ns: str, client_ns: str, dst: str, port: int, seconds: int) -> float:
    """iperf3 TCP client_ns -> dst:port for `seconds`; received bits/s."""
    srv = lab.spawn(server_ns, ["iperf3", "-s", "-1", "-B", dst, "-p", str(port)], f"iperf-{port}.log")
    time.sleep(0.5)
    proc = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", dst, "-p", str(port), "-t",
                           str(seconds), "-J"], capture_output=True, text=True, timeout=seconds + 30)
    try:
        srv.wait(10)
    except subprocess.TimeoutExpired:
        srv.kill()
    try:
        return float(json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"])
    except (ValueError, KeyError):
        raise RuntimeError(f"iperf3 {client_ns} -> {dst}: {(proc.stdout + proc.stderr)[-400:]}") from None


def _sa(chain: Chain, ca: CertificateAuthority, work: Path, charons: list) -> None:
    """One SA h1 (10.0.0.5) -> responder in h2 for 10.0.0.7, as an MN's tunnel to its target SG."""
    creds = {}
    for who, san in (("rs", RS_PUBLIC), ("mn", MN_SG_PUBLIC)):
        issued = sign_local_key(ca, f"{who}-{chain.tag}.bench", "sg" if who == "rs" else "mn", [san], [], key_type="ec")
        d = work / f"pki-{who}-{chain.tag}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cert.pem").write_text(issued.cert_pem)
        (d / "key.pem").write_text(issued.key_pem)
        (d / "ca.pem").write_text(ca.cert_pem)
        creds[who] = Credentials(str(d / "cert.pem"), str(d / "key.pem"), str(d / "ca.pem"))
    rs = Charon(f"rs{chain.tag}", work / f"rs{chain.tag}", netns=chain.h2)
    mn = Charon(f"mn{chain.tag}", work / f"mn{chain.tag}", netns=chain.h1)
    charons.extend([rs, mn])
    rs.start()
    mn.start()
    rs.load_swanctl(write_swanctl_dir(work / f"rs{chain.tag}" / "sw", render_responder_swanctl(
        {"A": MN_SG_PUBLIC}, RS_PUBLIC, local_ts=["10.0.0.7/32"]), creds["rs"]))
    mn.load_swanctl(write_swanctl_dir(work / f"mn{chain.tag}" / "sw", render_initiator_swanctl(
        {"B": (RS_PUBLIC, ["10.0.0.7"])}, MN_SG_PUBLIC), creds["mn"]))
    mn.initiate("wg", "to-B")


def modes_here() -> tuple[list[str], dict[str, str]]:
    """IP-IP modes this host can run (for the bench), and why the others are left out."""
    modes, skipped = [], {}
    if kernel_ipip_available("127.0.0.1"):
        modes.append("kernel")
    else:
        skipped["kernel"] = "no ipip module in this kernel"
    why = bpf_unavailable()
    if why is None:
        modes.append("bpf")
    else:
        skipped["bpf"] = why
    modes.append("userspace")
    return modes, skipped


def bench_tunnel(say: Say = print, seconds: int = SECONDS, repeat: int = REPEAT, ipsec: bool = True) -> dict[str, Any]:
    """Benchmark ``tunnel`` (issue 14): iperf3 TCP h1 -> h2 (10.0.0.7) through each leg of the
    module docstring, REPEAT rounds of ``seconds`` s each, legs interleaved within a round.

    Args:
        say: progress lines (one per leg and round, in Mbit/s).
        seconds: iperf3 duration per sample (s).
        repeat: rounds; medians are taken over them.
        ipsec: also measure the legs with one strongSwan SA (``ipsec``, ``ipsec_ipip_<mode>``).

    Returns a dict: ``median_mbps`` and ``samples_mbps`` per leg (Mbit/s, 1 decimal),
    ``ratio_ipip_<mode>_vs_plain`` and ``ratio_ipsec_ipip_<mode>_vs_ipsec`` (3 decimals,
    against ``aims`` AIM_IPIP 0.5 and AIM_IPSEC 0.9), the modes measured and those left out
    with why (``modes_here``), the mode each G1 endpoint reports and its tunnel packets out.

    Raises RuntimeError when a tunnel agent does not write its status within 20 s or iperf3
    gives no result; errors of the namespace harness (tests/unit/netns_support.py) and of
    strongSwan propagate. Namespaces and charons are removed in every case.
    """
    modes, skipped = modes_here()
    work = Path(tempfile.mkdtemp(prefix="tbt-bench-tunnel-"))
    lab = _support().NetLab("bt", work, unique=True, via_nsenter=True)
    charons: list[Charon] = []
    chains: dict[str, Chain] = {}
    try:
        chains["plain"] = Chain(lab, "p", 0, None)
        for i, m in enumerate(modes, start=1):
            chains[f"ipip_{m}"] = Chain(lab, m[0], i, m)
        if ipsec:
            ca = CertificateAuthority(str(work / "ca"), key_type="ec")
            chains["ipsec"] = Chain(lab, "s", 10, None)
            _sa(chains["ipsec"], ca, work, charons)
            for i, m in enumerate(modes, start=11):
                chains[f"ipsec_ipip_{m}"] = Chain(lab, f"s{m[0]}", i, m)
                _sa(chains[f"ipsec_ipip_{m}"], ca, work, charons)
        samples: dict[str, list[float]] = {leg: [] for leg in chains}
        for r in range(repeat):
            for port, (leg, ch) in enumerate(chains.items(), start=5400):
                bps = iperf(lab, ch.h2, ch.h1, "10.0.0.7", port, seconds)
                samples[leg].append(bps)
                say(f"tunnel bench run {r + 1}/{repeat} {leg}: {bps / 1e6:.0f} Mbit/s")
        modes_seen = {leg: ch.status("g1")["mode"] for leg, ch in chains.items() if ch.mode}
        counters = {leg: ch.status("g1")["peers"]["p"] for leg, ch in chains.items() if ch.mode}
    finally:
        for c in charons:
            c.stop()
        lab.close()
    med = {leg: statistics.median(v) for leg, v in samples.items()}
    out: dict[str, Any] = {
        "iperf3_seconds": seconds, "repeat": repeat, "modes": modes, "modes_not_measured": skipped,
        "modes_reported_by_endpoints": modes_seen,
        "median_mbps": {leg: round(v / 1e6, 1) for leg, v in med.items()},
        "samples_mbps": {leg: [round(x / 1e6, 1) for x in v] for leg, v in samples.items()},
        "aims": {"ipip_vs_plain": AIM_IPIP, "ipsec_ipip_vs_ipsec": AIM_IPSEC},
        "baseline": "same chain of namespaces (h1-G1-G2-h2), same run, interleaved: routed without "
                    "the tunnel ('plain'), and the same strongSwan SA without the tunnel ('ipsec')",
        "tunnel_packets_out_g1": {leg: c["packets_out"] for leg, c in counters.items()},
    }
    for m in modes:
        out[f"ratio_ipip_{m}_vs_plain"] = round(med[f"ipip_{m}"] / med["plain"], 3)
        if ipsec:
            out[f"ratio_ipsec_ipip_{m}_vs_ipsec"] = round(med[f"ipsec_ipip_{m}"] / med["ipsec"], 3)
    return out


if __name__ == "__main__":
    print(json.dumps(bench_tunnel(), indent=2))
