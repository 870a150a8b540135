"""Integration tests bring up real labs: they need root and a running Docker engine
(``make test`` starts one and builds the images first)."""
from __future__ import annotations

import pytest

from orchestration.backend import BackendError
from orchestration.lab import default_backend


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session", autouse=True)
def _engine() -> None:
    try:
        default_backend().ensure_ready()
    except BackendError as e:
        pytest.fail(f"integration tests need a Docker engine: {e}")
