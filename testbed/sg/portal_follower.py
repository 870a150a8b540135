"""Keeps the SG's workgroup filter in step with the MSM portal (long-poll, so: push-like).

Contract with the MSM (testbed/msm/, /work/coord/issue9-contract.md):
    GET /api/sg/{mvpn}/filter              -> {"version": V, "rows": [{peer_sg_public,
                                               initiator_private, initiator_fqdn, targets}]}
    GET /api/changes?since=V&timeout=S     -> {"version": V'}   (returns early on a change)
    GET /api/crl                           -> the MSM CA's CRL (PEM)

Over HTTPS the SG proves itself with its MSM-issued certificate (kind sg, mutual TLS): the
portal answers only the SG's own M-VPN's rows. The server is verified against the MSM CA
(`PortalTls.ca`), never against the system's trust store.

Why long-poll and not a periodic fetch: a removal at the portal must stop traffic within a
few seconds; long-poll gets that in one round trip without hammering the portal. If the
portal is unreachable the last rows stay in force (fail-static) and we retry with backoff:
an SG that opened everything, or closed everything, whenever the MSM hiccups would be worse.
"""
from __future__ import annotations

import json
import logging
import ssl
import threading
from dataclasses import dataclass
import urllib.error
import urllib.request
from typing import Callable
from urllib.parse import quote

from testbed.common.portal_client import client_context
from testbed.sg.workgroup_filter import FilterRow

log = logging.getLogger(__name__)


class PortalError(RuntimeError):
    pass


@dataclass(frozen=True)
class PortalTls:
    """The SG's credentials towards the portal: the MSM CA (PEM file) that must have signed
    the server's certificate, and the SG's own certificate and key (PEM files) presented as
    the TLS client certificate (contract: identity = the store's record of that cert)."""
    ca: str
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        """A TLS 1.2+ client context (the MSM client's); OSError/ssl.SSLError on bad files."""
        return client_context(self.ca, self.cert, self.key)


def _get(url: str, timeout: float, tls: ssl.SSLContext | None = None) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=tls) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        reason = ""
        try:
            reason = f" ({json.loads(exc.read()).get('reason')})"
        except (ValueError, AttributeError, OSError):
            pass
        raise PortalError(f"GET {url}: HTTP {exc.code}{reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise PortalError(f"GET {url}: {exc}") from None


def _get_json(url: str, timeout: float, tls: ssl.SSLContext | None = None) -> dict:
    try:
        doc = json.loads(_get(url, timeout, tls))
    except ValueError as exc:
        raise PortalError(f"GET {url}: {exc}") from None
    if not isinstance(doc, dict):
        raise PortalError(f"GET {url}: expected a JSON object")
    return doc


def fetch_crl(base_url: str, timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> str:
    """The MSM CA's CRL as PEM text; PortalError if the answer is not a PEM CRL."""
    url = f"{base_url.rstrip('/')}/api/crl"
    text = _get(url, timeout, tls).decode("ascii", errors="replace")
    if "-----BEGIN X509 CRL-----" not in text:
        raise PortalError(f"GET {url}: answer is not a PEM CRL")
    return text


def fetch_filter(base_url: str, mvpn: str, timeout: float = 10.0,
                 tls: ssl.SSLContext | None = None) -> tuple[int, list[FilterRow], list[str]]:
    """(version, valid rows, problems): one bad row is skipped and reported, not fatal."""
    doc = _get_json(f"{base_url.rstrip('/')}/api/sg/{quote(mvpn, safe='')}/filter", timeout, tls)
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


def wait_for_change(base_url: str, since: int, timeout: float = 25.0,
                    tls: ssl.SSLContext | None = None) -> int:
    """Long-poll the portal; returns the current version (== since on timeout)."""
    doc = _get_json(f"{base_url.rstrip('/')}/api/changes?since={since}&timeout={timeout:g}",
                    timeout + 10, tls)
    try:
        return int(doc["version"])
    except (KeyError, TypeError, ValueError):
        raise PortalError("changes reply: field 'version' missing or not an integer") from None


class PortalFollower:
    """Thread that fetches rows, calls `apply(version, rows)`, then long-polls for changes.

    With `on_crl`, the CRL is fetched at start and after every change, and `on_crl(pem)` is
    called whenever its text differs from the last one applied (revocation, issue 9)."""

    def __init__(self, base_url: str, mvpn: str, apply: Callable[[int, list[FilterRow]], None],
                 poll_timeout: float = 25.0, max_backoff: float = 5.0, tls: PortalTls | None = None,
                 on_crl: Callable[[str], None] | None = None) -> None:
        self.base_url = base_url
        self.mvpn = mvpn
        self.apply = apply
        self.tls = tls
        self._ctx = tls.context() if tls else None
        self.on_crl = on_crl
        self.crl_pem: str | None = None
        self.crl_updates = 0
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
        version, rows, problems = fetch_filter(self.base_url, self.mvpn, tls=self._ctx)
        self.problems = problems
        for p in problems:
            log.warning("portal row refused: %s", p)
        if version == self.version:
            return False
        self.apply(version, rows)
        self.sync_crl()
        self.version = version
        self.updates += 1
        return True

    def sync_crl(self) -> bool:
        """Fetch the CRL and hand it to `on_crl` if it changed; True if handed over. Runs
        after the rows, so a deleted user's rows are gone before its SAs are judged."""
        if self.on_crl is None:
            return False
        pem = fetch_crl(self.base_url, tls=self._ctx)
        if pem == self.crl_pem:
            return False
        self.on_crl(pem)
        self.crl_pem = pem
        self.crl_updates += 1
        return True

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self.version is None:
                    self.sync_once()
                v = wait_for_change(self.base_url, self.version or 0, self.poll_timeout, self._ctx)
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
                "refused_rows": self.problems, "tls": self.tls is not None,
                "client_cert": bool(self.tls and self.tls.cert), "crl_updates": self.crl_updates}
