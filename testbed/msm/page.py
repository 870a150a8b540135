"""The portal's HTML page: a read-only view of the store for a human with curl or a browser.

Everything is escaped; the page refreshes itself every few seconds so that a watcher
sees workgroup changes and per-SG filter rows without reloading by hand.
"""
from __future__ import annotations

import datetime as dt
from html import escape

from .store import Store


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    if not rows:
        return f"<table><tr>{head}</tr><tr><td colspan='{len(headers)}'><i>none</i></td></tr></table>"
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _utc(unix_s: float) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def render(store: Store, zone: str) -> str:
    mvpns = store.mvpns()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='5'>",
        "<title>Mobile service manager</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #999;padding:2px 8px}</style></head><body>",
        f"<h1>Mobile service manager</h1><p>zone {escape(zone)} &middot; version {store.version}</p>",
        "<h2>M-VPNs</h2>",
        _table(["name", "realm", "SG public address"], [[m["name"], m["realm"], m["sg_public"]] for m in mvpns]),
        "<h2>Users</h2>",
        _table(["FQDN", "M-VPN", "private address", "SG public address"],
               [[u["fqdn"], u["mvpn"], u["private_address"], u["sg_public"]] for u in store.users()]),
        "<h2>Workgroups</h2>",
    ]
    for wg in store.workgroups():
        parts.append(f"<h3>{escape(wg['name'])}</h3>")
        parts.append(_table(["FQDN", "M-VPN", "private address", "SG public address"],
                            [[m["fqdn"], m["mvpn"], m["private_address"], m["sg_public"]] for m in wg["members"]]))
    parts.append("<h2>Realm-indexed filter rows per SG</h2>")
    for m in mvpns:
        rows = store.filter_rows(m["name"])["rows"]
        parts.append(f"<h3>SG of {escape(m['name'])} ({escape(m['sg_public'])})</h3>")
        parts.append(_table(["peer SG public", "initiator private", "initiator", "targets"],
                            [[r["peer_sg_public"], r["initiator_private"], r["initiator_fqdn"],
                              ", ".join(r["targets"])] for r in rows]))
    parts.append("<h2>Sign-ons</h2>")
    parts.append(_table(["FQDN", "workgroup", "at (UTC)"],
                        [[s["fqdn"], s["workgroup"], _utc(s["at"])] for s in store.signons()]))
    parts.append("<h2>Issued certificates</h2>")
    parts.append(_table(["CN", "kind", "identity", "serial", "not after", "subjectAltName", "state"],
                        [[c["cn"], c["kind"], c["identity"] or c["cn"], c["serial"], c["not_after"], c["san"],
                          "revoked " + _utc(c["revoked_at"]) if c["revoked_at"] else ("test only" if c["test"] else
                                                                                    "valid")]
                         for c in store.certs()]))
    parts.append("<h2>Enrolment tokens</h2>")  # never their secrets
    parts.append(_table(["id", "identity", "kind", "expires (UTC)", "used (UTC)", "certificate"],
                        [[t["id"], t["identity"], t["kind"], _utc(t["expires"]), _utc(t["used_at"]) if t["used_at"]
                          else "-", t["cert_serial"] or "-"] for t in store.tokens()]))
    parts.append("</body></html>")
    return "\n".join(parts)
