"""The SG follows the portal over mutual TLS and applies the MSM's CRL (issue 9): a real TLS
stub (stdlib ssl) with a scratch CA; the negative cases show the checks can fail."""
from __future__ import annotations

import datetime as dt
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from testbed.sg import revocation
from testbed.sg.portal_follower import PortalError, PortalFollower, PortalTls, fetch_crl, fetch_filter
from testbed.sg.workgroup_filter import FilterRow
from .pki import ScratchCA
from .portal_stub import PortalStub

ROW = {"peer_sg_public": "198.51.100.1", "initiator_private": "10.0.0.5", "targets": ["10.0.0.7"]}


def crl(ca: ScratchCA, serials: list[int]) -> str:
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
         .last_update(now).next_update(now + dt.timedelta(days=1)))
    for s in serials:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(s).revocation_date(now).build())
    return b.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture()
def pki(tmp_path):
    ca = ScratchCA(tmp_path / "ca")
    server = ca.issue("msm", ["127.0.0.1"])
    sg = ca.issue("sg-b", ["198.51.100.2"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.ca_path))
    ctx.load_cert_chain(*server)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    portal = PortalStub(tls=ctx)
    yield ca, sg, portal, tmp_path
    portal.close()


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_follower_over_mtls_applies_rows_and_each_new_crl(pki):
    ca, (cert, key), portal, _ = pki
    portal.set_rows("B", [ROW])
    portal.crl_pem = crl(ca, [])
    rows, crls = [], []
    f = PortalFollower(portal.url, "B", lambda v, r: rows.append((v, r)), poll_timeout=1,
                       tls=PortalTls(ca=str(ca.ca_path), cert=cert, key=key), on_crl=crls.append).start()
    try:
        assert wait_for(lambda: rows and crls), f.status()
        assert rows[-1][1] == [FilterRow.from_json(ROW)] and revocation.revoked_serials(crls[-1]) == set()
        assert "sg-b" in portal.client_cns  # the SG presented its certificate
        portal.crl_pem = crl(ca, [0x1234])
        portal.set_rows("B", [])            # the MSM bumps the version with every revocation
        assert wait_for(lambda: len(crls) == 2), f.status()
        assert revocation.revoked_serials(crls[-1]) == {0x1234} and rows[-1][1] == []
        assert f.status()["crl_updates"] == 2 and f.status()["client_cert"]
    finally:
        f.stop()


def test_wrong_ca_or_missing_client_cert_is_refused(pki, tmp_path):
    ca, (cert, key), portal, _ = pki
    other = ScratchCA(tmp_path / "other")
    with pytest.raises(PortalError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetch_filter(portal.url, "B", tls=PortalTls(ca=str(other.ca_path), cert=cert, key=key).context())
    with pytest.raises(PortalError, match=r"HTTP 401 \(no_cert\)"):
        fetch_filter(portal.url, "B", tls=PortalTls(ca=str(ca.ca_path)).context())
    portal.crl_pem = "not a crl"
    with pytest.raises(PortalError, match="not a PEM CRL"):
        fetch_crl(portal.url, tls=PortalTls(ca=str(ca.ca_path), cert=cert, key=key).context())


def test_sas_without_rows_are_the_ones_torn_down():
    rows = [FilterRow.from_json(ROW), FilterRow.from_json({**ROW, "peer_sg_public": "198.51.100.3"})]
    allowed = revocation.initiators_with_rows(rows, "198.51.100.1")
    assert allowed == {"10.0.0.5"}
    sas = [{"uniqueid": "1", "remote_host": "10.0.0.5"}, {"uniqueid": "2", "remote_host": "10.0.0.9"},
           {"uniqueid": None, "remote_host": "10.0.0.8"}]
    assert [s["uniqueid"] for s in revocation.sas_without_rows(sas, allowed)] == ["2"]
    assert revocation.sas_without_rows(sas, {"10.0.0.5", "10.0.0.9"}) == []
