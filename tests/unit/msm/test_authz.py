"""Every role x route decision of the portal (issue 9), table-driven, over real mutual TLS.

Roles: the local operator, an MN (a.mwg.test, member of W, not of X), an SG (of M-VPN B), an MSR
(msr1.mwg.test), anonymous (no certificate), a revoked MN certificate and a certificate of our
CA that is no portal identity (a test-only certificate). The same table run with the test-only
flag `insecure_no_authz` shows that every authorisation refusal is the flag's doing.
"""
from __future__ import annotations

import http.client
import json
import time
from collections import Counter

import pytest

from testbed.common.enroll import issue_with_local_key
from testbed.common.portal_client import MsmClient, MsmError, client_context

from .harness import MsmProcess, populate_example

OK = "ok"
AUTHZ_REASONS = {"no_cert", "unknown_cert", "revoked", "role", "not_self"}
ROLES = ("operator", "mn", "sg", "msr", "anonymous", "revoked", "unknown")


def expect(operator=OK, mn="role", sg="role", msr="role", anonymous="no_cert", cert_roles=True) -> dict:
    """Expected outcome per role: OK (no refusal) or the refusal reason. A revoked or unknown
    certificate gets 401 wherever a role is needed (anonymous routes stay open to it)."""
    out = {"operator": operator, "mn": mn, "sg": sg, "msr": msr, "anonymous": anonymous}
    out["revoked"] = "revoked" if cert_roles else anonymous
    out["unknown"] = "unknown_cert" if cert_roles else anonymous
    return out


OPERATOR_ONLY = expect()
EVERYONE = expect(OK, OK, OK, OK, OK, cert_roles=False)
TABLE = [
    # (method, path, body, expected outcome per role)
    ("GET", "/", None, OPERATOR_ONLY),
    ("GET", "/api/mvpns", None, OPERATOR_ONLY),
    ("POST", "/api/mvpns", {"name": "E", "realm": "10.9.0.0/24", "sg_public": "203.0.113.9"}, OPERATOR_ONLY),
    ("GET", "/api/mvpns/A", None, OPERATOR_ONLY),
    ("DELETE", "/api/mvpns/E", None, OPERATOR_ONLY),
    ("GET", "/api/users", None, OPERATOR_ONLY),
    ("POST", "/api/users", {"fqdn": "x.mwg.test", "mvpn": "D", "private_address": "10.0.0.99"}, OPERATOR_ONLY),
    ("GET", "/api/users/a.mwg.test", None, expect(mn=OK)),
    ("GET", "/api/users/A.MWG.TEST.", None, expect(mn=OK)),
    ("GET", "/api/users/b.mwg.test", None, expect(mn="not_self")),
    ("DELETE", "/api/users/x.mwg.test", None, OPERATOR_ONLY),
    ("GET", "/api/workgroups", None, OPERATOR_ONLY),
    ("POST", "/api/workgroups", {"name": "V"}, OPERATOR_ONLY),
    ("GET", "/api/workgroups/W", None, OPERATOR_ONLY),
    ("DELETE", "/api/workgroups/V", None, OPERATOR_ONLY),
    ("POST", "/api/workgroups/W/members", {"fqdn": "d.mwg.test"}, OPERATOR_ONLY),
    ("DELETE", "/api/workgroups/W/members/d.mwg.test", None, OPERATOR_ONLY),
    ("POST", "/api/signon", {"workgroup": "W"}, expect(operator="role", mn=OK)),
    ("POST", "/api/signon", {"fqdn": "a.mwg.test", "workgroup": "W"}, expect(operator="role", mn=OK)),
    ("POST", "/api/signon", {"fqdn": "b.mwg.test", "workgroup": "W"}, expect(operator="role", mn="not_self")),
    ("POST", "/api/signon", {"workgroup": "X"}, expect(operator="role", mn="not_member")),
    ("GET", "/api/sg/B/filter", None, expect(sg=OK)),
    ("GET", "/api/sg/A/filter", None, expect(sg="not_self")),
    ("GET", "/api/changes", None, expect(mn=OK, sg=OK, msr=OK)),
    ("GET", "/api/changes?since=0&timeout=0", None, expect(mn=OK, sg=OK, msr=OK)),
    ("GET", "/api/nodecerts/a.mwg.test", None, expect(msr=OK)),
    ("GET", "/api/ca", None, EVERYONE),
    ("GET", "/api/crl", None, EVERYONE),
    ("POST", "/api/enroll", {"token": "zzzzzz.0123456789abcdef", "csr_pem": "x"},
     {r: "token_unknown" for r in ROLES}),
    ("POST", "/api/tokens", {"identity": "a.mwg.test", "kind": "mn"}, OPERATOR_ONLY),
    ("GET", "/api/tokens", None, OPERATOR_ONLY),
    ("GET", "/api/certs", None, OPERATOR_ONLY),
    ("DELETE", "/api/certs/123456", None, OPERATOR_ONLY),
    ("POST", "/api/testcerts", {"identity": "a.mwg.test", "kind": "mn", "csr_pem": "x"},
     expect(operator="csr_invalid")),
    ("GET", "/api/status", None, OPERATOR_ONLY),
]


def call(msm: MsmProcess, creds: tuple[str, str] | None, method: str, path: str, body) -> tuple[int, dict]:
    ctx = client_context(msm.ca_file, *(creds or (None, None)))
    conn = http.client.HTTPSConnection("127.0.0.1", msm.https_port, timeout=10, context=ctx)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = {}
    return resp.status, doc if isinstance(doc, dict) else {}


def outcome(status: int, doc: dict) -> str:
    """The refusal reason, or OK for anything that is not a refusal (2xx, 404, 409 ...)."""
    if doc.get("reason"):
        assert status in (400, 401, 403), (status, doc)
        return doc["reason"]
    assert status not in (401, 403) and status < 500, (status, doc)
    return OK


def world(msm: MsmProcess) -> dict[str, tuple[str, str] | None]:
    """The issue's example plus workgroup X = {b}, and one credential file pair per role."""
    c = msm.client
    populate_example(c)
    c.add_user("z.mwg.test", "D", "10.0.0.10")
    c.add_workgroup("X")
    c.add_member("X", "b.mwg.test")
    creds: dict[str, tuple[str, str] | None] = {"operator": (msm.operator_cert, msm.operator_key), "anonymous": None}
    for role, identity, kind in (("mn", "a.mwg.test", "mn"), ("sg", "B", "sg"), ("msr", "msr1.mwg.test", "msr"),
                                 ("revoked", "z.mwg.test", "mn")):
        client = msm.caller(identity, kind)
        creds[role] = (client.context and _files(msm, kind, identity))
    c.delete_user("z.mwg.test")  # revokes z's certificate
    test = issue_with_local_key(c, "a.mwg.test", "mn", test=True)  # signed by our CA, but no portal identity
    d = msm.root / "nodes" / "unknown"
    d.mkdir(parents=True)
    (d / "cert.pem").write_text(test["cert_pem"])
    (d / "key.pem").write_text(test["key_pem"])
    creds["unknown"] = (str(d / "cert.pem"), str(d / "key.pem"))
    return creds


def _files(msm: MsmProcess, kind: str, identity: str) -> tuple[str, str]:
    d = msm.root / "nodes" / f"{kind}-{identity}"
    return str(d / "cert.pem"), str(d / "key.pem")


def run_table(msm: MsmProcess) -> dict[tuple[int, str], str]:
    creds = world(msm)
    got = {}
    for i, (method, path, body, _want) in enumerate(TABLE):
        for role in ROLES:
            got[(i, role)] = outcome(*call(msm, creds[role], method, path, body))
    return got


@pytest.fixture
def msm_with(tmp_path, request):
    server = MsmProcess(tmp_path, {"allow_test_certs": True, **request.param})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("msm_with", [{}], indirect=True)
def test_every_role_x_route_decision(msm_with):
    msm = msm_with
    got = run_table(msm)
    wrong = [(TABLE[i][0], TABLE[i][1], TABLE[i][2], role, TABLE[i][3][role], have)
             for (i, role), have in got.items() if have != TABLE[i][3][role]]
    assert not wrong, "\n".join(map(str, wrong))
    # every refusal is counted by reason in the status ...
    seen = Counter(v for v in got.values() if v != OK)
    refused = msm.client.status()["auth"]["refused"]
    assert {k: refused.get(k, 0) for k in seen} == dict(seen)
    # ... and logged with the caller's identity
    log = msm.log_text()
    assert "refused POST /api/workgroups/W/members from mn:a.mwg.test" in log
    assert "refused GET /api/sg/A/filter from sg:B" in log
    assert "refused POST /api/workgroups/W/members from anonymous (revoked certificate" in log
    # the issue's attack, refused, changed nothing: d is still not a member of W
    anon = MsmClient(msm.base_url, ca_file=msm.ca_file)
    with pytest.raises(MsmError):
        anon.add_member("W", "d.mwg.test")
    assert "d.mwg.test" not in [m["fqdn"] for m in msm.client.workgroup("W")["members"]]


@pytest.mark.parametrize("msm_with", [{"insecure_no_authz": True}], indirect=True)
def test_without_authorisation_the_refusals_disappear(msm_with):
    """The same table with the test-only flag: no authorisation refusal is left, so the checks
    above fail when the feature is switched off."""
    msm = msm_with
    got = run_table(msm)
    assert not {v for v in got.values()} & AUTHZ_REASONS
    would_refuse = [(i, r) for i, row in enumerate(TABLE) for r in ROLES if row[3][r] in AUTHZ_REASONS]
    assert len(would_refuse) > 150
    # each now gets what an admitted caller gets (no refusal, or the same non-authz refusal)
    assert all(got[(i, r)] in (OK, TABLE[i][3]["operator"]) for i, r in would_refuse)
    assert msm.client.status()["auth"]["mode"] == "insecure_no_authz"
    assert msm.log_text().count("AUTHORISATION IS OFF") >= 1
    # the issue's attack goes through: an anonymous caller makes d a member of W
    anon = MsmClient(msm.base_url, ca_file=msm.ca_file)
    anon.add_member("W", "d.mwg.test")
    assert "d.mwg.test" in [m["fqdn"] for m in msm.client.workgroup("W")["members"]]


def tls_failed(msm: MsmProcess, want: int, wait_s: float = 5.0) -> int:
    """The MSM's count of failed TLS handshakes once it reached `want` (or after `wait_s`): the
    server counts a failure just after sending its alert, so the client may see it first."""
    deadline = time.monotonic() + wait_s
    while (n := msm.client.status()["auth"]["tls_failed"]) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def test_tls_is_checked_both_ways(msm, tmp_path):
    """The client pins the MSM CA (a server of another CA is refused), and the MSM refuses in the
    handshake a client certificate of another CA (counted as auth.tls_failed)."""
    from testbed.common.enroll import sign_local_key
    from testbed.msm.ca import CertificateAuthority

    rogue = CertificateAuthority(str(tmp_path / "rogue"), "Mobile Workgroup MSM CA", "ec")  # same name, other key
    fake = sign_local_key(rogue, "operator", "operator", [], ["operator"])
    (tmp_path / "fake.pem").write_text(fake.cert_pem)
    (tmp_path / "fake.key").write_text(fake.key_pem)
    before = msm.client.status()["auth"]["tls_failed"]
    impostor = MsmClient(msm.base_url, ca_file=msm.ca_file, cert_file=str(tmp_path / "fake.pem"),
                         key_file=str(tmp_path / "fake.key"))
    with pytest.raises(MsmError) as exc:
        impostor.status()
    assert exc.value.status == 0
    assert tls_failed(msm, before + 1) == before + 1
    # a client that trusts another CA does not talk to this MSM at all
    misled = MsmClient(msm.base_url, ca_file=str(tmp_path / "rogue" / "ca.pem"))
    with pytest.raises(MsmError) as exc:
        misled.ca_pem()
    assert exc.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in exc.value.message
    # ... while the real CA works (so the two refusals above are about the CA, nothing else)
    assert msm.anonymous().ca_pem() == (msm.root / "vol" / "ca" / "ca.pem").read_text()
    # garbage and plain HTTP on the TLS port: handshake refused, counted, the portal keeps serving
    import socket
    for junk in (b"\x16\x03\x01\xff\xff" + bytes(range(256)) * 4, b"GET /api/ca HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", msm.https_port), timeout=5) as s:
            s.sendall(junk)
            try:
                s.recv(100)
            except OSError:
                pass
    # counted: the impostor, the misled client (it aborts the handshake), the two junk connections
    assert tls_failed(msm, before + 4) == before + 4
