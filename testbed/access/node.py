"""The node's side of an authenticated attach (claims 40, 44-48, 51-54).

Builds the hello (plain, shared-secret AUTH, or CERTAUTH with certificate chunks and a
signature), then checks the sink's answer: with certificates the answer must carry the
sink's certificate signed by the MSM CA, naming a valid MSR, and a signature over the
answer including the node's own nonce (claim 54: the node authenticates its new sink).
The routes of the answer are returned for installation (`install_routes`).
"""
from __future__ import annotations

import logging
import subprocess
import time

from testbed.aodv.messages import RREP, MalformedMessage, hello, parse_message

from . import credentials as cr
from . import hello_auth as ha

log = logging.getLogger("access.node")


class SinkRefused(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class AccessNode:
    def __init__(self, address: str, identity: str, *, secret: str | None = None,
                 ca_pem: bytes | None = None, cert_pem: bytes | None = None,
                 key_pem: bytes | None = None, send_certificate: bool = True) -> None:
        self.addr = address
        self.identity = identity
        self.secret = secret
        self.ca = cr.load_cert(ca_pem) if ca_pem else None
        self.cert = cr.load_cert(cert_pem) if cert_pem else None
        self.key = cr.load_key(key_pem) if key_pem else None
        self.send_certificate = send_certificate
        self.nonce = b""
        self.sent_at = 0.0
        self.seq = 1

    def plain_hello(self, lifetime_ms: int = 2000) -> bytes:
        self.sent_at = time.monotonic()
        return bytes(hello(self.addr, self.seq, lifetime_ms))

    def secret_hello(self, lifetime_ms: int = 2000, ts_ms: int | None = None,
                     nonce: bytes | None = None) -> bytes:
        assert self.secret is not None
        self.nonce = nonce or cr.new_nonce()
        ext = ha.AuthExt(ts_ms=cr.now_ms() if ts_ms is None else ts_ms, nonce=self.nonce,
                         identity=self.identity.encode())
        msg = hello(self.addr, self.seq, lifetime_ms, [ext])
        ext.mac = cr.hmac_sha256(self.secret, ha.auth_data(msg, ext))
        self.sent_at = time.monotonic()
        return bytes(msg)

    def cert_hello(self, lifetime_ms: int = 2000, ts_ms: int | None = None) -> bytes:
        assert self.cert is not None and self.key is not None
        self.nonce = cr.new_nonce()
        flags = ha.FLAG_CERT_CARRIED if self.send_certificate else \
            ha.FLAG_FETCH_DIAMETER | ha.FLAG_FETCH_DNS
        ext = ha.CertAuthExt(ts_ms=cr.now_ms() if ts_ms is None else ts_ms, nonce=self.nonce,
                             flags=flags, fingerprint=cr.fingerprint(self.cert),
                             identity=self.identity.encode())
        msg = hello(self.addr, self.seq, lifetime_ms, [ext])
        msg.extensions += ha.split_blob(ha.KIND_SIG, cr.sign(self.key, ha.signed_data(msg)))
        if self.send_certificate:
            msg.extensions += ha.split_blob(ha.KIND_CERT, cr.der(self.cert))
        self.sent_at = time.monotonic()
        return bytes(msg)

    def on_reply(self, data: bytes, src: str) -> tuple[str, list[tuple[str, str, int]]]:
        """(verdict, routes) of the sink's answer; raises SinkRefused if it does not check."""
        try:
            msg = parse_message(data)
        except MalformedMessage as exc:
            raise SinkRefused("malformed", str(exc)) from None
        if not isinstance(msg, RREP) or msg.orig != src:
            raise SinkRefused("not_a_sink_hello")
        try:
            ha.check_consistent(msg)
        except ha.ExtensionError as exc:
            raise SinkRefused("malformed", str(exc)) from None
        rext = msg.ext(ha.RoutesExt)
        if rext is None:
            raise SinkRefused("no_routes")
        if self.cert is not None and self.ca is not None:
            self._check_sink(msg)
        verdict = ha.VERDICTS.get(rext.verdict, "?")
        try:
            return verdict, ha.routes_of(rext)
        except ha.ExtensionError as exc:
            raise SinkRefused("malformed", str(exc)) from None

    def _check_sink(self, msg: RREP) -> None:
        cauth = msg.ext(ha.CertAuthExt)
        if cauth is None:
            raise SinkRefused("no_sink_certificate")
        if bytes(cauth.peer_nonce) != self.nonce:
            raise SinkRefused("replay", "answer does not echo our nonce")
        try:
            der = ha.join_blob(msg, ha.KIND_SINK_CERT)
            sig = ha.join_blob(msg, ha.KIND_SIG)
            if not der or not sig:
                raise cr.CredentialError("no_sink_certificate")
            cert = cr.load_cert(der)
            if cr.fingerprint(cert) != bytes(cauth.fingerprint):
                raise cr.CredentialError("fingerprint_mismatch")
            cr.verify_cert(cert, self.ca)
            cr.verify_signature(cert, sig, ha.signed_data(msg))
        except (cr.CredentialError, ha.ExtensionError) as exc:
            raise SinkRefused(getattr(exc, "reason", "malformed"), str(exc)) from None


def install_routes(routes: list[tuple[str, str, int]], sink: str, iface: str,
                   fa: str | None = None, dry_run: bool = False) -> list[list[str]]:
    """Kernel routes for the sink's advertisement (claims 43-46).

    Every prefix goes via the sink (the node's next hop; the Framed-Route gateway is the
    SG or FA further on, which the sink routes to). A lower metric for the home range
    makes the node use the default route only outside it (claim 45).
    """
    cmds = []
    for prefix, _gw, metric in routes:
        dst = "default" if prefix == "0.0.0.0/0" else prefix
        cmds.append(["ip", "route", "replace", dst, "via", sink, "dev", iface, "metric",
                     str(metric), "proto", "static"])
    if not dry_run:
        for c in cmds:
            r = subprocess.run(c, capture_output=True, text=True)
            if r.returncode != 0:
                log.error("%s: %s", " ".join(c), r.stderr.strip())
    return cmds
