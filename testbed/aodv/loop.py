"""A minimal single-threaded event loop: file readers plus timers.

Why not asyncio: pyroute2 0.9's synchronous IPRoute runs its own asyncio loop internally
and refuses to work inside a running one, and the agent wants plain, blocking netlink
calls (they take microseconds). A selector and a timer heap are all the agent needs.
"""
from __future__ import annotations

import heapq
import itertools
import selectors
import time
from typing import Callable


class Timer:
    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when: float, fn: Callable, args: tuple) -> None:
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.running = False

    def add_reader(self, fileobj, callback: Callable[[], None]) -> None:
        self.sel.register(fileobj, selectors.EVENT_READ, callback)

    def call_later(self, delay: float, fn: Callable, *args) -> Timer:
        t = Timer(time.monotonic() + max(0.0, delay), fn, args)
        heapq.heappush(self.timers, (t.when, next(self._seq), t))
        return t

    def stop(self) -> None:
        self.running = False

    def run(self, on_error: Callable[[BaseException], None]) -> None:
        self.running = True
        while self.running:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _w, _s, t = heapq.heappop(self.timers)
                if not t.cancelled:
                    try:
                        t.fn(*t.args)
                    except Exception as exc:  # one bad callback must not stop the agent
                        on_error(exc)
            timeout = 0.05
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - time.monotonic()))
            for key, _ev in self.sel.select(timeout):
                try:
                    key.data()
                except Exception as exc:
                    on_error(exc)
            if not self.running:
                break

    def close(self) -> None:
        self.sel.close()
