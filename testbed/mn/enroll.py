"""Get a certificate from the MSM's CA (claims 9-10): for MNs (kind mn, subjectAltName =
FQDN + its SG's public address, filled in by the CA) and SGs (kind sg, SAN = public address).

    python3 -m testbed.mn.enroll --portal http://198.51.100.10:8080 --cn sg-b --kind sg \
        --san-ip 198.51.100.2 --out /etc/testbed/sg --wait 60

Why a step of its own: every node of a lab gets its certificate from the lab's own MSM at
start-up (no pre-baked PKI), so the CA under test is the one that signs. Waits for the
portal (the MSM may start later than the node). Writes cert.pem, key.pem (0600), ca.pem;
an existing set is kept.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from testbed.msm.client import MsmClient, MsmError
from testbed.sg.strongswan import Credentials

log = logging.getLogger(__name__)


def paths(out_dir: str | Path) -> Credentials:
    d = Path(out_dir)
    return Credentials(cert=str(d / "cert.pem"), key=str(d / "key.pem"), ca=str(d / "ca.pem"))


def enroll(portal: str, cn: str, kind: str, out_dir: str | Path, san_ips: list[str] | None = None,
           wait: float = 60.0, **options) -> Credentials:
    creds = paths(out_dir)
    if all(Path(p).exists() for p in (creds.cert, creds.key, creds.ca)):
        return creds
    client = MsmClient(portal, timeout=5)
    deadline = time.monotonic() + wait
    while True:
        try:
            doc = client.issue_cert(cn, kind, san_ips=san_ips or [], **options)
            break
        except MsmError as exc:
            if exc.status != 0 or time.monotonic() > deadline:
                raise
            log.debug("MSM not reachable yet: %s", exc)
            time.sleep(0.5)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    Path(creds.cert).write_text(doc["cert_pem"])
    Path(creds.ca).write_text(doc["ca_pem"])
    Path(creds.key).touch(mode=0o600)
    Path(creds.key).write_text(doc["key_pem"])
    log.info("enrolled %s (%s): serial %s, SAN %s", cn, kind, doc.get("serial"), doc.get("san"))
    return creds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.mn.enroll", description=__doc__)
    ap.add_argument("--portal", required=True)
    ap.add_argument("--cn", required=True)
    ap.add_argument("--kind", required=True, choices=["mn", "sg", "msr"])
    ap.add_argument("--san-ip", action="append", default=[])
    ap.add_argument("--sg-public-override", help="negative tests: name another SG in the SAN")
    ap.add_argument("--out", required=True)
    ap.add_argument("--wait", type=float, default=60.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    opts = {"sg_public_override": args.sg_public_override} if args.sg_public_override else {}
    try:
        enroll(args.portal, args.cn, args.kind, args.out, args.san_ip, args.wait, **opts)
    except MsmError as exc:
        print(f"enroll {args.cn}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
