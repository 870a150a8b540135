"""Portal over real HTTPS (mutual TLS) against a real `python -m testbed.msm` process."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from testbed.common.portal_client import MsmClient, MsmError, client_context

from .harness import MsmProcess, populate_example


def operator_tls(msm):
    return client_context(msm.ca_file, msm.operator_cert, msm.operator_key)


def raw(msm, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request as the operator, bytes in and out (no client-side JSON handling)."""
    conn = http.client.HTTPSConnection("127.0.0.1", msm.https_port, timeout=10, context=operator_tls(msm))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheader("Content-Type"), data
    finally:
        conn.close()


def test_workgroup_example_signon_and_filter_rows(msm):
    c = msm.client
    populate_example(c)
    wg = c.workgroup("W")
    assert [m["fqdn"] for m in wg["members"]] == ["a.mwg.test", "b.mwg.test", "c.mwg.test"]
    assert wg["version"] == c.version()
    a, b, d = (msm.caller(f, "mn") for f in ("a.mwg.test", "b.mwg.test", "d.mwg.test"))
    # Claim 13: the target b learns both initiators, told apart by their SGs.
    view = b.signon("b.mwg.test", "W")
    assert view["self"]["sg_public"] == "203.0.113.2"
    assert {(m["fqdn"], m["private_address"], m["sg_public"], m["mvpn"]) for m in view["members"]} == {
        ("a.mwg.test", "10.0.0.5", "203.0.113.1", "A"), ("c.mwg.test", "10.0.0.5", "203.0.113.3", "C")}
    # Claim 5: the initiator a learns b and SG-B's public address.
    view = a.signon("a.mwg.test", "W")
    assert {m["fqdn"]: m["sg_public"] for m in view["members"]} == {"b.mwg.test": "203.0.113.2",
                                                                    "c.mwg.test": "203.0.113.3"}
    rows = c.filter_rows("B")["rows"]
    assert sorted((r["peer_sg_public"], r["initiator_private"], r["initiator_fqdn"], tuple(r["targets"]))
                  for r in rows) == [("203.0.113.1", "10.0.0.5", "a.mwg.test", ("10.0.0.7",)),
                                     ("203.0.113.3", "10.0.0.5", "c.mwg.test", ("10.0.0.7",))]
    assert c.filter_rows("D")["rows"] == []
    with pytest.raises(MsmError) as exc:
        d.signon("d.mwg.test", "W")
    assert exc.value.status == 403 and exc.value.field == "fqdn" and exc.value.reason == "not_member"
    # Removing a: SG-B keeps only c's row.
    c.remove_member("W", "a.mwg.test")
    assert [r["initiator_fqdn"] for r in c.filter_rows("B")["rows"]] == ["c.mwg.test"]


BAD_REQUESTS = [
    # (method, path, body, expected status, field named)
    ("POST", "/api/mvpns", {"name": "E", "realm": "10.0.0.1/24", "sg_public": "203.0.113.9"}, 400, "realm"),
    ("POST", "/api/mvpns", {"name": "E", "realm": "banana", "sg_public": "203.0.113.9"}, 400, "realm"),
    ("POST", "/api/mvpns", {"name": "E", "realm": "10.9.0.0/24", "sg_public": "203.0.113.1"}, 409, "sg_public"),
    ("POST", "/api/mvpns", {"name": "E", "realm": "10.9.0.0/24", "sg_public": "fe80::1"}, 400, "sg_public"),
    ("POST", "/api/mvpns", {"name": "A", "realm": "10.9.0.0/24", "sg_public": "203.0.113.9"}, 409, "name"),
    ("POST", "/api/mvpns", {"name": "bad name!", "realm": "10.9.0.0/24", "sg_public": "203.0.113.9"}, 400, "name"),
    ("POST", "/api/mvpns", {"realm": "10.9.0.0/24", "sg_public": "203.0.113.9"}, 400, "name"),
    ("POST", "/api/users", {"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "10.0.1.5"}, 400,
     "private_address"),
    ("POST", "/api/users", {"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "not-an-ip"}, 400,
     "private_address"),
    ("POST", "/api/users", {"fqdn": "x.mwg.test", "mvpn": "Q", "private_address": "10.0.0.6"}, 404, "mvpn"),
    ("POST", "/api/users", {"fqdn": "b.mwg.test", "mvpn": "A", "private_address": "10.0.0.6"}, 409, "fqdn"),
    ("POST", "/api/users", {"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "10.0.0.5"}, 409,
     "private_address"),
    ("POST", "/api/users", {"fqdn": ["x"], "mvpn": "A", "private_address": "10.0.0.6"}, 400, "fqdn"),
    ("POST", "/api/users", [1, 2], 400, None),
    ("POST", "/api/workgroups", {"name": "W"}, 409, "name"),
    ("POST", "/api/workgroups", {"name": ""}, 400, "name"),
    ("POST", "/api/workgroups/W/members", {"fqdn": "a.mwg.test"}, 409, "fqdn"),
    ("POST", "/api/workgroups/W/members", {"fqdn": "nobody.mwg.test"}, 404, "fqdn"),
    ("POST", "/api/workgroups/NOPE/members", {"fqdn": "a.mwg.test"}, 404, "workgroup"),
    ("DELETE", "/api/workgroups/W/members/d.mwg.test", None, 404, "fqdn"),
    ("DELETE", "/api/workgroups/W/members/%%%", None, 400, "fqdn"),
    ("GET", "/api/workgroups/NOPE", None, 404, "workgroup"),
    ("GET", "/api/sg/Q/filter", None, 404, "mvpn"),
    ("GET", "/api/changes?since=abc", None, 400, "since"),
    ("GET", "/api/changes?since=1&timeout=-1", None, 400, "timeout"),
    ("GET", "/api/changes?since=1&timeout=nan", None, 400, "timeout"),
    ("POST", "/api/tokens", {"identity": "nobody.mwg.test", "kind": "mn"}, 404, "identity"),
    ("POST", "/api/tokens", {"identity": "Q", "kind": "sg"}, 404, "identity"),
    ("POST", "/api/tokens", {"identity": "a.mwg.test", "kind": "router"}, 400, "kind"),
    ("POST", "/api/tokens", {"identity": "a.mwg.test", "kind": "mn", "ttl_s": -1}, 400, "ttl_s"),
    ("POST", "/api/tokens", {"identity": "a.mwg.test", "kind": "mn", "ttl_s": "soon"}, 400, "ttl_s"),
    ("POST", "/api/tokens", {"identity": "bad host!", "kind": "msr"}, 400, "identity"),
    ("POST", "/api/enroll", {"token": "nope", "csr_pem": "x"}, 401, "token"),
    ("POST", "/api/enroll", [1], 400, None),
    ("DELETE", "/api/certs/abc", None, 404, "serial"),
    ("GET", "/api/nodecerts/nobody.mwg.test", None, 404, "fqdn"),
    ("GET", "/api/nothing-here", None, 404, None),
    ("DELETE", "/api/mvpns", None, 405, None),
]


def test_bad_input_gets_4xx_naming_the_field_and_changes_nothing(msm):
    populate_example(msm.client)
    before = msm.client.version()
    for method, path, body, status, field in BAD_REQUESTS:
        data = None if body is None else json.dumps(body).encode()
        got, ctype, payload = raw(msm, method, path, data, {"Content-Length": str(len(data or b""))})
        doc = json.loads(payload)
        assert got == status, (method, path, body, doc)
        assert ctype == "application/json"
        if field:
            assert doc.get("field") == field, (method, path, doc)
            assert doc["error"].startswith(field + ":"), doc
    assert msm.client.version() == before
    assert msm.status()["portal"]["http"].get("status_5xx", 0) == 0


def test_malformed_http_bodies_never_500(msm):
    cases = [
        (b"{not json", {"Content-Length": "9"}, 400),
        (b"\xff\xfe\x00garbage", {"Content-Length": "10"}, 400),
        (b"x" * 70000, {"Content-Length": "70000"}, 413),
        (b"{}", {"Content-Length": "-5"}, 413),
        (b"{}", {"Content-Length": "two"}, 400),
    ]
    for body, headers, status in cases:
        got, _, payload = raw(msm, "POST", "/api/users", body, headers)
        assert got == status, (body[:20], payload)
        assert "error" in json.loads(payload)
    # No Content-Length at all (http.client adds one for bodies, so speak raw HTTP over TLS).
    with socket.create_connection(("127.0.0.1", msm.https_port), timeout=5) as plain:
        with operator_tls(msm).wrap_socket(plain, server_hostname="127.0.0.1") as s:
            s.sendall(b"POST /api/users HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b" 411 " in s.recv(4096).split(b"\r\n")[0]
    assert msm.client.mvpns() == []  # and the server still serves


def test_data_and_version_survive_restart(msm):
    c = msm.client
    populate_example(c)
    c.remove_member("W", "c.mwg.test")
    before = (c.mvpns(), c.users(), c.workgroup("W"), c.filter_rows("B"), c.ca_pem(), c.version())
    msm.restart()
    after = (c.mvpns(), c.users(), c.workgroup("W"), c.filter_rows("B"), c.ca_pem(), c.version())
    assert after == before
    c.add_member("W", "c.mwg.test")
    assert c.version() == before[-1] + 1  # monotonic across the restart


def test_longpoll_returns_within_a_second_of_a_change(msm):
    c = msm.client
    populate_example(c)
    v = c.version()
    # Nothing changes: the poll ends at its timeout, unchanged.
    t0 = time.monotonic()
    assert c.wait_for_change(v, timeout=0.5) == v
    assert 0.4 < time.monotonic() - t0 < 2.0
    # Already behind: immediate answer.
    t0 = time.monotonic()
    assert c.wait_for_change(v - 1, timeout=10) == v
    assert time.monotonic() - t0 < 5  # answered, not held until its 10 s timeout
    results = []

    followers = [msm.caller("sg-b", "msr"), msm.caller("a.mwg.test", "mn"), msm.client]

    def poll(other):
        version = other.wait_for_change(v, timeout=20)
        results.append((version, time.monotonic()))

    pollers = [threading.Thread(target=poll, args=(f,)) for f in followers]  # three roles follow
    for p in pollers:
        p.start()
    time.sleep(0.5)
    assert msm.client.request("GET", "/api/status")["http"]["longpoll_waiting"] == 3
    changed_at = time.monotonic()
    c.remove_member("W", "a.mwg.test")
    for p in pollers:
        p.join(10)
    assert len(results) == 3
    assert all(version == v + 1 for version, _ in results)
    latency = max(t for _, t in results) - changed_at
    assert latency < 1.0, f"long-poll took {latency:.3f} s after the change"
    assert "c.mwg.test" in [r["initiator_fqdn"] for r in c.filter_rows("B")["rows"]]
    assert "a.mwg.test" not in [r["initiator_fqdn"] for r in c.filter_rows("B")["rows"]]


def test_html_page_lists_mvpns_users_workgroups(msm):
    populate_example(msm.client)
    status, ctype, body = raw(msm, "GET", "/")
    page = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    for text in ("203.0.113.4", "d.mwg.test", "10.0.0.0/24", "<h3>W</h3>", "c.mwg.test"):
        assert text in page
    token = msm.client.create_token("a.mwg.test", "mn")["token"]
    msm.caller("c.mwg.test", "mn")
    msm.client.delete_user("c.mwg.test")
    page = raw(msm, "GET", "/")[2].decode()
    assert token.split(".")[0] in page and token.split(".")[1] not in page  # token ids, never secrets
    assert "<td>operator</td>" in page and "<td>valid</td>" in page and "<td>revoked 20" in page
    status, ctype, body = raw(msm, "GET", "/api/ca")
    assert status == 200 and ctype == "application/x-pem-file" and body.startswith(b"-----BEGIN CERTIFICATE")


def test_status_file_is_rewritten_every_second(msm):
    populate_example(msm.client)
    first = msm.status()
    time.sleep(1.3)
    second = msm.status()
    assert second["written_at"] > first["written_at"]
    assert second["state"] == "running" and second["https"]["port"] == msm.https_port
    assert second["portal"]["store"]["users"] == 4
    assert second["portal"]["version"] == msm.client.version()


def test_seed_is_applied_once_and_never_over_later_changes(tmp_path):
    """Issue 9: a removal made at the portal survives a restart with the same seed."""
    seed = {
        "mvpns": [{"name": "A", "realm": "10.0.0.0/24", "sg_public": "203.0.113.1"},
                  {"name": "B", "realm": "10.0.0.0/24", "sg_public": "203.0.113.2"}],
        "users": [{"fqdn": "a.mwg.test", "mvpn": "A", "private_address": "10.0.0.5"},
                  {"fqdn": "b.mwg.test", "mvpn": "B", "private_address": "10.0.0.7"}],
        "workgroups": [{"name": "W", "members": ["a.mwg.test", "b.mwg.test"]}],
    }
    server = MsmProcess(tmp_path, {"seed": seed})
    server.start()
    try:
        c = server.client
        v = c.version()
        assert [r["initiator_fqdn"] for r in c.filter_rows("B")["rows"]] == ["a.mwg.test"]
        server.restart()
        assert c.version() == v and len(c.users()) == 2
        c.remove_member("W", "a.mwg.test")
        c.delete_user("a.mwg.test")
        removed = c.version()
        server.restart()
        assert c.version() == removed
        assert [m["fqdn"] for m in c.workgroup("W")["members"]] == ["b.mwg.test"]
        assert [u["fqdn"] for u in c.users()] == ["b.mwg.test"]
        assert c.filter_rows("B")["rows"] == []
    finally:
        server.stop()


def test_client_reports_an_unreachable_msm_as_status_0():
    from .harness import free_port
    client = MsmClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(MsmError) as exc:
        client.version()
    assert exc.value.status == 0 and "cannot reach" in exc.value.message
