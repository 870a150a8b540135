"""Enrolment tokens and keys the lab needs, and how a node enrols at the MSM CA.

Tokens follow the MSM's contract (issue 9, kubeadm-style discovery): ``<id>.<secret>``
with id 6 characters [a-z0-9] and a secret of 22 characters; the MSM learns them from
``seed.tokens`` ({identity, kind, token, ttl_s}) and each node gets its own token in the
file :data:`TOKEN_FILE`. Mobile IP MN-HA keys (RFC 5944 3.5) come from the same source.

Values are random (``secrets``) unless a ``seed`` is given, then derived from it with
HMAC-SHA256, so that ``testbed render`` and the unit tests are reproducible.

The MSM of this tree may still be the one without tokens (plain HTTP, enrolment by
name); :data:`TOKENS` says which one it is, from the MSM's own config model, and the
portal URL and enrolment command follow.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from testbed.msm.config import MsmConfig, Seed

TOKEN_FILE = "/etc/testbed/enrol.token"
TOKENS = "tokens" in Seed.model_fields
HTTPS = "https_port" in MsmConfig.model_fields
PORTAL_PORT = 8443 if HTTPS else 8080
_ALNUM = string.ascii_lowercase + string.digits


class Secrets:
    """Source of tokens and keys: random, or derived from ``seed`` (reproducible)."""

    def __init__(self, seed: str | None = None):
        self.seed = seed
        self._made: dict[str, str] = {}  # the same label gives the same value within one lab

    def _text(self, label: str, n: int) -> str:
        if label not in self._made:
            if self.seed is None:
                self._made[label] = "".join(secrets.choice(_ALNUM) for _ in range(n))
            else:
                d = hmac.new(self.seed.encode(), label.encode(), hashlib.sha256).digest()
                self._made[label] = "".join(_ALNUM[b % len(_ALNUM)] for b in d[:n])
        return self._made[label]

    def token(self, identity: str, kind: str) -> str:
        """An enrolment token ``<id>.<secret>`` for ``identity`` of ``kind`` (mn, sg, msr)."""
        return f"{self._text(f'id:{kind}:{identity}', 6)}.{self._text(f'secret:{kind}:{identity}', 22)}"

    def key(self, label: str) -> str:
        """A 32-character shared secret (MN-HA authentication key, RFC 5944 3.5)."""
        return self._text(f"key:{label}", 32)


def portal_url(address: str) -> str:
    """The portal's base URL on ``address``."""
    return f"{'https' if TOKENS or HTTPS else 'http'}://{address}:{PORTAL_PORT}"


def enrol_command(portal: str, identity: str, kind: str, out: str, san_ip: str | None = None,
                  netns: str | None = None, token_file: str = TOKEN_FILE) -> str:
    """Shell command that gets a key and certificate for ``identity`` into ``out``
    (key.pem, cert.pem, ca.pem), with the node's token when the MSM takes tokens."""
    pre = f"nsenter --net=/run/netns/{netns} " if netns else ""
    if TOKENS:
        return (f"{pre}python3 -m testbed.common.enroll --portal {portal} --token \"$(cat {token_file})\" "
                f"--kind {kind} --out {out} --wait 120")
    san = f" --san-ip {san_ip}" if san_ip else ""
    return f"{pre}python3 -m testbed.common.enroll --portal {portal} --cn {identity} --kind {kind}{san} --out {out} --wait 120"
