"""pytest fixtures that hand a running lab to an integration test.

Installed as a pytest plugin (entry point ``testbed``), so a user's own test can write::

    def test_ping(lab_factory):
        lab = lab_factory("scenarios/realms/topology.yaml")
        assert lab.exec("a1", "ping -c1 10.0.0.1").ok

or mark a test with the topology and take ``lab``::

    @pytest.mark.topology("scenarios/realms/topology.yaml")
    def test_ping(lab): ...

Every lab gets a unique name (tests may run beside a user's labs), its logs go to the
test's tmp_path, and it is taken down after the test, also when the test fails.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .lab import Lab


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``topology(path)`` marker the ``lab`` fixture reads."""
    config.addinivalue_line("markers", "topology(path): the topology the 'lab' fixture brings up")


def unique_lab_name(prefix: str = "t") -> str:
    """A random lab name of 8 characters starting with ``prefix`` (lab names are at most 8:
    they prefix every interface, and IFNAMSIZ is 15)."""
    return prefix + secrets.token_hex(3)[: 8 - len(prefix)]


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """Fixture: ``make(topology, name=None, up=True) -> Lab`` from a file path or a dict; every
    lab made is brought down when the test ends, passed or failed. Raises what Lab.up raises
    (TopologyError, LabError, BackendError)."""
    labs: list[Lab] = []

    def make(topology: str | Path | dict[str, Any], name: str | None = None, up: bool = True) -> Lab:
        name = name or unique_lab_name()
        workdir = tmp_path / f"lab-{name}"
        if isinstance(topology, dict):
            lab = Lab.from_dict(topology, name=name, workdir=workdir)
        else:
            lab = Lab.from_file(topology, name=name, workdir=workdir)
        labs.append(lab)
        if up:
            lab.up()
        return lab

    yield make
    for lab in labs:
        lab.down()


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_factory: Callable[..., Lab]) -> Lab:
    """Fixture: the lab of the test's ``@pytest.mark.topology(path)``, up. Raises
    pytest.UsageError when the marker is missing."""
    marker = request.node.get_closest_marker("topology")
    if marker is None:
        raise pytest.UsageError("the 'lab' fixture needs @pytest.mark.topology('path/to/topology.yaml')")
    return lab_factory(marker.args[0])
