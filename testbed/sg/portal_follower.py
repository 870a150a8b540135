"""Keeps the SG's workgroup filter in step with the MSM portal (long-poll, so: push-like).

Contract with the MSM (testbed/msm/):
    GET /api/sg/{mvpn}/filter              -> {"version": V, "rows": [{peer_sg_public,
                                               initiator_private, initiator_fqdn, targets}]}
    GET /api/changes?since=V&timeout=S     -> {"version": V'}   (returns early on a change)

Why long-poll and not a periodic fetch: a removal at the portal must stop traffic within a
few seconds; long-poll gets that in one round trip without hammering the portal. If the
portal is unreachable the last rows stay in force (fail-static) and we retry with backoff:
an SG that opened everything, or closed everything, whenever the MSM hiccups would be worse.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Callable
from urllib.parse import quote

from testbed.sg.workgroup_filter import FilterRow

log = logging.getLogger(__name__)


class PortalError(RuntimeError):
    pass


def _get_json(url: str, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise PortalError(f"GET {url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PortalError(f"GET {url}: {exc}") from None
    if not isinstance(doc, dict):
        raise PortalError(f"GET {url}: expected a JSON object")
    return doc


def fetch_filter(base_url: str, mvpn: str, timeout: float = 10.0) -> tuple[int, list[FilterRow], list[str]]:
    """(version, valid rows, problems): one bad row is skipped and reported, not fatal."""
    doc = _get_json(f"{base_url.rstrip('/')}/api/sg/{quote(mvpn, safe='')}/filter", timeout)
    try:
        version = int(doc["version"])
    except (KeyError, TypeError, ValueError):
        raise PortalError("filter reply: field 'version' missing or not an integer") from None
    rows, problems = [], []
    raw_rows = doc.get("rows", [])
    if not isinstance(raw_rows, list):
        raise PortalError("filter reply: field 'rows' is not a list")
    for i, r in enumerate(raw_rows):
        try:
            rows.append(FilterRow.from_json(r))
        except ValueError as exc:
            problems.append(f"rows[{i}]: {exc}")
    return version, rows, problems


def wait_for_change(base_url: str, since: int, timeout: float = 25.0) -> int:
    """Long-poll the portal; returns the current version (== since on timeout)."""
    doc = _get_json(f"{base_url.rstrip('/')}/api/changes?since={since}&timeout={timeout:g}",
                    timeout + 10)
    try:
        return int(doc["version"])
    except (KeyError, TypeError, ValueError):
        raise PortalError("changes reply: field 'version' missing or not an integer") from None


class PortalFollower:
    """Thread that fetches rows, calls `apply(version, rows)`, then long-polls for changes."""

    def __init__(self, base_url: str, mvpn: str, apply: Callable[[int, list[FilterRow]], None],
                 poll_timeout: float = 25.0, max_backoff: float = 5.0) -> None:
        self.base_url = base_url
        self.mvpn = mvpn
        self.apply = apply
        self.poll_timeout = poll_timeout
        self.max_backoff = max_backoff
        self.version: int | None = None
        self.last_error: str | None = None
        self.problems: list[str] = []
        self.updates = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self) -> bool:
        """Fetch and apply the rows if their version differs; True if applied."""
        version, rows, problems = fetch_filter(self.base_url, self.mvpn)
        self.problems = problems
        for p in problems:
            log.warning("portal row refused: %s", p)
        if version == self.version:
            return False
        self.apply(version, rows)
        self.version = version
        self.updates += 1
        return True

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self.version is None:
                    self.sync_once()
                v = wait_for_change(self.base_url, self.version or 0, self.poll_timeout)
                if v != self.version:
                    log.debug("portal version %s -> %s: refetching rows", self.version, v)
                    self.sync_once()
                self.last_error = None
                backoff = 0.5
            except Exception as exc:  # never let the follower die: keep last rows in force
                self.errors += 1
                self.last_error = str(exc)
                log.warning("portal: %s (retry in %.1fs, last rows stay in force)", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def start(self) -> "PortalFollower":
        self._thread = threading.Thread(target=self.run, name="portal", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict:
        return {"url": self.base_url, "mvpn": self.mvpn, "version": self.version,
                "updates": self.updates, "errors": self.errors, "last_error": self.last_error,
                "refused_rows": self.problems}
