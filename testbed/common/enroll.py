"""Enrol a node at the MSM CA with a one-time token (issue 9; claims 9-10): the key is made HERE.

    python3 -m testbed.common.enroll --portal https://198.51.100.10:8443 --token abcdef.0123456789abcdef \
        --kind sg --out /etc/testbed/sg [--ca-file ca.pem] [--wait 120]

Steps: make a private key locally (written 0600 before anything is sent), learn the CA (the
pre-provisioned `--ca-file`, or first contact: `GET /api/ca?token_id=` checked by the token's
HMAC, see testbed/msm/README.md), send a CSR with the token over HTTPS verified against that CA,
and write cert.pem and ca.pem next to key.pem. The MSM decides the certificate's names from its
registry (an MN's SAN names its own SG's public address, claim 10); the CSR's names are ignored.

Why a step of its own: every node of a lab gets its certificate from the lab's own MSM at
start-up (no pre-baked PKI), so the CA under test is the one that signs. Waits for the portal
(the MSM may start later than the node). An existing cert/key/ca set is kept.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from testbed.common.keys import key_pem, new_key, write_private
from testbed.common.portal_client import MsmClient, MsmError, discover_ca
from testbed.common.strongswan import Credentials

log = logging.getLogger(__name__)


def paths(out_dir: str | Path) -> Credentials:
    d = Path(out_dir)
    return Credentials(cert=str(d / "cert.pem"), key=str(d / "key.pem"), ca=str(d / "ca.pem"))


def make_csr(key, cn: str = "testbed-node") -> str:
    """A PKCS#10 request signed with `key` (proof of possession). Its subject is a hint only:
    the MSM names the certificate from its registry."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64] or "testbed-node")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def load_or_make_key(path: str | Path, key_type: str):
    """The key in `path` if a previous attempt left one, else a new one written there 0600."""
    p = Path(path)
    if p.exists():
        return serialization.load_pem_private_key(p.read_bytes(), password=None)
    key = new_key(key_type)
    write_private(p, key_pem(key))
    return key


def _retry(fn, deadline: float, what: str):
    """Call `fn` until it stops failing with status 0 (portal not reachable yet) or `deadline`."""
    while True:
        try:
            return fn()
        except MsmError as exc:
            if exc.status != 0 or exc.reason or time.monotonic() > deadline:
                raise
            log.debug("%s: MSM not reachable yet: %s", what, exc)
            time.sleep(0.5)


def enroll(portal: str, token: str, kind: str | None, out_dir: str | Path, ca_file: str | None = None,
           wait: float = 60.0, key_type: str = "rsa", cn: str = "testbed-node") -> Credentials:
    """Enrol with `token` at the portal `portal` (https URL); returns the written credentials.

    `kind` (mn|sg|msr|operator), if given, must be the token's kind (else 403 token_kind).
    `wait`: seconds to keep retrying while the portal is unreachable. Raises MsmError on a
    refusal (reason token_used, token_expired, token_unknown, token_kind, csr_invalid, ca_mac).
    """
    creds = paths(out_dir)
    if all(Path(p).exists() for p in (creds.cert, creds.key, creds.ca)):
        return creds
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    key = load_or_make_key(creds.key, key_type)
    deadline = time.monotonic() + wait
    if ca_file:
        ca_pem = Path(ca_file).read_text()
    else:
        ca_pem = _retry(lambda: discover_ca(portal, token, timeout=5), deadline, "CA")
    Path(creds.ca).write_text(ca_pem)
    client = MsmClient(portal, timeout=10, ca_file=creds.ca)
    doc = _retry(lambda: client.enroll(token, make_csr(key, cn), kind), deadline, "enroll")
    Path(creds.cert).write_text(doc["cert_pem"])
    log.info("enrolled %s %s: serial %s, SAN %s", doc.get("kind"), doc.get("identity"), doc.get("serial"),
             doc.get("san"))
    return creds


def issue_with_local_key(source: Any, identity: str, kind: str, key_type: str | None = None, test: bool = False,
                         **options: Any) -> dict:
    """Provision a node's credentials as its operator would: make the key here, then either
    make a token for (identity, kind) and enrol with a CSR, or (`test`, or any of the test options
    validity, days, sg_public_override) ask for a test-only certificate (MSM allow_test_certs).

    `source` is an operator MsmClient or, in-process, a `testbed.msm.portal.Portal`. Returns the
    MSM's answer plus `key_pem` (made locally, not by the MSM). For tests and tools that set up
    several nodes at once. Raises MsmError (client) or ApiError (in-process) on a refusal.
    """
    in_process = not isinstance(source, MsmClient)
    key = new_key(key_type or (source.ca.key_type if in_process else "rsa"))
    csr = make_csr(key, identity)
    if test or options:
        body = {"csr_pem": csr, "identity": identity, "kind": kind, **options}
        doc = source.enrolment.test_cert(body) if in_process else source.test_cert(**body)
    elif in_process:
        token = source.enrolment.create_token({"identity": identity, "kind": kind})["token"]
        doc = source.enrolment.enroll({"token": token, "csr_pem": csr, "kind": kind})
    else:
        token = source.create_token(identity, kind)["token"]
        doc = source.enroll(token, csr, kind)
    return {**doc, "key_pem": key_pem(key)}


@dataclass
class LocalIssue:
    """A certificate and the key made for it on THIS side (see `sign_local_key`)."""

    cert_pem: str
    key_pem: str
    serial: int
    san: list[str]


def sign_local_key(ca: Any, cn: str, kind: str, san_ips: list[str], san_dns: list[str], validity: str = "valid",
                   key_type: str | None = None) -> LocalIssue:
    """In-process tests and tools that hold a `testbed.msm.ca.CertificateAuthority` object: make a
    key here and have that CA sign it (no portal, no registry: the caller picks the names)."""
    key = new_key(key_type or ca.key_type)
    issued = ca.sign(key.public_key(), cn, kind, san_ips, san_dns, validity=validity)
    return LocalIssue(issued.cert_pem, key_pem(key), issued.serial, issued.san)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.common.enroll", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portal", required=True, help="https://HOST:PORT of the MSM portal")
    ap.add_argument("--token", required=True, help="one-time enrolment token <id>.<secret>")
    ap.add_argument("--kind", choices=["mn", "sg", "msr", "operator"], help="must match the token's kind")
    ap.add_argument("--out", required=True, help="directory for key.pem (0600), cert.pem, ca.pem")
    ap.add_argument("--ca-file", help="pre-provisioned MSM CA (else first contact with the token's MAC)")
    ap.add_argument("--key-type", choices=["rsa", "ec"], default="rsa")
    ap.add_argument("--cn", default="testbed-node", help="CSR subject hint (the MSM decides the real one)")
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the portal")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    try:
        enroll(args.portal, args.token, args.kind, args.out, ca_file=args.ca_file, wait=args.wait,
               key_type=args.key_type, cn=args.cn)
    except MsmError as exc:
        print(f"enroll ({args.kind or 'any kind'}): {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"enroll: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
