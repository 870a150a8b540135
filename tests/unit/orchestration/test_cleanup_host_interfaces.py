"""``cleanup.host_interfaces`` finds exactly one lab's leftovers in the host namespace."""
from __future__ import annotations

import os
import subprocess

import pytest

from orchestration.cleanup import host_interfaces

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for host interfaces")]


def test_only_this_labs_prefix_is_found() -> None:
    subprocess.run(["ip", "link", "add", "tbtsca.1", "type", "veth", "peer", "name", "tbtscab.1"], check=True)
    try:
        assert host_interfaces("tbtsca") == ["tbtsca.1"]  # not tbtscab.1: the prefix ends at the dot
        assert host_interfaces("tbtscab") == ["tbtscab.1"]
        assert host_interfaces("tbtscz") == []
    finally:
        subprocess.run(["ip", "link", "del", "tbtsca.1"], check=True)
    assert host_interfaces("tbtsca") == []
