"""The MSM CA, checked with the openssl CLI (an independent verifier) and `cryptography`:
certificates for CSRs, names forced from the registry (claim 10), test-only certificates."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from testbed.common.enroll import issue_with_local_key
from testbed.msm.ca import new_key
from testbed.common.portal_client import MsmError

from .harness import MsmProcess, populate_example


def openssl_verify(tmp: Path, ca_pem: str, cert_pem: str) -> subprocess.CompletedProcess:
    (tmp / "ca.pem").write_text(ca_pem)
    (tmp / "cert.pem").write_text(cert_pem)
    return subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "ca.pem"), str(tmp / "cert.pem")],
                          capture_output=True, text=True, timeout=10)


def san(cert_pem: str) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [str(a) for a in ext.get_values_for_type(x509.IPAddress)]


def greedy_csr(key, cn: str, dns: list[str], ips: list[str]) -> str:
    """A CSR that ASKS for somebody else's names (subject and SAN): the MSM must ignore them."""
    import ipaddress

    from cryptography.hazmat.primitives import serialization
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName(names), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_mn_certificate_carries_its_own_sg_public_address(msm, tmp_path):
    c = msm.client
    populate_example(c)
    ca_pem = c.ca_pem()
    a = issue_with_local_key(c, "a.mwg.test", "mn")
    cc = issue_with_local_key(c, "c.mwg.test", "mn", key_type="ec")
    assert a["ca_pem"] == ca_pem
    res = openssl_verify(tmp_path, ca_pem, a["cert_pem"])
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr
    # Claim 10: SAN names the MN's own SG; a and c share 10.0.0.5 but not their SG.
    assert san(a["cert_pem"]) == (["a.mwg.test"], ["203.0.113.1"])
    assert san(cc["cert_pem"]) == (["c.mwg.test"], ["203.0.113.3"])
    cert = x509.load_pem_x509_certificate(a["cert_pem"].encode())
    assert cert.serial_number == int(a["serial"], 16)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # openssl reads the same SAN (no private interpretation by our own parser).
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=a["cert_pem"],
                          capture_output=True, text=True, timeout=10).stdout
    assert "IP Address:203.0.113.1" in text and "DNS:a.mwg.test" in text


@pytest.mark.parametrize("kind,identity,want_cn,want_san", [
    ("mn", "d.mwg.test", "d.mwg.test", (["d.mwg.test"], ["203.0.113.4"])),
    ("sg", "B", "sg-b.mwg.test", (["sg-b.mwg.test"], ["203.0.113.2"])),
    ("msr", "msr1.mwg.test", "msr1.mwg.test", (["msr1.mwg.test"], [])),
])
def test_csr_subject_and_san_are_forced_from_the_registry(msm, tmp_path, kind, identity, want_cn, want_san):
    """A node of M-VPN D asks for a's name and SG-B's address (the issue's attack); the MSM signs
    its key with the names its registry holds for the token's identity, nothing else."""
    c = msm.client
    populate_example(c)
    token = c.create_token(identity, kind)["token"]
    csr = greedy_csr(new_key("ec"), "a.mwg.test", ["a.mwg.test", "sg-b.mwg.test"], ["203.0.113.2", "10.0.0.5"])
    doc = msm.anonymous().enroll(token, csr, kind)
    cert = x509.load_pem_x509_certificate(doc["cert_pem"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == want_cn
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == kind
    assert san(doc["cert_pem"]) == want_san
    assert openssl_verify(tmp_path, c.ca_pem(), doc["cert_pem"]).returncode == 0
    # and it is the CSR's key that got certified
    assert cert.public_key().public_numbers() == x509.load_pem_x509_csr(csr.encode()).public_key().public_numbers()


def test_csr_with_a_bad_signature_or_weak_key_is_refused(msm):
    """RFC 2986 proof of possession: a CSR whose signature does not verify is csr_invalid."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    c = msm.client
    populate_example(c)
    good = greedy_csr(new_key("rsa"), "x", ["x.mwg.test"], [])
    der = bytearray(x509.load_pem_x509_csr(good.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # flip bits in the signature
    import base64
    forged = ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode()
              + "-----END CERTIFICATE REQUEST-----\n")
    weak = greedy_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024), "x", ["x.mwg.test"], [])
    for csr in (forged, weak, "not a csr", None):
        token = c.create_token("a.mwg.test", "mn")["token"]
        with pytest.raises(MsmError) as exc:
            msm.anonymous().enroll(token, csr)
        assert exc.value.status == 400 and exc.value.reason == "csr_invalid", csr
        # a refused CSR does not spend the token: the good CSR still enrols with it
    assert msm.anonymous().enroll(token, good)["identity"] == "a.mwg.test"
    assert msm.client.status()["auth"]["refused"]["csr_invalid"] == 4


@pytest.mark.parametrize("validity,message", [("expired", "certificate has expired"),
                                               ("not_yet_valid", "certificate is not yet valid")])
def test_negative_validity_test_certs_fail_openssl_verify(tmp_path, validity, message):
    msm = MsmProcess(tmp_path, {"allow_test_certs": True})
    msm.start()
    try:
        populate_example(msm.client)
        bad = issue_with_local_key(msm.client, "b.mwg.test", "mn", validity=validity)
        res = openssl_verify(tmp_path, msm.client.ca_pem(), bad["cert_pem"])
        assert res.returncode != 0
        assert message in res.stdout + res.stderr
    finally:
        msm.stop()


def test_wrong_sg_test_cert_is_operator_only_and_never_logs_in(tmp_path):
    msm = MsmProcess(tmp_path, {"allow_test_certs": True})
    msm.start()
    try:
        populate_example(msm.client)
        wrong = issue_with_local_key(msm.client, "a.mwg.test", "mn", sg_public_override="203.0.113.3")
        assert san(wrong["cert_pem"])[1] == ["203.0.113.3"]
        sg = issue_with_local_key(msm.client, "B", "sg", sg_public_override="203.0.113.3")
        assert san(sg["cert_pem"]) == (["sg-b.mwg.test"], ["203.0.113.3"])
        with pytest.raises(MsmError) as exc:
            issue_with_local_key(msm.client, "msr1", "msr", sg_public_override="203.0.113.3")
        assert exc.value.field == "sg_public_override"
        # not for anybody but the operator
        a = msm.caller("a.mwg.test", "mn")
        for caller, reason in ((a, "role"), (msm.anonymous(), "no_cert")):
            with pytest.raises(MsmError) as exc:
                issue_with_local_key(caller, "a.mwg.test", "mn", sg_public_override="203.0.113.3")
            assert exc.value.reason == reason
        # a test certificate is not a portal identity
        d = tmp_path / "wrong"
        d.mkdir()
        (d / "cert.pem").write_text(wrong["cert_pem"])
        (d / "key.pem").write_text(wrong["key_pem"])
        from testbed.common.portal_client import MsmClient
        holder = MsmClient(msm.base_url, ca_file=msm.ca_file, cert_file=str(d / "cert.pem"),
                           key_file=str(d / "key.pem"))
        with pytest.raises(MsmError) as exc:
            holder.signon("a.mwg.test", "W")
        assert exc.value.status == 401 and exc.value.reason == "unknown_cert"
    finally:
        msm.stop()


def test_test_cert_route_is_absent_without_allow_test_certs(msm):
    populate_example(msm.client)
    with pytest.raises(MsmError) as exc:
        issue_with_local_key(msm.client, "a.mwg.test", "mn", sg_public_override="203.0.113.3")
    assert exc.value.status == 404


def test_ca_persists_across_restart(tmp_path):
    msm = MsmProcess(tmp_path, {"key_type": "rsa"})  # the deployed default
    msm.start()
    try:
        _ca_persists(msm, tmp_path)
    finally:
        msm.stop()


def _ca_persists(msm, tmp_path):
    populate_example(msm.client)
    before = issue_with_local_key(msm.client, "a.mwg.test", "mn")
    ca_before = msm.client.ca_pem()
    msm.restart()
    assert msm.client.ca_pem() == ca_before
    assert openssl_verify(tmp_path, msm.client.ca_pem(), before["cert_pem"]).returncode == 0
    ca = x509.load_pem_x509_certificate(ca_before.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for key in ("ca.key", "operator/key.pem", "server/key.pem"):
        assert (Path(msm.config["ca_dir"]) / key).stat().st_mode & 0o777 == 0o600, key
