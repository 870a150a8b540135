"""Revocation (issue 9): deleting a user or an M-VPN revokes its certificates; the CRL lists
them (checked by openssl, an independent verifier) under a higher cRLNumber; the portal
refuses them at once."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from testbed.common.enroll import issue_with_local_key
from testbed.common.portal_client import MsmError

from .harness import populate_example


def crl_serials(pem: str) -> tuple[set[int], int]:
    crl = x509.load_pem_x509_crl(pem.encode())
    return {r.serial_number for r in crl}, crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def openssl_verify_crl(tmp: Path, ca_pem: str, crl_pem: str, cert_pem: str) -> subprocess.CompletedProcess:
    for name, text in (("ca.pem", ca_pem), ("crl.pem", crl_pem), ("cert.pem", cert_pem)):
        (tmp / name).write_text(text)
    return subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp / "ca.pem"), "-CRLfile",
                           str(tmp / "crl.pem"), str(tmp / "cert.pem")], capture_output=True, text=True, timeout=10)


def test_deleting_a_user_revokes_its_certificate_everywhere(msm, tmp_path):
    c = msm.client
    populate_example(c)
    a = msm.caller("a.mwg.test", "mn")
    a_cert = (msm.root / "nodes" / "mn-a.mwg.test" / "cert.pem").read_text()
    serial = x509.load_pem_x509_certificate(a_cert.encode()).serial_number
    # before: a works, its certificate passes a CRL check, the CRL does not list it
    assert a.signon("a.mwg.test", "W")["members"]
    before, number_before = crl_serials(c.crl_pem())
    assert serial not in before
    assert openssl_verify_crl(tmp_path, c.ca_pem(), c.crl_pem(), a_cert).returncode == 0
    version = c.version()
    waiter = msm.caller("B", "sg")  # a follower notices the revocation through the long-poll
    c.delete_user("a.mwg.test")
    assert waiter.wait_for_change(version, timeout=5) > version
    # after: refused at once, listed in a newer CRL, rejected by openssl
    with pytest.raises(MsmError) as exc:
        a.signon("a.mwg.test", "W")
    assert (exc.value.status, exc.value.reason) == (401, "revoked")
    after, number_after = crl_serials(msm.anonymous().crl_pem())
    assert serial in after and number_after > number_before
    res = openssl_verify_crl(tmp_path, c.ca_pem(), c.crl_pem(), a_cert)
    assert res.returncode != 0 and "certificate revoked" in res.stdout + res.stderr
    rec = [r for r in c.certs() if r["serial"] == format(serial, "x")][0]
    assert rec["revoked_at"] is not None and rec["identity"] == "a.mwg.test"
    # its published node certificate (claims 55-56) is gone too
    with pytest.raises(MsmError) as exc:
        c.request("GET", "/api/nodecerts/a.mwg.test")
    assert exc.value.status == 404
    # and the revocation survives a restart
    msm.restart()
    assert serial in crl_serials(msm.client.crl_pem())[0]
    with pytest.raises(MsmError) as exc:
        a.version()
    assert exc.value.reason == "revoked"


def test_deleting_an_mvpn_revokes_its_sg_certificate(msm):
    c = msm.client
    c.add_mvpn("F", "10.7.0.0/24", "203.0.113.7")
    sg = msm.caller("F", "sg")
    assert sg.filter_rows("F")["rows"] == []
    c.delete_mvpn("F")
    with pytest.raises(MsmError) as exc:
        sg.version()
    assert exc.value.reason == "revoked"
    assert len(crl_serials(c.crl_pem())[0]) == 1


def test_operator_revokes_one_certificate(msm):
    c = msm.client
    populate_example(c)
    first = issue_with_local_key(c, "b.mwg.test", "mn")
    b = msm.caller("b.mwg.test", "mn")  # a second certificate of the same user
    c.revoke_cert(first["serial"])
    assert int(first["serial"], 16) in crl_serials(c.crl_pem())[0]
    assert b.signon("b.mwg.test", "W")  # the other one still works
    with pytest.raises(MsmError) as exc:
        c.revoke_cert(first["serial"])
    assert exc.value.status == 409
