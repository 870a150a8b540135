"""X.509 certificate authority of the workgroup system (claims 9-11, 50-55).

The MSM signs every certificate the SGs, MSRs and mobile nodes use in IKEv2, so that
a single CA certificate is the trust anchor everywhere. A mobile node's certificate
carries its own SG's public address in subjectAltName (claim 10): the target SG
compares it with the outer source of the IP-IP tunnel to pick the SA (claim 11).

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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import bad

log = logging.getLogger("msm.ca")

KINDS = ("mn", "sg", "msr")
VALIDITIES = ("valid", "expired", "not_yet_valid")


def _new_key(key_type: str):
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Issued:
    serial: int
    cert_pem: str
    key_pem: str
    not_before: dt.datetime
    not_after: dt.datetime
    san: list[str]


class CertificateAuthority:
    """Loads the CA from `ca_dir`, creating it on first start."""

    def __init__(self, ca_dir: str, common_name: str = "Mobile Workgroup MSM CA", key_type: str = "rsa",
                 days: int = 365) -> None:
        self.ca_dir = ca_dir
        self.key_type = key_type
        self.days = days
        self._lock = threading.Lock()
        os.makedirs(ca_dir, exist_ok=True)
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
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(_pem_key(self._key))
            with open(cert_path, "w") as f:
                f.write(self.cert_pem)
            log.info("CA created in %s: %s", ca_dir, self.cert.subject.rfc4514_string())

    @staticmethod
    def _create(common_name: str, key_type: str):
        key = _new_key(key_type)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mobile Workgroup Testbed"),
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

    def issue(self, cn: str, kind: str, san_ips: list[str], san_dns: list[str], validity: str = "valid",
              days: int | None = None, key_type: str | None = None) -> Issued:
        """Issue a key and certificate for `cn`.

        `validity` = "expired" or "not_yet_valid" gives a correctly signed certificate
        outside its validity window, for negative tests of IKE peers.
        """
        if kind not in KINDS:
            raise bad("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        if validity not in VALIDITIES:
            raise bad("validity", f"{validity!r} is not one of {', '.join(VALIDITIES)}")
        days = self.days if days is None else days
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
            raise bad("days", "must be an integer between 1 and 3650")
        key_type = key_type or self.key_type
        if key_type not in ("rsa", "ec"):
            raise bad("key_type", f"{key_type!r} is not one of rsa, ec")
        if not cn or len(cn) > 64:
            raise bad("cn", "must be 1-64 characters")
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

        now = dt.datetime.now(dt.timezone.utc)
        if validity == "expired":
            not_before, not_after = now - dt.timedelta(days=days + 1), now - dt.timedelta(days=1)
        elif validity == "not_yet_valid":
            not_before, not_after = now + dt.timedelta(days=1), now + dt.timedelta(days=days + 1)
        else:
            not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
        key = _new_key(key_type)
        serial = x509.random_serial_number()
        ca_pub = self.cert.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mobile Workgroup Testbed"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=key_type == "rsa",
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([
                ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(general), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_pub), critical=False)
        )
        with self._lock:
            cert = builder.sign(self._key, hashes.SHA256())
        san = [f"DNS:{n}" for n in dict.fromkeys(names)] + [f"IP:{a}" for a in dict.fromkeys(ips)]
        log.info("issued %s certificate for %s serial %x SAN %s validity %s", kind, cn, serial, san, validity)
        return Issued(serial, cert.public_bytes(serialization.Encoding.PEM).decode(), _pem_key(key),
                      not_before, not_after, san)
