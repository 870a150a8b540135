"""Write an agent's status dict as JSON to a file, atomically, once a second.

Why atomic (write to a temporary file, then rename): the host reads the file
with ``cat`` at any moment and must never see half a JSON document.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable

from testbed.common.jsonfile import write_json_atomic

log = logging.getLogger("testbed.diameter")

__all__ = ["write_json_atomic", "status_loop"]




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
