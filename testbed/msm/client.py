"""Small stdlib (urllib) client of the MSM portal, for the SG and MN agents and tests.

Typical use by an agent that must follow the workgroups:

    msm = MsmClient("http://198.51.100.10:8080")
    view = msm.filter_rows("B")              # or msm.signon(fqdn, workgroup)
    while True:
        version = msm.wait_for_change(view["version"], timeout=25)
        if version > view["version"]:
            view = msm.filter_rows("B")      # re-fetch: the change may concern us

`wait_for_change` is the long-poll: it returns within a round trip of a portal change.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode


class MsmError(Exception):
    """The MSM refused a request (4xx/5xx) or could not be reached (status 0)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"MSM {status}: {message}")
        self.status = status
        self.message = message
        self.field = field


class MsmClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    # -------------------------------------------------------------- transport
    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None,
                raw: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                doc = json.loads(payload)
                raise MsmError(exc.code, doc.get("error", str(doc)), doc.get("field")) from None
            except ValueError:
                raise MsmError(exc.code, payload.decode(errors="replace")[:200]) from None
        except (urllib.error.URLError, OSError) as exc:
            raise MsmError(0, f"cannot reach {self.base_url}: {exc}") from None
        return payload.decode() if raw else json.loads(payload)

    # ------------------------------------------------------------------ admin
    def add_mvpn(self, name: str, realm: str, sg_public: str) -> dict:
        return self.request("POST", "/api/mvpns", {"name": name, "realm": realm, "sg_public": sg_public})

    def mvpns(self) -> list[dict]:
        return self.request("GET", "/api/mvpns")

    def add_user(self, fqdn: str, mvpn: str, private_address: str) -> dict:
        return self.request("POST", "/api/users", {"fqdn": fqdn, "mvpn": mvpn, "private_address": private_address})

    def users(self) -> list[dict]:
        return self.request("GET", "/api/users")

    def add_workgroup(self, name: str) -> dict:
        return self.request("POST", "/api/workgroups", {"name": name})

    def workgroup(self, name: str) -> dict:
        return self.request("GET", f"/api/workgroups/{quote(name, safe='')}")

    def add_member(self, workgroup: str, fqdn: str) -> dict:
        return self.request("POST", f"/api/workgroups/{quote(workgroup, safe='')}/members", {"fqdn": fqdn})

    def remove_member(self, workgroup: str, fqdn: str) -> dict:
        return self.request("DELETE", f"/api/workgroups/{quote(workgroup, safe='')}/members/{quote(fqdn, safe='')}")

    # ---------------------------------------------------------- agents' view
    def signon(self, fqdn: str, workgroup: str) -> dict:
        """Claims 5/13: {version, self, members: every other member with its SG's public address}."""
        return self.request("POST", "/api/signon", {"fqdn": fqdn, "workgroup": workgroup})

    def filter_rows(self, mvpn: str) -> dict:
        """The realm-indexed filter rows for the SG of `mvpn`: {version, rows}."""
        return self.request("GET", f"/api/sg/{quote(mvpn, safe='')}/filter")

    def version(self) -> int:
        return self.request("GET", "/api/changes")["version"]

    def wait_for_change(self, since: int, timeout: float = 25.0) -> int:
        """Long-poll: the current version, as soon as it exceeds `since` or after `timeout` s."""
        query = urlencode({"since": since, "timeout": timeout})
        return self.request("GET", f"/api/changes?{query}", timeout=timeout + 10)["version"]

    # --------------------------------------------------------------------- CA
    def ca_pem(self) -> str:
        return self.request("GET", "/api/ca", raw=True)

    def issue_cert(self, cn: str, kind: str, san_ips: list[str] | None = None, san_dns: list[str] | None = None,
                   **options: Any) -> dict:
        """{cert_pem, key_pem, ca_pem, serial, san, ...}; options: validity, days, key_type,
        sg_public_override (kind mn, negative tests only)."""
        body = {"cn": cn, "kind": kind, "san_ips": san_ips or [], "san_dns": san_dns or [], **options}
        return self.request("POST", "/api/certs", body)
