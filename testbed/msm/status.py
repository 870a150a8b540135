"""Writes the agent's state as JSON to a file, atomically, at a fixed interval.

The host reads it with `cat` (no API needed); writing to a temporary file and
renaming means a reader never sees half a document.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from testbed.common.jsonfile import write_json_atomic

log = logging.getLogger("msm.status")


class StatusWriter:
    def __init__(self, path: str, collect: Callable[[], dict], interval: float = 1.0) -> None:
        self.path = path
        self.collect = collect
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status", daemon=True)

    def write(self) -> None:
        try:
            doc = self.collect()
            doc["written_at"] = time.time()
            write_json_atomic(self.path, doc)
        except Exception:  # never let status writing take the agent down
            log.exception("cannot write status file %s", self.path)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def start(self) -> None:
        self.write()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.write()
