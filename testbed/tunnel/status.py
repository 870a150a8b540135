"""Status and config files of the tunnel agent (shared with the SG and MN agents)."""
from __future__ import annotations

import os
from typing import Any

from testbed.common.config import read_mapping
from testbed.common.jsonfile import write_json_atomic


def write_status(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    write_json_atomic(path, data)


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a JSON or YAML config file into a dict."""
    return read_mapping(path)
