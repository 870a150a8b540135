"""The SG's realm tag on delivery, in namespaces: two senders with the same address 10.0.0.5,
entering the SG from two realm interfaces, reach the target with two different source MACs
02:<peer SG public>:00, and untagged traffic keeps the SG's own MAC."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from testbed.sg.realm_mark import realm_mac, render

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump"),
                                 reason="needs root, nft, tcpdump")]

PEERS = {"A": "198.51.100.1", "C": "198.51.100.3"}


def sh(cmd: str) -> str:
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd}: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture
def world():
    tag = uuid.uuid4().hex[:4]
    ns = {k: f"tbtm{tag}{k}" for k in ("sg", "b", "A", "C", "L")}
    try:
        for n in ns.values():
            sh(f"ip netns add {n}; ip -n {n} link set lo up")
        sh(f"ip netns exec {ns['sg']} sysctl -qw net.ipv4.ip_forward=1")
        # realm interfaces rl-A / rl-C (as the SG agent builds them), each from a 10.0.0.5
        for i, r in enumerate(("A", "C"), start=1):
            sh(f"ip -n {ns['sg']} link add rl-{r} type veth peer name home netns {ns[r]}")
            sh(f"ip -n {ns['sg']} addr add 169.254.{i}.2/30 dev rl-{r}; ip -n {ns['sg']} link set rl-{r} up")
            sh(f"ip -n {ns[r]} addr add 169.254.{i}.1/30 dev home; ip -n {ns[r]} addr add 10.0.0.5/32 dev lo;"
               f" ip -n {ns[r]} link set home up; ip -n {ns[r]} route add default via 169.254.{i}.2")
        # the LAN: SG eth0 10.0.0.1 - b 10.0.0.7; a local sender L on the SG's LAN side too
        sh(f"ip -n {ns['sg']} link add lan0 type veth peer name eth0 netns {ns['b']}")
        sh(f"ip -n {ns['sg']} addr add 10.0.0.1/24 dev lan0; ip -n {ns['sg']} link set lan0 up")
        sh(f"ip -n {ns['b']} addr add 10.0.0.7/24 dev eth0; ip -n {ns['b']} link set eth0 up")
        for r in ("A", "C"):
            sh(f"ip netns exec {ns['sg']} sysctl -qw net.ipv4.conf.rl-{r}.rp_filter=0")
        sh(f"ip netns exec {ns['sg']} sysctl -qw net.ipv4.conf.all.rp_filter=0")
        proc = subprocess.run(["ip", "netns", "exec", ns["sg"], "nft", "-f", "-"],
                              input=render("lan0", {"rl-A": PEERS["A"], "rl-C": PEERS["C"]}),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"nft netdev egress hook not available: {proc.stderr.strip()}")
        yield ns
    finally:
        for n in ns.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


def test_each_realm_arrives_with_its_own_source_mac(world):
    ns = world
    sg_mac = sh(f"ip -n {ns['sg']} -br link show lan0").split()[2]
    cap = subprocess.Popen(["ip", "netns", "exec", ns["b"], "tcpdump", "-l", "-n", "-e", "-i", "eth0",
                            "icmp and src host 10.0.0.5 or src host 10.0.0.1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert any("listening" in cap.stderr.readline() for _ in range(3))
    try:
        for r in ("A", "C"):
            subprocess.run(["ip", "netns", "exec", ns[r], "ping", "-c2", "-i0.2", "-W0.3", "-I", "10.0.0.5", "10.0.0.7"],
                           capture_output=True)
        subprocess.run(["ip", "netns", "exec", ns["sg"], "ping", "-c2", "-i0.2", "-W0.3", "10.0.0.7"], capture_output=True)
        time.sleep(0.5)
    finally:
        cap.terminate()
        out = cap.communicate(timeout=5)[0]
    lines = [l for l in out.splitlines() if "ICMP echo request" in l]
    macs = [l.split()[1] for l in lines]
    assert macs.count(realm_mac(PEERS["A"])) == 2, out
    assert macs.count(realm_mac(PEERS["C"])) == 2, out
    assert macs.count(sg_mac) == 2, out  # the SG's own (untagged) packets keep its MAC
