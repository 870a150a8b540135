"""``netns.entered``: a netlink socket made inside lands in that namespace, and the thread
goes back home afterwards (the wiring depends on both)."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from pyroute2 import IPRoute

from orchestration import netns as nsmod

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]


@pytest.fixture
def ns_name():
    name = f"tbtsc{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "add", "tbtscv0", "type", "veth", "peer", "name", "tbtscv1"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def test_socket_made_inside_sees_that_namespace_and_thread_returns(ns_name: str) -> None:
    home = os.readlink("/proc/thread-self/ns/net")
    with nsmod.entered(ns_name):
        assert os.readlink("/proc/thread-self/ns/net") != home
        ipr = IPRoute()
    assert os.readlink("/proc/thread-self/ns/net") == home
    try:
        assert ipr.link_lookup(ifname="tbtscv0"), "socket is not in the entered namespace"
    finally:
        ipr.close()
    with IPRoute() as host:  # the host's socket does not see the namespace's veth
        assert not host.link_lookup(ifname="tbtscv0")


def test_unknown_namespace_is_refused_and_thread_stays_home() -> None:
    home = os.readlink("/proc/thread-self/ns/net")
    with pytest.raises(OSError, match="no network namespace"):
        with nsmod.entered("tbtscnone"):
            pass
    assert os.readlink("/proc/thread-self/ns/net") == home
