"""Counters and the exchange log shared by the peers of one server or client.

Why a JSON-lines file: the ``access`` scenario's check reads the MSM's DIAMETER
log to prove that a node's attach really went through DIAMETER. One JSON object
per message (and one per authentication decision) is easy to grep from the
host and easy to parse in a scenario report; a ring buffer of the same records
goes into the status file so ``cat`` shows the latest exchanges.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("testbed.diameter")


class Counters:
    """Thread-safe named counters (the status file shows them as a dict)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = collections.defaultdict(int)

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._values.items()))


class ExchangeLog:
    """Append-only record of DIAMETER exchanges: file (optional) + memory ring.

    The file is bounded: past ``max_bytes`` it is renamed to ``<path>.1`` (replacing
    the previous one) and a new file begins, so a peer flooding messages can fill
    at most twice ``max_bytes`` of disk (issue 11, section 4)."""

    def __init__(self, path: str | Path | None = None, keep: int = 50,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path) if path else None
        self.max_bytes = max_bytes
        self._written = 0
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()
        self._fh = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            self._written = self._fh.tell()
        self._flush_scheduled = False

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record. In an event loop the file is flushed once the loop has
        run what is ready (one write per burst, not per message); elsewhere at once."""
        entry = {"t": round(time.time(), 6), "event": event, **fields}
        with self._lock:
            self._ring.append(entry)
            if self._fh is None:
                return entry
            try:
                line = json.dumps(entry, default=str) + "\n"
                if self._written + len(line) > self.max_bytes:
                    self._rotate()
                self._fh.write(line)
                self._written += len(line)
            except OSError as exc:  # a full disk must not stop authentication
                log.warning("exchange log write failed: %s", exc)
                return entry
            if self._flush_scheduled:
                return entry
            try:
                asyncio.get_running_loop().call_soon(self.flush)
                self._flush_scheduled = True
                return entry
            except RuntimeError:  # no loop in this thread
                pass
        self.flush()
        return entry

    def _rotate(self) -> None:
        assert self._fh is not None and self.path is not None
        self._fh.close()
        self.path.replace(self.path.with_name(self.path.name + ".1"))
        self._fh = open(self.path, "a", encoding="utf-8")
        self._written = 0

    def flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            if self._fh:
                try:
                    self._fh.flush()
                except OSError as exc:
                    log.warning("exchange log write failed: %s", exc)

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._ring)

    def close(self) -> None:
        with self._lock:
            if self._fh:
                self._fh.close()
                self._fh = None
