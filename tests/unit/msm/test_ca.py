"""The MSM CA, checked with the openssl CLI (an independent verifier) and `cryptography`."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from testbed.msm.client import MsmError

from .harness import populate_example


def openssl_verify(tmp: Path, ca_pem: str, cert_pem: str) -> subprocess.CompletedProcess:
    (tmp / "ca.pem").write_text(ca_pem)
    (tmp / "cert.pem").write_text(cert_pem)
    return subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "ca.pem"), str(tmp / "cert.pem")],
                          capture_output=True, text=True, timeout=10)


def san(cert_pem: str) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [str(a) for a in ext.get_values_for_type(x509.IPAddress)]


def test_mn_certificate_carries_its_own_sg_public_address(msm, tmp_path):
    c = msm.client
    populate_example(c)
    ca_pem = c.ca_pem()
    a = c.issue_cert("a.mwg.test", "mn", san_ips=["10.0.0.5"])
    cc = c.issue_cert("c.mwg.test", "mn")
    assert a["ca_pem"] == ca_pem
    res = openssl_verify(tmp_path, ca_pem, a["cert_pem"])
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    # Claim 10: SAN names the MN's own SG; a and c share 10.0.0.5 but not their SG.
    assert san(a["cert_pem"]) == (["a.mwg.test"], ["203.0.113.1", "10.0.0.5"])
    assert san(cc["cert_pem"]) == (["c.mwg.test"], ["203.0.113.3"])
    cert = x509.load_pem_x509_certificate(a["cert_pem"].encode())
    key = serialization.load_pem_private_key(a["key_pem"].encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert cert.serial_number == int(a["serial"], 16)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # openssl reads the same SAN (no private interpretation by our own parser).
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=a["cert_pem"],
                          capture_output=True, text=True, timeout=10).stdout
    assert "IP Address:203.0.113.1" in text and "DNS:a.mwg.test" in text


def test_mn_certificate_for_an_unknown_user_is_refused(msm):
    populate_example(msm.client)
    with pytest.raises(MsmError) as exc:
        msm.client.issue_cert("mallory.mwg.test", "mn", san_ips=["203.0.113.2"])
    assert exc.value.status == 404 and exc.value.field == "cn"


def test_sg_and_msr_certificates_and_ec_keys(msm, tmp_path):
    c = msm.client
    sg = c.issue_cert("sg-b", "sg", san_ips=["203.0.113.2"], san_dns=["sg-b.mwg.test"])
    assert san(sg["cert_pem"]) == (["sg-b.mwg.test"], ["203.0.113.2"])
    msr = c.issue_cert("msr1", "msr", san_dns=["msr1.mwg.test"], key_type="ec")
    assert openssl_verify(tmp_path, c.ca_pem(), sg["cert_pem"]).returncode == 0
    assert openssl_verify(tmp_path, c.ca_pem(), msr["cert_pem"]).returncode == 0
    assert "EC PRIVATE KEY" in msr["key_pem"] or "BEGIN PRIVATE KEY" in msr["key_pem"]
    cert = x509.load_pem_x509_certificate(msr["cert_pem"].encode())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "msr"


@pytest.mark.parametrize("validity,message", [("expired", "certificate has expired"),
                                               ("not_yet_valid", "certificate is not yet valid")])
def test_negative_validity_options_fail_openssl_verify(msm, tmp_path, validity, message):
    populate_example(msm.client)
    bad = msm.client.issue_cert("b.mwg.test", "mn", validity=validity)
    res = openssl_verify(tmp_path, msm.client.ca_pem(), bad["cert_pem"])
    assert res.returncode != 0
    assert message in res.stdout + res.stderr


def test_wrong_sg_override_for_negative_tests(msm):
    populate_example(msm.client)
    wrong = msm.client.issue_cert("a.mwg.test", "mn", sg_public_override="203.0.113.3")
    assert san(wrong["cert_pem"])[1] == ["203.0.113.3"]
    with pytest.raises(MsmError) as exc:
        msm.client.issue_cert("sg-b", "sg", san_ips=["203.0.113.2"], sg_public_override="203.0.113.3")
    assert exc.value.field == "sg_public_override"


def test_ca_persists_across_restart(msm, tmp_path):
    populate_example(msm.client)
    before = msm.client.issue_cert("a.mwg.test", "mn")
    ca_before = msm.client.ca_pem()
    msm.restart()
    assert msm.client.ca_pem() == ca_before
    assert openssl_verify(tmp_path, msm.client.ca_pem(), before["cert_pem"]).returncode == 0
    ca = x509.load_pem_x509_certificate(ca_before.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    key_mode = (Path(msm.config["ca_dir"]) / "ca.key").stat().st_mode & 0o777
    assert key_mode == 0o600
