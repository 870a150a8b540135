"""Private keys that stay where they are made (issue 9: keys never cross the network).

Used by the MSM's CA for its own keys and by every node that enrols (testbed.common.enroll)
to make its key locally before sending a CSR.
"""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def new_key(key_type: str):
    """A fresh private key: RSA 2048 or EC P-256. Only for keys that stay on this host."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key) -> str:
    """PKCS#8 PEM text of a private key (unencrypted: file mode 0600 protects it)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def write_private(path: str | Path, text: str) -> None:
    """Write a private key file created with mode 0600 (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
