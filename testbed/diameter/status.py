"""Write an agent's status dict as JSON to a file, atomically, once a second.

Why atomic (write to a temporary file, then rename): the host reads the file
with ``cat`` at any moment and must never see half a JSON document.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("testbed.diameter")


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


async def status_loop(path: str | Path, snapshot: Callable[[], dict[str, Any]],
                      interval: float = 1.0) -> None:
    """Run until cancelled; a failing write is logged, never fatal."""
    warned = False
    while True:
        try:
            write_json_atomic(path, snapshot())
            warned = False
        except OSError as exc:
            if not warned:
                log.warning("cannot write status file %s: %s", path, exc)
                warned = True
        await asyncio.sleep(interval)
