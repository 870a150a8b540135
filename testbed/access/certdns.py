"""Fetch a node's certificate from the MSM by DNS (claim 55): TXT at `_cert.<FQDN>`.

Over TCP: a certificate (~600-900 bytes base64) does not fit a plain 512-byte UDP answer.
The TXT strings are "tbcert1" then the DER in base64 (see testbed/msm/dns.py).
"""
from __future__ import annotations

import base64

from dnslib import QTYPE, RCODE, DNSRecord


def fetch_certificate(fqdn: str, server: str, port: int = 53, timeout: float = 2.0) -> bytes | None:
    """The DER certificate, or None when the MSM has none for `fqdn`."""
    q = DNSRecord.question(f"_cert.{fqdn.rstrip('.')}", "TXT")
    ans = DNSRecord.parse(q.send(server, port, tcp=True, timeout=timeout))
    if ans.header.rcode != RCODE.NOERROR:
        return None
    for rr in ans.rr:
        if rr.rtype == QTYPE.TXT:
            parts = [p.decode() if isinstance(p, bytes) else p for p in rr.rdata.data]
            if parts and parts[0] == "tbcert1":
                return base64.b64decode("".join(parts[1:]))
    return None
