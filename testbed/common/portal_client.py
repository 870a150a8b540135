"""Small stdlib client of the MSM portal, for the SG, MN and MSR agents and tests.

Stdlib only (http.client + ssl). The portal speaks HTTPS with mutual TLS (issue 9): give the MSM CA (`ca_file`, pinned: the
server's certificate must chain to it and name the host of `base_url`) and, for any route
beyond the anonymous ones, the caller's own certificate and key (`cert_file`, `key_file`, as
written by `python3 -m testbed.common.enroll`). The MSM knows the caller only by that certificate.

    msm = MsmClient("https://198.51.100.10:8443", ca_file="pki/ca.pem",
                    cert_file="pki/cert.pem", key_file="pki/key.pem")
    view = msm.filter_rows("B")              # an SG; an MN calls msm.signon(fqdn, workgroup)
    while True:
        version = msm.wait_for_change(view["version"], timeout=25)
        if version > view["version"]:
            view = msm.filter_rows("B")      # re-fetch: the change may concern us

`wait_for_change` is the long-poll: it returns within a round trip of a portal change.
A node without a CA yet calls `discover_ca(base_url, token)` (first contact, see the MSM README).
"""
from __future__ import annotations

import http.client
import json
import ssl
import threading
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from .tokens import ca_mac_ok, split_token


class MsmError(Exception):
    """The MSM refused a request (4xx/5xx, `reason` set for 401/403 refusals) or could not be
    reached or verified (status 0)."""

    def __init__(self, status: int, message: str, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(f"MSM {status}: {message}" + (f" [{reason}]" if reason else ""))
        self.status = status
        self.message = message
        self.field = field
        self.reason = reason


def client_context(ca_file: str | None, cert_file: str | None = None, key_file: str | None = None,
                   verify: bool = True) -> ssl.SSLContext:
    """TLS 1.2+ client context pinned to `ca_file`, with our certificate if given.

    `verify=False` only for the first-contact CA fetch, whose answer is checked by its HMAC.
    Raises ValueError if verification is asked for without a CA file.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        if not ca_file:
            raise ValueError("an https portal needs ca_file (the MSM CA) or discover_ca() first")
        ctx.load_verify_locations(cafile=ca_file)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class MsmClient:
    """One caller of the portal. `base_url` http(s)://host:port; `timeout` in s.

    With `keepalive` (default) each thread keeps one HTTP/1.1 connection open and reuses it, so
    a follower's long-polls pay for one TLS handshake, not one per poll; a reused connection
    that the MSM closed meanwhile is re-opened once, transparently.
    """

    def __init__(self, base_url: str, timeout: float = 10.0, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, verify: bool = True,
                 keepalive: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.keepalive = keepalive
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"portal URL {base_url!r}: need http(s)://HOST[:PORT]")
        self._host, self._port, self._prefix = parts.hostname, parts.port, parts.path
        self.context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.context = client_context(ca_file, cert_file, key_file, verify)
        self._local = threading.local()

    # -------------------------------------------------------------- transport
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.context is not None:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self.context)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None,
                raw: bool = False) -> Any:
        """One call; the decoded JSON answer (or text with `raw`). Raises MsmError."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if not self.keepalive:
            headers["Connection"] = "close"
        for attempt in (1, 2):
            conn = self._connection()
            reused = conn.sock is not None
            conn.timeout = timeout or self.timeout
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            try:
                conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop(conn)
                if reused and attempt == 1:
                    continue  # the MSM closed our idle connection: open a new one, once
                raise MsmError(0, f"cannot reach {self.base_url}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:  # includes ssl errors and timeouts
                self._drop(conn)
                raise MsmError(0, f"cannot reach {self.base_url}: {exc}") from None
            if resp.will_close or not self.keepalive:
                self._drop(conn)
            break
        if resp.status >= 400:
            try:
                doc = json.loads(payload)
            except ValueError:
                raise MsmError(resp.status, payload.decode(errors="replace")[:200]) from None
            if not isinstance(doc, dict):
                raise MsmError(resp.status, str(doc)[:200])
            raise MsmError(resp.status, doc.get("error", str(doc)), doc.get("field"), doc.get("reason"))
        return payload.decode() if raw else json.loads(payload)

    # ------------------------------------------------------------------ admin (operator)
    def add_mvpn(self, name: str, realm: str, sg_public: str) -> dict:
        return self.request("POST", "/api/mvpns", {"name": name, "realm": realm, "sg_public": sg_public})

    def mvpns(self) -> list[dict]:
        return self.request("GET", "/api/mvpns")

    def delete_mvpn(self, name: str) -> dict:
        """Deletes the M-VPN and revokes its SG's certificates: {version}."""
        return self.request("DELETE", f"/api/mvpns/{quote(name, safe='')}")

    def add_user(self, fqdn: str, mvpn: str, private_address: str) -> dict:
        return self.request("POST", "/api/users", {"fqdn": fqdn, "mvpn": mvpn, "private_address": private_address})

    def users(self) -> list[dict]:
        return self.request("GET", "/api/users")

    def user(self, fqdn: str) -> dict:
        """One user (an MN may read only itself)."""
        return self.request("GET", f"/api/users/{quote(fqdn, safe='')}")

    def delete_user(self, fqdn: str) -> dict:
        """Deletes the user and revokes its certificates: {version}."""
        return self.request("DELETE", f"/api/users/{quote(fqdn, safe='')}")

    def add_workgroup(self, name: str) -> dict:
        return self.request("POST", "/api/workgroups", {"name": name})

    def workgroup(self, name: str) -> dict:
        return self.request("GET", f"/api/workgroups/{quote(name, safe='')}")

    def add_member(self, workgroup: str, fqdn: str) -> dict:
        return self.request("POST", f"/api/workgroups/{quote(workgroup, safe='')}/members", {"fqdn": fqdn})

    def remove_member(self, workgroup: str, fqdn: str) -> dict:
        return self.request("DELETE", f"/api/workgroups/{quote(workgroup, safe='')}/members/{quote(fqdn, safe='')}")

    def create_token(self, identity: str, kind: str, ttl_s: float | None = None) -> dict:
        """A one-time enrolment token for (identity, kind): {token: "<id>.<secret>", id, expires}."""
        body: dict = {"identity": identity, "kind": kind}
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        return self.request("POST", "/api/tokens", body)

    def certs(self) -> list[dict]:
        """Every issued certificate's record (serial, cn, identity, kind, revoked_at, test)."""
        return self.request("GET", "/api/certs")

    def revoke_cert(self, serial_hex: str) -> dict:
        return self.request("DELETE", f"/api/certs/{quote(serial_hex, safe='')}")

    def status(self) -> dict:
        return self.request("GET", "/api/status")

    def test_cert(self, csr_pem: str, identity: str, kind: str, **options: Any) -> dict:
        """Test-only certificate (MSM config allow_test_certs): options validity
        (valid|expired|not_yet_valid), days, sg_public_override (kind mn or sg)."""
        return self.request("POST", "/api/testcerts", {"csr_pem": csr_pem, "identity": identity, "kind": kind,
                                                       **options})

    # ---------------------------------------------------------- agents' view
    def signon(self, fqdn: str, workgroup: str) -> dict:
        """Claims 5/13, as the certificate's own user (`fqdn` must be it):
        {version, self, members: every other member with its SG's public address}."""
        return self.request("POST", "/api/signon", {"fqdn": fqdn, "workgroup": workgroup})

    def filter_rows(self, mvpn: str) -> dict:
        """The realm-indexed filter rows for the SG of `mvpn` (the caller's own): {version, rows}."""
        return self.request("GET", f"/api/sg/{quote(mvpn, safe='')}/filter")

    def node_cert(self, fqdn: str) -> str:
        """Claims 55-56 (role msr): the PEM certificate the MSM published for node `fqdn`."""
        return self.request("GET", f"/api/nodecerts/{quote(fqdn, safe='')}")["cert_pem"]

    def version(self) -> int:
        return self.request("GET", "/api/changes")["version"]

    def wait_for_change(self, since: int, timeout: float = 25.0) -> int:
        """Long-poll: the current version, as soon as it exceeds `since` or after `timeout` s."""
        query = urlencode({"since": since, "timeout": timeout})
        return self.request("GET", f"/api/changes?{query}", timeout=timeout + 10)["version"]

    # ------------------------------------------------------------ CA (anonymous)
    def ca_pem(self) -> str:
        return self.request("GET", "/api/ca", raw=True)

    def crl_pem(self) -> str:
        """The CA's current CRL, PEM (cRLNumber grows with the MSM version and with time)."""
        return self.request("GET", "/api/crl", raw=True)

    def enroll(self, token: str, csr_pem: str, kind: str | None = None) -> dict:
        """Trade a one-time token and a CSR for a certificate: {cert_pem, ca_pem, serial, san,
        cn, identity, kind, not_before, not_after}. The key stays with the caller."""
        body = {"token": token, "csr_pem": csr_pem}
        if kind is not None:
            body["kind"] = kind
        return self.request("POST", "/api/enroll", body)


def discover_ca(base_url: str, token: str, timeout: float = 10.0) -> str:
    """First contact: fetch the CA over an unverified TLS connection, then accept it only if
    its HMAC-SHA256 keyed by the token's secret matches (a man in the middle does not know
    the secret, which never travels). Returns the CA PEM; raises MsmError (reason ca_mac)."""
    token_id, secret = split_token(token)
    doc = MsmClient(base_url, timeout=timeout, verify=False).request(
        "GET", f"/api/ca?{urlencode({'token_id': token_id})}")
    ca_pem = doc.get("ca_pem", "") if isinstance(doc, dict) else ""
    if not ca_mac_ok(secret, ca_pem, doc.get("mac", "") if isinstance(doc, dict) else ""):
        raise MsmError(0, "the CA offered by the portal does not carry our token's MAC", reason="ca_mac")
    return ca_pem
