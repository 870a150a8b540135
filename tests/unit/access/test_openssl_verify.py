"""The sink's certificate verdicts agree with `openssl verify` against the MSM CA."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from testbed.access import credentials as cr
from testbed.msm.ca import CertificateAuthority
from testbed.common.enroll import sign_local_key

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_openssl_and_sink_agree(tmp_path, key_type):
    ca = CertificateAuthority(str(tmp_path / "ca"), key_type=key_type)
    rogue = CertificateAuthority(str(tmp_path / "rogue"), key_type="ec")  # same CA name
    (tmp_path / "ca.pem").write_text(ca.cert_pem)
    cases = {
        "valid": (sign_local_key(ca, "mn1.mwg.test", "mn", [], ["mn1.mwg.test"]).cert_pem, None),
        "expired": (sign_local_key(ca, "mn1.mwg.test", "mn", [], ["mn1.mwg.test"], validity="expired").cert_pem,
                    "expired"),
        "foreign": (sign_local_key(rogue, "mn1.mwg.test", "mn", [], ["mn1.mwg.test"]).cert_pem, "wrong_ca"),
    }
    for name, (pem, reason) in cases.items():
        f = tmp_path / f"{name}.pem"
        f.write_text(pem)
        r = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(f)],
                           capture_output=True, text=True)
        try:
            cr.verify_cert(cr.load_cert(pem), cr.load_cert(ca.cert_pem))
            ours = None
        except cr.CredentialError as exc:
            ours = exc.reason
        assert ours == reason, name
        assert (r.returncode == 0) == (reason is None), (name, r.stdout, r.stderr)
        if name == "expired":
            assert "expired" in r.stdout + r.stderr
