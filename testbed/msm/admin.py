"""One portal call from the command line, as the local operator (or any credential given).

    python3 -m testbed.msm.admin POST /api/tokens '{"identity": "a.mwg.test", "kind": "mn"}'
    python3 -m testbed.msm.admin DELETE /api/workgroups/W/members/a.mwg.test
    python3 -m testbed.msm.admin --cert d/cert.pem --key d/key.pem POST /api/signon '{"workgroup": "W"}'

Defaults suit the MSM node itself: portal https://127.0.0.1:8443, CA and operator credential
from `--ca-dir` (/var/lib/msm/ca: ca.pem, operator/cert.pem, operator/key.pem; made by the MSM at
first start). Prints the JSON answer (or the PEM text) on stdout. Exit 0 on success; on a
refusal prints {"status", "error", "field", "reason"} and exits 1; bad arguments exit 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from testbed.common.portal_client import MsmClient, MsmError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.msm.admin", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portal", default="https://127.0.0.1:8443")
    ap.add_argument("--ca-dir", default="/var/lib/msm/ca")
    ap.add_argument("--ca-file", help="default: CA_DIR/ca.pem")
    ap.add_argument("--cert", help="client certificate (default: CA_DIR/operator/cert.pem)")
    ap.add_argument("--key", help="its key (default: CA_DIR/operator/key.pem)")
    ap.add_argument("--anonymous", action="store_true", help="send no client certificate")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("method", choices=["GET", "POST", "DELETE"])
    ap.add_argument("path", help="e.g. /api/status")
    ap.add_argument("body", nargs="?", help="JSON body")
    args = ap.parse_args(argv)
    try:
        body = json.loads(args.body) if args.body is not None else None
    except ValueError as exc:
        print(f"admin: body is not JSON: {exc}", file=sys.stderr)
        return 2
    cert = key = None
    if not args.anonymous:
        cert = args.cert or os.path.join(args.ca_dir, "operator", "cert.pem")
        key = args.key or os.path.join(args.ca_dir, "operator", "key.pem")
    try:
        client = MsmClient(args.portal, timeout=args.timeout, ca_file=args.ca_file or os.path.join(args.ca_dir, "ca.pem"),
                           cert_file=cert, key_file=key)
    except (OSError, ValueError) as exc:
        print(f"admin: cannot load credentials: {exc}", file=sys.stderr)
        return 2
    try:  # raw: the answer may be HTML (GET /) or PEM (/api/ca, /api/crl), not JSON
        answer = client.request(args.method, args.path, body, raw=True)
    except MsmError as exc:
        print(json.dumps({"status": exc.status, "error": exc.message, "field": exc.field, "reason": exc.reason}))
        return 1
    try:
        print(json.dumps(json.loads(answer), indent=1))
    except ValueError:  # not JSON: print the text as it came
        print(answer, end="" if answer.endswith("\n") else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
