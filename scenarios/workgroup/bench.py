"""Benchmark: a->b TCP throughput through the workgroup data path, beside its baselines.

`bench(say) -> dict` brings up the workgroup lab once, plus one plain router `pr` with a
link to a and one to b, and measures in the same run, iperf3 TCP for `SECONDS` each:

- `ipip_ipsec`: a (10.0.0.5, M-VPN A) -> b (10.0.0.7, M-VPN B) as the scenario runs it:
  a's SA to SG-B (kernel-libipsec in a's namespace via-B), SG-A's userspace IP-IP to SG-B,
  SG-B's realm-A charon, the workgroup filter; b's ACKs over b's own SA to SG-A;
- `plain`: the same pair over a plain routed path (a - pr - b, no tunnel, no SG);
- `ipsec_alone`: the same pair over strongSwan alone: one tunnel-mode SA (same proposals,
  kernel-libipsec, ESP-in-UDP) straight between a and b over the plain path, no IP-IP, no SG.

Ratios: `ipip_ipsec / plain` and `ipip_ipsec / ipsec_alone` (the aim: our IP-IP layer and
SG chain cost at most 20 % of what strongSwan alone carries, i.e. a ratio >= 0.8). Also IKE
set-up time (IKE_SA + CHILD_SA, one round of initiate over VICI, median of REPEAT) for a's
SA to SG-B through the SGs and for the SA alone.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from orchestration.lab import Lab
from orchestration.scenario import load_module
from orchestration.topology import load_topology

HERE = Path(__file__).resolve().parent
SECONDS = 10
REPEAT = 5

# A single SA between a and b with nothing else in the way (node side, run with python3 -c).
ALONE = r'''
import sys
from pathlib import Path
from testbed.common.strongswan import Charon, Credentials, render_settings, write_swanctl_dir, IKE_PROPOSALS, ESP_PROPOSALS
role, own_id, peer_id, local, remote, lts, rts = sys.argv[1:8]
work = Path("/var/lib/testbed/alone")
ch = Charon("alone", work)
ch.start()
pki = "/var/lib/testbed/mn/pki"
conn = {"version": 2, "mobike": False, "encap": True, "proposals": IKE_PROPOSALS,
        "local_addrs": local, "remote_addrs": remote if role == "initiator" else "%any",
        "local": {"auth": "pubkey", "certs": "own.pem", "id": own_id},
        "remote": {"auth": "pubkey", "id": peer_id, "cacerts": "ca.pem"},
        "children": {"alone": {"local_ts": lts, "remote_ts": rts, "esp_proposals": ESP_PROPOSALS,
                               "mode": "tunnel", "start_action": "none"}}}
conf = write_swanctl_dir(work / "swanctl", render_settings({"connections": {"alone": conn}}) + "\n",
                         Credentials(f"{pki}/cert.pem", f"{pki}/key.pem", f"{pki}/ca.pem"))
ch.load_swanctl(conf)
'''

def _scenario():
    mod = load_module(HERE / "scenario.py", "workgroup_scenario_checks")
    return mod


def topology() -> dict:
    """The scenario's topology (its lab file compiled to the low-level form) plus the plain
    router pr (a - pr - b)."""
    data = load_topology(HERE / "topology.yaml").model_dump(mode="json", exclude_defaults=True)
    data["nodes"]["pr"] = {"role": "router", "sysctls": {"net.ipv4.ip_forward": 1},
                           "description": "plain routed path a - pr - b for the baselines"}
    for n, net in (("a", 71), ("b", 72)):
        nd = data["nodes"][n]
        nd["links"].append({"peer": "pr", "name": "plain", "address": f"192.168.{net}.2/30",
                            "peer_address": f"192.168.{net}.1/30", "realm": nd["mvpn"]})
        other = 72 if net == 71 else 71
        nd["routes"].append({"to": f"192.168.{other}.0/30", "via": f"192.168.{net}.1"})
    return data


def iperf(lab: Lab, client: str, dst: str, bind: str, port: int, seconds: int) -> float:
    lab.spawn("b", f"iperf3 -s -1 -p {port}", log=f"bench-iperf-{port}.log")
    time.sleep(0.8)
    r = lab.exec(client, f"iperf3 -c {dst} -B {bind} -p {port} -t {seconds} -J", timeout=seconds + 40)
    try:
        return float(json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"])
    except (ValueError, KeyError):
        raise RuntimeError(f"iperf3 {client}->{dst}: {(r.stdout + r.stderr)[-400:]}") from None


def bench(say: Callable[[str], None] = print, seconds: int = SECONDS, lab_name: str = "benchwg") -> dict[str, Any]:
    sc = _scenario()
    lab = Lab.from_dict(topology(), name=lab_name, workdir=f"/var/lib/testbed/bench-{lab_name}")
    lab.up(say=say)
    try:
        ctx = type("Ctx", (), {"lab": lab})()
        if not sc.wait(lambda: sc.mn_tunnels_up(ctx), 90):
            raise RuntimeError("the MN tunnels did not come up")
        # the SA alone, between a's and b's main namespaces over the plain path
        for node, args in (("b", "responder b.mwg.test a.mwg.test 192.168.72.2 %any 10.99.0.2/32 10.99.0.1/32"),
                           ("a", "initiator a.mwg.test b.mwg.test 192.168.71.2 192.168.72.2 10.99.0.1/32 10.99.0.2/32")):
            lab.exec(node, f"ip addr add {args.split()[-2].split('/')[0]}/32 dev lo", check=True)
            lab.exec(node, ["python3", "-c", ALONE, *args.split()], check=True, timeout=60)
        alone_setup = [sc.ike_setup_ms(lab, "a", None, "/var/lib/testbed/alone", "alone", "alone")
                       for _ in range(REPEAT)]
        full_setup = [sc.ike_setup_ms(lab, "a", "via-B", "/var/lib/testbed/mn/B", "to-B", "wg")
                      for _ in range(REPEAT)]
        say(f"IKE set-up ms: through the SGs {full_setup}, alone {alone_setup}")
        if not sc.wait(lambda: sc.mn_tunnels_up(ctx), 30):
            raise RuntimeError("a's tunnel to SG-B did not come back")
        legs = {}
        for name, dst, bind, port in (("plain", "192.168.72.2", "192.168.71.2", 5301),
                                      ("ipsec_alone", "10.99.0.2", "10.99.0.1", 5302),
                                      ("ipip_ipsec", "10.0.0.7", "10.0.0.5", 5303)):
            legs[name] = iperf(lab, "a", dst, bind, port, seconds)
            say(f"{name}: {legs[name] / 1e6:.1f} Mbit/s")
    finally:
        lab.down(say=say)
    mbps = {k: round(v / 1e6, 1) for k, v in legs.items()}
    return {
        "throughput_mbps": mbps,
        "ratio_vs_plain": round(legs["ipip_ipsec"] / legs["plain"], 4),
        "ratio_vs_ipsec_alone": round(legs["ipip_ipsec"] / legs["ipsec_alone"], 3),
        "ipip_cost_vs_ipsec_alone_pct": round(100 * (1 - legs["ipip_ipsec"] / legs["ipsec_alone"]), 1),
        "ike_setup_ms": {"through_sgs_median": statistics.median(full_setup),
                         "alone_median": statistics.median(alone_setup),
                         "through_sgs": full_setup, "alone": alone_setup},
        "iperf3_seconds": seconds,
        "baseline": "plain routed path a-pr-b and one strongSwan SA a-b alone, same lab, same run",
    }


if __name__ == "__main__":
    print(json.dumps(bench(), indent=2))
