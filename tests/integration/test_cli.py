"""The command line as a user runs it, including a crash in the middle of 'up'."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from orchestration.cleanup import leftovers
from orchestration.lab import default_backend
from orchestration.pytest_plugin import unique_lab_name

REPO = Path(__file__).resolve().parents[2]
TESTBED = str(Path(sys.executable).parent / "testbed")


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TESTBED, *args], capture_output=True, text=True, cwd=REPO, timeout=300, **kw)


def many_nodes(n: int) -> dict:
    nodes = {f"n{i}": {"role": "host", "links": [{"segment": "s", "address": f"10.2.0.{i + 1}/24"}]} for i in range(n)}
    return {"name": "many", "segments": {"s": {"subnet": "10.2.0.0/24"}}, "nodes": nodes}


def test_up_status_exec_down(tmp_path: Path) -> None:
    lab = unique_lab_name("c")
    topo = REPO / "scenarios" / "realms" / "topology.yaml"
    try:
        r = run("up", str(topo), "--lab", lab, "--workdir", str(tmp_path))
        assert r.returncode == 0, r.stderr
        st = json.loads(run("status", "--lab", lab, "--json").stdout)
        assert st[0]["lab"] == lab and all(n["running"] for n in st[0]["nodes"].values())
        r = run("exec", "--lab", lab, "a1", "--", "ping", "-c1", "-W1", "10.0.0.1")
        assert r.returncode == 0 and "1 received" in r.stdout
        assert run("exec", "--lab", lab, "a1", "--", "sh", "-c", "exit 3").returncode == 3
        r = run("exec", "--lab", lab, "nosuch", "--", "true")
        assert r.returncode == 2 and "no node 'nosuch'" in r.stderr
        pcap = tmp_path / "lan.pcap"
        cap = subprocess.Popen([TESTBED, "capture", "lan-a", "-o", str(pcap), "--lab", lab],
                               cwd=REPO, stderr=subprocess.PIPE, text=True)
        assert cap.stderr is not None
        for line in cap.stderr:  # it says so once tcpdump listens
            if "capturing" in line:
                break
        run("exec", "--lab", lab, "a1", "--", "ping", "-c2", "-i0.2", "10.0.0.21")
        cap.send_signal(signal.SIGINT)  # Ctrl-C ends a capture cleanly
        # communicate, not wait: the capture's stderr must be drained or a chatty capture blocks
        # on a full pipe and never exits (seen in CI as a timeout here)
        _, err = cap.communicate(timeout=60)
        assert cap.returncode == 0, err[-2000:]
        out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "icmp.type==8"], capture_output=True, text=True).stdout
        assert out.count("Echo") == 2
    finally:
        assert run("down", "--lab", lab).returncode == 0
    assert not any(leftovers(lab, default_backend()).values())


def test_bad_topology_is_refused_with_path_and_nothing_starts(tmp_path: Path) -> None:
    bad = many_nodes(2)
    bad["nodes"]["n1"]["links"][0]["address"] = "10.3.0.1/24"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    lab = unique_lab_name("c")
    r = run("up", str(f), "--lab", lab)
    assert r.returncode == 2
    assert f"{f}: nodes.n1.links[0].address: 10.3.0.1/24 is outside segment s's subnet 10.2.0.0/24" in r.stderr.replace("\n", "")
    assert not any(leftovers(lab, default_backend()).values())


def test_graph_draws_a_png(tmp_path: Path) -> None:
    out = tmp_path / "realms.png"
    r = run("graph", str(REPO / "scenarios" / "realms" / "topology.yaml"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_sigkill_mid_up_then_clean_leaves_nothing_and_spares_other_labs(tmp_path: Path, lab_factory) -> None:
    bystander = lab_factory({"name": "by", "nodes": {"x": {"role": "host"}}})
    f = tmp_path / "many.yaml"
    f.write_text(yaml.safe_dump(many_nodes(12)))
    lab = unique_lab_name("k")
    proc = subprocess.Popen([TESTBED, "up", str(f), "--lab", lab, "--workdir", str(tmp_path / "w")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    backend = default_backend()
    deadline = time.time() + 60
    while time.time() < deadline and len(backend.list_nodes(lab).get(lab, [])) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = leftovers(lab, backend)
    assert left["containers"] and left["state"], f"the kill came too late or too early: {left}"
    r = run("clean", "--lab", lab)
    assert r.returncode == 0, r.stderr
    assert not any(leftovers(lab, backend).values())
    # docker's own view too: no container of that lab, in any state
    ps = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"label=testbed.lab={lab}"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""
    assert bystander.exec("x", "true").ok  # another lab is untouched
