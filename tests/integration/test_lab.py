"""The engine with real containers: wiring, runtime changes, captures, isolation of labs."""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from orchestration.cleanup import leftovers
from orchestration.lab import Lab

SMALL = {
    "name": "small",
    "segments": {"s1": {"subnet": "10.1.0.0/24"}, "s2": {"subnet": "10.1.0.0/24"}},
    "nodes": {
        "gw1": {"role": "router", "links": [{"segment": "s1", "address": "10.1.0.1/24"},
                                             {"peer": "gw2", "address": "192.0.2.1/30", "peer_address": "192.0.2.2/30"}]},
        "gw2": {"role": "router", "links": [{"segment": "s2", "address": "10.1.0.1/24"}]},
        "m": {"role": "mn", "links": [{"segment": "s1", "address": "10.1.0.5/24"}],
              "volumes": ["/var/lib/keep"]},
    },
}


def in_echos(lab: Lab, node: str) -> int:
    out = lab.exec(node, "cat /proc/net/snmp", check=True).stdout
    head, vals = [l.split() for l in out.splitlines() if l.startswith("Icmp:")][:2]
    return int(vals[head.index("InEchos")])


def received(out: str) -> int:
    m = re.search(r"(\d+) received", out)
    return int(m.group(1)) if m else 0


def test_up_exec_and_down_leaves_nothing(lab_factory) -> None:
    lab = lab_factory(SMALL)
    assert lab.exec("gw1", "ping -c1 -W1 192.0.2.2").ok
    assert lab.exec("m", "exit 7").exit_code == 7
    r = lab.exec("m", ["ip", "-o", "-4", "addr", "show", "eth0"])
    assert "10.1.0.5/24" in r.stdout
    # only the lab's own links, no route out of the testbed
    assert lab.exec("m", "ip route").stdout.strip() == "10.1.0.0/24 dev eth0 proto kernel scope link src 10.1.0.5"
    labels = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Labels}} {{.HostConfig.NetworkMode}}",
                             f"{lab.name}.m"], capture_output=True, text=True).stdout
    assert f'"testbed.lab":"{lab.name}"' in labels and '"testbed.node":"m"' in labels and "none" in labels
    lab.down()
    assert not any(leftovers(lab.name, lab.backend).values())


def test_move_between_segments_reaches_the_other_gateway(lab_factory) -> None:
    lab = lab_factory(SMALL)
    # Both gateways are 10.1.0.1, each in its own segment: the counters say which one answered.
    b1, b2 = in_echos(lab, "gw1"), in_echos(lab, "gw2")
    assert received(lab.exec("m", "ping -c3 -i0.2 -W1 10.1.0.1").stdout) == 3
    assert (in_echos(lab, "gw1") - b1, in_echos(lab, "gw2") - b2) == (3, 0)
    lab.move("s1:m", "s2", flap=True)
    lab.exec("m", "ip neigh flush dev eth0")
    b1, b2 = in_echos(lab, "gw1"), in_echos(lab, "gw2")
    assert received(lab.exec("m", "ping -c3 -i0.2 -W1 10.1.0.1").stdout) == 3
    assert (in_echos(lab, "gw1") - b1, in_echos(lab, "gw2") - b2) == (0, 3)
    assert Lab.attach(lab.name).ports["s1:m"].segment == "s2"  # the move is in the saved state


def test_link_down_and_up(lab_factory) -> None:
    lab = lab_factory(SMALL)
    assert lab.exec("gw1", "ping -c1 -W1 192.0.2.2").ok
    lab.set_link("gw1--gw2", up=False)
    assert not lab.exec("gw1", "ping -c1 -W1 192.0.2.2").ok
    # only the named link went down: m's radio segment keeps its carrier
    assert "NO-CARRIER" not in lab.exec("m", "ip link show eth0").stdout
    lab.set_link("gw1--gw2", up=True)
    assert lab.exec("gw1", "ping -c2 -W2 192.0.2.2").ok
    lab.set_link("s1:m", up=False)
    assert "NO-CARRIER" in lab.exec("m", "ip link show eth0").stdout


def test_loss_and_rate_impairment(lab_factory) -> None:
    topo = {"name": "imp", "nodes": {
        "x": {"role": "host", "links": [{"peer": "y", "address": "192.0.2.1/30", "peer_address": "192.0.2.2/30",
                                         "loss": 50, "rate": "5mbit"}]},
        "y": {"role": "host"}}}
    lab = lab_factory(topo)
    got = received(lab.exec("x", "ping -c40 -i0.02 -W1 192.0.2.2").stdout)
    assert 1 <= got <= 30, got  # 50 % each way: about a quarter of the echoes come back
    assert "tbf" in lab.exec("x", "tc qdisc show dev eth0").stdout


def test_capture_writes_a_pcap_that_tshark_reads(lab_factory, tmp_path: Path) -> None:
    lab = lab_factory(SMALL)
    pcap = tmp_path / "p2p.pcap"
    proc = lab.capture("gw1--gw2", pcap)
    lab.exec("gw1", "ping -c3 -i0.2 192.0.2.2")
    Lab.stop_capture(proc)
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "icmp"], capture_output=True, text=True).stdout
    assert len([l for l in out.splitlines() if "Echo" in l]) == 6


def test_two_labs_with_equal_topology_run_side_by_side(lab_factory) -> None:
    one = lab_factory(SMALL)
    two = lab_factory(SMALL)
    assert one.exec("gw1", "ping -c1 -W1 192.0.2.2").ok and two.exec("gw1", "ping -c1 -W1 192.0.2.2").ok
    before = in_echos(two, "gw2")
    one.exec("gw1", "ping -c3 -i0.2 192.0.2.2")
    assert in_echos(two, "gw2") == before  # lab one's packets never reach lab two
    one.down()
    assert not any(leftovers(one.name, one.backend).values())
    assert two.exec("gw1", "ping -c1 -W1 192.0.2.2").ok


def test_restart_keeps_volumes_and_rewires(lab_factory) -> None:
    lab = lab_factory(SMALL)
    lab.exec("m", "echo kept > /var/lib/keep/data", check=True)
    lab.restart("m")
    assert lab.exec("m", "cat /var/lib/keep/data").stdout.strip() == "kept"
    assert lab.exec("m", "ping -c1 -W2 10.1.0.1").ok


def test_setup_files_and_start_commands_run(lab_factory) -> None:
    topo = {"name": "setup", "nodes": {"x": {
        "role": "host", "files": {"/etc/testbed/hello.txt": "hi\n"},
        "setup": ["cp /etc/testbed/hello.txt /tmp/copied"],
        "start": ["sh -c 'echo started; sleep 60'"]}}}
    lab = lab_factory(topo)
    assert lab.exec("x", "cat /tmp/copied").stdout == "hi\n"
    deadline = time.time() + 5
    while time.time() < deadline and "started" not in lab.exec("x", "cat /var/log/testbed/start-0.log").stdout:
        time.sleep(0.1)
    assert "started" in (lab.workdir / "logs" / "x" / "start-0.log").read_text()


def test_failed_setup_removes_the_half_built_lab(lab_factory) -> None:
    topo = {"name": "bad", "nodes": {"x": {"role": "host", "setup": ["false"]}}}
    lab = lab_factory(topo, up=False)
    try:
        lab.up()
        raise AssertionError("setup 'false' must fail the bring-up")
    except Exception as e:
        assert "setup of node x failed" in str(e)
    assert not any(leftovers(lab.name, lab.backend).values())
