"""Cryptographic checks of an attach: HMAC, X.509 chain to the MSM CA, signatures, replay.

Why here and not in the MSM: with certificates (claims 50-54) the sink decides by itself,
using only the MSM's CA certificate it got as management configuration (claim 55); the
shared-secret HMAC is checked by the MSM (the sink never holds node secrets), but the
sink still refuses stale or replayed hellos before it spends a DIAMETER round trip.
"""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import os
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa


class CredentialError(ValueError):
    """Why a credential was refused; `reason` is a short counter-friendly key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def hmac_sha256(secret: bytes | str, data: bytes) -> bytes:
    """Same scheme as the MSM's check (testbed.diameter.static_backend.compute_authenticator)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).digest()


def new_nonce() -> bytes:
    return os.urandom(8)


def now_ms() -> int:
    return int(time.time() * 1000)


class ReplayGuard:
    """Refuses hellos outside a time window around now, and nonces seen within it.

    Nonces are remembered per identity for twice the window, so a captured hello
    replayed later is either stale or a repeated nonce.
    """

    def __init__(self, window_ms: int = 30_000, max_entries: int = 10_000) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._seen: collections.OrderedDict[tuple[str, bytes], int] = collections.OrderedDict()

    def check(self, identity: str, ts_ms: int, nonce: bytes, now: int | None = None) -> None:
        now = now_ms() if now is None else now
        if abs(now - ts_ms) > self.window_ms:
            raise CredentialError("stale", f"timestamp off by {now - ts_ms} ms")
        while self._seen and (len(self._seen) > self.max_entries or
                              next(iter(self._seen.values())) < now - 2 * self.window_ms):
            self._seen.popitem(last=False)
        key = (identity, bytes(nonce))
        if key in self._seen:
            raise CredentialError("replay", f"nonce {nonce.hex()} already seen for {identity}")
        self._seen[key] = now


# ---------------------------------------------------------------- certificates
def load_cert(data: bytes | str) -> x509.Certificate:
    """PEM or DER."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise CredentialError("bad_certificate", str(exc)) from None


def load_key(pem: bytes | str):
    raw = pem.encode() if isinstance(pem, str) else pem
    return serialization.load_pem_private_key(raw, password=None)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def verify_cert(cert: x509.Certificate, ca: x509.Certificate,
                when: dt.datetime | None = None) -> None:
    """The certificate is signed by the MSM CA (claim 52/54) and valid now."""
    if cert.issuer != ca.subject:
        raise CredentialError("wrong_ca", f"issuer {cert.issuer.rfc4514_string()}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CredentialError("wrong_ca", f"signature does not verify with the MSM CA: {exc}") \
            from None
    when = when or dt.datetime.now(dt.timezone.utc)
    if when < cert.not_valid_before_utc:
        raise CredentialError("not_yet_valid", f"valid from {cert.not_valid_before_utc}")
    if when > cert.not_valid_after_utc:
        raise CredentialError("expired", f"expired {cert.not_valid_after_utc}")


def cert_identity(cert: x509.Certificate) -> set[str]:
    """Names the certificate vouches for: CN and DNS SANs (lower case)."""
    names = {a.value.lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
             if isinstance(a.value, str)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        pass
    return names


def sign(key, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    raise CredentialError("bad_key", f"unsupported key type {type(key).__name__}")


def verify_signature(cert: x509.Certificate, signature: bytes, data: bytes) -> None:
    pub = cert.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise CredentialError("bad_key", f"unsupported key type {type(pub).__name__}")
    except InvalidSignature:
        raise CredentialError("bad_signature", "hello signature does not verify") from None
