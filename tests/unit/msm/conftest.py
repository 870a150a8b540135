"""Fixtures of the MSM tests."""
from __future__ import annotations

import pytest

from .harness import MsmProcess


@pytest.fixture
def msm(tmp_path):
    """A running MSM agent process with its own volume in tmp_path, stopped afterwards."""
    server = MsmProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
