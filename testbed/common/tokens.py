"""Enrolment tokens `<id>.<secret>` (the kubeadm bootstrap-token format) and the first-contact MAC.

Shared by the MSM (which makes and checks tokens) and the node side (which proves the CA it
fetched came from the token's issuer). Stdlib only.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

#: id: 6 characters, secret: 16-64 characters, both [a-z0-9]
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16,64})$")
TOKEN_ID_RE = re.compile(r"^[a-z0-9]{6}$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_token() -> tuple[str, str]:
    """(id, secret): 6 + 16 characters from [a-z0-9] by the OS CSPRNG (~82 bits of secret)."""
    return ("".join(secrets.choice(_ALPHABET) for _ in range(6)),
            "".join(secrets.choice(_ALPHABET) for _ in range(16)))


def split_token(token: str) -> tuple[str, str]:
    """("<id>", "<secret>"); ValueError if `token` is not <id>.<secret>."""
    m = TOKEN_RE.match(token.strip()) if isinstance(token, str) else None
    if not m:
        raise ValueError("an enrolment token is <id>.<secret>: 6, then 16-64 characters of [a-z0-9]")
    return m.group(1), m.group(2)


def ca_mac(secret: str, ca_pem: str) -> str:
    """Hex HMAC-SHA256 keyed by the token secret over the CA PEM bytes (first contact)."""
    return hmac.new(secret.encode(), ca_pem.encode(), hashlib.sha256).hexdigest()


def ca_mac_ok(secret: str, ca_pem: str, mac: str) -> bool:
    """Constant-time check of `mac` against ca_mac(secret, ca_pem)."""
    return bool(ca_pem) and hmac.compare_digest(ca_mac(secret, ca_pem), str(mac))
