"""X.509 certificate authority of the workgroup system (claims 9-11, 50-55).

The MSM signs every certificate the SGs, MSRs and mobile nodes use in IKEv2, so that
a single CA certificate is the trust anchor everywhere. A mobile node's certificate
carries its own SG's public address in subjectAltName (claim 10): the target SG
compares it with the outer source of the IP-IP tunnel to pick the SA (claim 11).

Key safety (issue 9): the CA signs certificate signing requests (PKCS#10) made by the
nodes; it never generates a key for anybody else. The only keys it makes are its own, the
portal's TLS server key and the local operator credential, all written 0600 into
`ca_dir` and never sent anywhere.

The CA key and certificate live in `ca_dir` (a volume) so that certificates issued
before a restart still verify after it.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed.common.keys import key_pem, new_key, write_private

from .errors import ApiError, bad

log = logging.getLogger("msm.ca")

#: certificate kinds: the enrolled roles plus "server" (the portal's own TLS certificate)
KINDS = ("mn", "sg", "msr", "operator", "server")
VALIDITIES = ("valid", "expired", "not_yet_valid")
ORG = "Mobile Workgroup Testbed"


def csr_error(message: str) -> ApiError:
    """400 with reason csr_invalid (counted as an authorisation refusal)."""
    return ApiError(400, "csr_pem", message, reason="csr_invalid")


def load_csr(csr_pem: object) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its self-signature and key (RSA >= 2048 bits or EC P-256/P-384).

    Raises ApiError 400 reason csr_invalid. RFC 2986: the signature proves the requester holds
    the private key of the public key it asks to certify.
    """
    if not isinstance(csr_pem, str) or "BEGIN CERTIFICATE REQUEST" not in csr_pem or len(csr_pem) > 16384:
        raise csr_error("must be a PEM certificate signing request")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        ok = csr.is_signature_valid
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise csr_error(f"cannot parse: {exc}") from None
    if not ok:
        raise csr_error("signature does not verify with the request's public key")
    pub = csr.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < 2048:
            raise csr_error(f"RSA key of {pub.key_size} bits; need at least 2048")
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name not in ("secp256r1", "secp384r1"):
            raise csr_error(f"EC curve {pub.curve.name} not accepted (secp256r1, secp384r1)")
    else:
        raise csr_error(f"key type {type(pub).__name__} not accepted (RSA or EC)")
    return csr


@dataclass
class Issued:
    """A signed certificate (no key: the requester kept it)."""

    serial: int
    cert_pem: str
    not_before: dt.datetime
    not_after: dt.datetime
    san: list[str]

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")


def _general_names(san_ips: list[str], san_dns: list[str]) -> tuple[list[x509.GeneralName], list[str]]:
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for i, text in enumerate(san_ips):
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError:
            raise bad(f"san_ips[{i}]", f"{text!r} is not an IP address") from None
    names: list[str] = []
    for i, text in enumerate(san_dns):
        text = text.strip().rstrip(".").lower()
        if not text or len(text) > 253 or any(not lab or len(lab) > 63 for lab in text.split(".")):
            raise bad(f"san_dns[{i}]", f"{text!r} is not a domain name")
        names.append(text)
    if not ips and not names:
        raise bad("san_ips", "a certificate needs at least one subjectAltName (IP or DNS)")
    general: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    general += [x509.IPAddress(a) for a in dict.fromkeys(ips)]
    san = [f"DNS:{n}" for n in dict.fromkeys(names)] + [f"IP:{a}" for a in dict.fromkeys(ips)]
    return general, san


class CertificateAuthority:
    """Loads the CA from `ca_dir`, creating it on first start.

    Files: `ca.key` (0600), `ca.pem`; `server/{cert,key}.pem` (portal TLS, re-issued at each
    start); `operator/{cert,key}.pem` (the local operator credential, see `Msm`).
    """

    def __init__(self, ca_dir: str, common_name: str = "Mobile Workgroup MSM CA", key_type: str = "rsa",
                 days: int = 365) -> None:
        self.ca_dir = ca_dir
        self.key_type = key_type
        self.days = days
        self._lock = threading.Lock()
        os.makedirs(ca_dir, mode=0o700, exist_ok=True)
        key_path = os.path.join(ca_dir, "ca.key")
        cert_path = os.path.join(ca_dir, "ca.pem")
        if os.path.exists(key_path) and os.path.exists(cert_path):
            with open(key_path, "rb") as f:
                self._key = serialization.load_pem_private_key(f.read(), password=None)
            with open(cert_path, "rb") as f:
                self.cert = x509.load_pem_x509_certificate(f.read())
            log.info("CA loaded from %s: %s", ca_dir, self.cert.subject.rfc4514_string())
        else:
            self._key, self.cert = self._create(common_name, key_type)
            write_private(key_path, key_pem(self._key))
            with open(cert_path, "w") as f:
                f.write(self.cert_pem)
            log.info("CA created in %s: %s", ca_dir, self.cert.subject.rfc4514_string())
        self.cert_path = cert_path

    @staticmethod
    def _create(common_name: str, key_type: str):
        key = new_key(key_type)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ])
        now = dt.datetime.now(dt.timezone.utc)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, public_key, cn: str, kind: str, san_ips: list[str], san_dns: list[str],
             validity: str = "valid", days: int | None = None) -> Issued:
        """Certify `public_key` (from a checked CSR) for `cn` of `kind` with the given SAN.

        The caller (the portal) decides cn/kind/SAN from the registry; nothing here comes from
        the CSR but the key. `validity` = "expired" or "not_yet_valid" gives a correctly signed
        certificate outside its validity window (negative tests of IKE peers). `days`: 1-3650.
        Raises ApiError 400 naming the field.
        """
        if kind not in KINDS:
            raise bad("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        if validity not in VALIDITIES:
            raise bad("validity", f"{validity!r} is not one of {', '.join(VALIDITIES)}")
        days = self.days if days is None else days
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
            raise bad("days", "must be an integer between 1 and 3650")
        if not cn or len(cn) > 64:
            raise bad("cn", "must be 1-64 characters")
        general, san = _general_names(san_ips, san_dns)
        now = dt.datetime.now(dt.timezone.utc)
        if validity == "expired":
            not_before, not_after = now - dt.timedelta(days=days + 1), now - dt.timedelta(days=1)
        elif validity == "not_yet_valid":
            not_before, not_after = now + dt.timedelta(days=1), now + dt.timedelta(days=days + 1)
        else:
            not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
        serial = x509.random_serial_number()
        ca_pub = self.cert.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([
                ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(general), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_pub), critical=False)
        )
        with self._lock:
            cert = builder.sign(self._key, hashes.SHA256())
        log.info("issued %s certificate for %s serial %x SAN %s validity %s", kind, cn, serial, san, validity)
        return Issued(serial, cert.public_bytes(serialization.Encoding.PEM).decode(), not_before, not_after, san)

    def issue_local(self, subdir: str, cn: str, kind: str, san_ips: list[str], san_dns: list[str],
                    days: int | None = None) -> tuple[Issued, str, str]:
        """Make a key HERE and certify it, for the MSM's own credentials (portal server, operator).

        Writes `ca_dir/<subdir>/key.pem` (0600) and `cert.pem`; returns (issued, cert_path, key_path).
        The key never leaves this host (no portal answer carries it).
        """
        d = Path(self.ca_dir, subdir)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = new_key(self.key_type)
        issued = self.sign(key.public_key(), cn, kind, san_ips, san_dns, days=days)
        write_private(d / "key.pem", key_pem(key))
        (d / "cert.pem").write_text(issued.cert_pem)
        return issued, str(d / "cert.pem"), str(d / "key.pem")

    def crl(self, revoked: list[tuple[int, dt.datetime]], number: int, next_update_s: int = 3600) -> str:
        """A CRL (RFC 5280 section 5) listing `revoked` (serial, revocation time), PEM text.

        `number` (the cRLNumber extension) must grow with every CRL made: the portal passes
        (store version << 32) + unix seconds (the version is monotonic across restarts).
        """
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + dt.timedelta(seconds=next_update_s))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),
                           critical=False)
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
        with self._lock:
            crl = builder.sign(self._key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM).decode()
