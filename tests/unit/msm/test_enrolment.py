"""Key-safe enrolment (issue 9): one-time tokens bound to identity and kind, first contact by
the token's MAC, and no private key in any MSM answer. Real MSM process, real TLS."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from testbed.common.enroll import make_csr
from testbed.msm.ca import new_key
from testbed.common.portal_client import MsmError, client_context, discover_ca

from .harness import REPO, MsmProcess, populate_example

SEED = {
    "mvpns": [{"name": "A", "realm": "10.0.0.0/24", "sg_public": "203.0.113.1"},
              {"name": "B", "realm": "10.0.0.0/24", "sg_public": "203.0.113.2"}],
    "users": [{"fqdn": "a.mwg.test", "mvpn": "A", "private_address": "10.0.0.5"}],
    "tokens": [{"identity": "a.mwg.test", "kind": "mn", "token": "aaaaaa.0123456789abcdef"},
               {"identity": "B", "kind": "sg", "token": "bbbbbb.0123456789abcdef"}],
}


def enroll_cli(msm: MsmProcess, out: Path, token: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed.common.enroll", "--portal", msm.base_url, "--token", token,
                           "--out", str(out), "--wait", "5", *extra], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))


@pytest.fixture
def seeded(tmp_path):
    server = MsmProcess(tmp_path, {"seed": SEED})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_enrol_tool_first_contact_key_made_locally_and_token_one_time(seeded, tmp_path):
    run = enroll_cli(seeded, tmp_path / "a", "aaaaaa.0123456789abcdef", "--kind", "mn")
    assert run.returncode == 0, run.stderr
    key_file, cert_file, ca_file = (tmp_path / "a" / n for n in ("key.pem", "cert.pem", "ca.pem"))
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert ca_file.read_text() == Path(seeded.ca_file).read_text()  # learnt by the token's MAC
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    # the new credential works at once: a signs on as itself
    from testbed.common.portal_client import MsmClient
    a = MsmClient(seeded.base_url, ca_file=str(ca_file), cert_file=str(cert_file), key_file=str(key_file))
    assert a.user("a.mwg.test")["sg_public"] == "203.0.113.1"
    # enrol twice with one token: refused, nothing written
    again = enroll_cli(seeded, tmp_path / "a2", "aaaaaa.0123456789abcdef", "--ca-file", seeded.ca_file)
    assert again.returncode == 1 and "token_used" in again.stderr
    assert not (tmp_path / "a2" / "cert.pem").exists()
    # a token of kind sg cannot enrol an mn (and is not spent by trying)
    wrong = enroll_cli(seeded, tmp_path / "b", "bbbbbb.0123456789abcdef", "--kind", "mn")
    assert wrong.returncode == 1 and "token_kind" in wrong.stderr
    sg = enroll_cli(seeded, tmp_path / "b", "bbbbbb.0123456789abcdef", "--kind", "sg")
    assert sg.returncode == 0, sg.stderr
    refused = seeded.client.status()["auth"]["refused"]
    assert refused["token_used"] >= 1 and refused["token_kind"] == 1


@pytest.mark.parametrize("token,reason,status", [
    ("aaaaaa.0123456789abcdeX", "token_unknown", 401),   # not the token format
    ("aaaaaa.0123456789abcdee", "token_unknown", 401),   # right id, wrong secret
    ("cccccc.0123456789abcdef", "token_unknown", 401),   # no such id
    (None, "token_unknown", 401),
])
def test_bad_tokens_are_refused_and_do_not_spend_the_real_one(seeded, token, reason, status):
    csr = make_csr(new_key("ec"))
    with pytest.raises(MsmError) as exc:
        seeded.anonymous().enroll(token, csr)
    assert (exc.value.status, exc.value.reason) == (status, reason)
    assert seeded.anonymous().enroll("aaaaaa.0123456789abcdef", csr)["identity"] == "a.mwg.test"


def test_expired_token_is_refused(msm):
    populate_example(msm.client)
    token = msm.client.create_token("a.mwg.test", "mn", ttl_s=1)["token"]
    time.sleep(1.2)
    with pytest.raises(MsmError) as exc:
        msm.anonymous().enroll(token, make_csr(new_key("ec")))
    assert (exc.value.status, exc.value.reason) == (403, "token_expired")
    fresh = msm.client.create_token("a.mwg.test", "mn", ttl_s=60)["token"]  # the same call, in time: accepted
    assert msm.anonymous().enroll(fresh, make_csr(new_key("ec")))["identity"] == "a.mwg.test"


def test_two_concurrent_enrolments_with_one_token_only_one_wins(msm):
    populate_example(msm.client)
    for _ in range(5):
        token = msm.client.create_token("a.mwg.test", "mn")["token"]
        results: list = []
        barrier = threading.Barrier(4)

        def go():
            csr = make_csr(new_key("ec"))
            barrier.wait()
            try:
                results.append(msm.anonymous().enroll(token, csr)["serial"])
            except MsmError as exc:
                results.append(exc.reason)

        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(r == "token_used" for r in results) == [False, True, True, True], results


def test_first_contact_mac_binds_the_ca_to_the_token_secret(seeded, monkeypatch):
    from testbed.common.portal_client import MsmClient
    sent: list = []
    real = MsmClient.request

    def spy(self, method, path, body=None, **kw):
        sent.append((self.base_url, path, body))
        return real(self, method, path, body, **kw)

    monkeypatch.setattr(MsmClient, "request", spy)
    ca = discover_ca(seeded.base_url, "aaaaaa.0123456789abcdef")
    assert ca == Path(seeded.ca_file).read_text()
    # the secret never travels: the request carries the id only
    assert sent and not [s for s in sent if "0123456789abcdef" in repr(s)]
    assert "token_id=aaaaaa" in sent[0][1]
    # a CA whose MAC was not made with our secret (what a man in the middle would offer) is refused
    with pytest.raises(MsmError) as exc:
        discover_ca(seeded.base_url, "aaaaaa.0123456789abcdee")
    assert exc.value.reason == "ca_mac"


def test_no_msm_answer_carries_a_private_key(tmp_path):
    """Every route, as every role that may call it, answered without a private key; the same
    scanner finds the key a node wrote for itself (so it can fail)."""
    server = MsmProcess(tmp_path, {"seed": SEED, "allow_test_certs": True})
    server.start()
    try:
        run = enroll_cli(server, tmp_path / "a", "aaaaaa.0123456789abcdef")
        assert run.returncode == 0, run.stderr
        answers: list[bytes] = []
        op = client_context(server.ca_file, server.operator_cert, server.operator_key)
        csr = make_csr(new_key("rsa"))
        token = server.client.create_token("a.mwg.test", "mn")["token"]
        calls = [("GET", "/", None), ("GET", "/api/users", None), ("GET", "/api/certs", None),
                 ("GET", "/api/tokens", None), ("GET", "/api/status", None), ("GET", "/api/ca", None),
                 ("GET", "/api/ca?token_id=" + token.split(".")[0], None), ("GET", "/api/crl", None),
                 ("GET", "/api/nodecerts/a.mwg.test", None),
                 ("POST", "/api/tokens", {"identity": "B", "kind": "sg"}),
                 ("POST", "/api/enroll", {"token": token, "csr_pem": csr}),
                 ("POST", "/api/testcerts", {"identity": "a.mwg.test", "kind": "mn", "csr_pem": csr,
                                             "sg_public_override": "203.0.113.2"})]
        for method, path, body in calls:
            conn = http.client.HTTPSConnection("127.0.0.1", server.https_port, timeout=10, context=op)
            conn.request(method, path, body=None if body is None else json.dumps(body).encode())
            resp = conn.getresponse()
            answers.append(resp.read())
            assert resp.status < 300, (path, answers[-1][:200])
            conn.close()

        def has_key(blob: bytes) -> bool:
            return b"PRIVATE KEY" in blob or b"key_pem" in blob

        assert not [a[:100] for a in answers if has_key(a)]
        assert has_key((tmp_path / "a" / "key.pem").read_bytes())
    finally:
        server.stop()


def test_seed_tokens_are_applied_once(seeded):
    """A seed token used before a restart stays used after it (the seed is not re-applied)."""
    assert seeded.anonymous().enroll("aaaaaa.0123456789abcdef", make_csr(new_key("ec")))
    seeded.restart()
    with pytest.raises(MsmError) as exc:
        seeded.anonymous().enroll("aaaaaa.0123456789abcdef", make_csr(new_key("ec")))
    assert exc.value.reason == "token_used"


def test_tokens_never_go_over_the_plain_http_port(tmp_path):
    """The test-only plain-HTTP copy of the portal refuses enrolment and the token MAC (403
    no_tls), without spending the token; the same calls over HTTPS work."""
    from testbed.common.portal_client import MsmClient

    from .harness import free_port
    plain_port = free_port()
    server = MsmProcess(tmp_path, {"seed": SEED, "insecure_http_port": plain_port})
    server.start()
    try:
        plain = MsmClient(f"http://127.0.0.1:{plain_port}")
        csr = make_csr(new_key("ec"))
        for call in (lambda: plain.enroll("aaaaaa.0123456789abcdef", csr),
                     lambda: plain.request("GET", "/api/ca?token_id=aaaaaa")):
            with pytest.raises(MsmError) as exc:
                call()
            assert (exc.value.status, exc.value.reason) == (403, "no_tls")
        assert plain.ca_pem() == Path(server.ca_file).read_text()  # the CA itself is public
        assert discover_ca(server.base_url, "aaaaaa.0123456789abcdef")
        assert server.anonymous().enroll("aaaaaa.0123456789abcdef", csr)["identity"] == "a.mwg.test"
    finally:
        server.stop()


def test_an_operator_token_enrols_a_second_operator(msm):
    """Kind operator tokens (made by an operator) enrol further operators; an mn cannot make one."""
    second = msm.caller("admin2", "operator")
    assert second.mvpns() == [] and second.status()["auth"]["mode"] == "mtls"
    msm.client.add_mvpn("A", "10.0.0.0/24", "203.0.113.1")
    msm.client.add_user("a.mwg.test", "A", "10.0.0.5")
    a = msm.caller("a.mwg.test", "mn")
    with pytest.raises(MsmError) as exc:
        a.create_token("admin3", "operator")
    assert (exc.value.status, exc.value.reason) == (403, "role")
