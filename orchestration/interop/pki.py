"""Host-side certificates for the interop matrix: a matrix CA, "another CA", and end-entity
certificates with RSA-3072, ECDSA P-256 or Ed25519 keys (cryptography library).

The matrix does not use the MSM's enrolment: it needs key types, expired certificates and a
foreign CA that the MSM does not issue, and it must not depend on the portal's API.
Identities follow claims 9-10: an MN's certificate carries its own SG's public address as
a subjectAltName IP (its IKE identity); an SG's certificate carries its own public address.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from ipaddress import IPv4Address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

KEY_TYPES = ("rsa3072", "p256", "ed25519")


def new_key(key_type: str):
    """A private key of KEY_TYPES; ValueError names the choices."""
    if key_type == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"key type {key_type!r}: choose one of {', '.join(KEY_TYPES)}")


def _hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "testbed interop"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def key_pem(key) -> bytes:
    """PKCS#8 PEM, unencrypted (swanctl loads it from private/)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Issued:
    """One end-entity credential as PEM bytes."""
    cert: bytes
    key: bytes
    key_type: str


class MatrixCA:
    """A self-signed CA (ECDSA P-256) that issues the matrix's certificates."""

    def __init__(self, common_name: str = "interop matrix CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(common_name))
                     .issuer_name(_name(common_name)).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=2))
                     .not_valid_after(now + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> bytes:
        """The CA certificate as PEM bytes (what SGs and peers install as their trust anchor)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str, san_ips: list[str], key_type: str = "p256", *,
              expired: bool = False, san_dns: tuple[str, ...] = ()) -> Issued:
        """An end-entity certificate for CN with subjectAltName IPs (and DNS names).

        expired: valid from 10 days ago until 1 day ago (the "expired certificate" cell).
        Raises ValueError for an unknown key type or a bad address.
        """
        key = new_key(key_type)
        now = dt.datetime.now(dt.timezone.utc)
        start, end = ((now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired
                      else (now - dt.timedelta(days=1), now + dt.timedelta(days=7)))
        san = [x509.IPAddress(IPv4Address(a)) for a in san_ips] + [x509.DNSName(d) for d in san_dns]
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem(key), key_type)
