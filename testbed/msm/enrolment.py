"""Key-safe enrolment (issue 9; claims 9-11): one-time tokens, CSR signing, first-contact CA.

A node makes its own key and sends a PKCS#10 request with a one-time token `<id>.<secret>`
(id 6 chars, secret 16+ chars of [a-z0-9], the kubeadm bootstrap-token format). The token is
bound to one identity and kind; the MSM decides the certificate's subject and subjectAltName
from its registry, never from the request:

  mn   CN=<fqdn>              SAN DNS:<fqdn>, IP:<public address of the user's own SG> (claim 10)
  sg   CN=sg-<mvpn>.<zone>    SAN DNS:sg-<mvpn>.<zone>, IP:<the M-VPN's registered sg_public>
  msr  CN=<name>              SAN DNS:<name>
  operator CN=<name>          SAN DNS:<name>

First contact (before the node trusts any CA): `GET /api/ca?token_id=<id>` answers the CA
certificate with an HMAC-SHA256 of it keyed by the token's secret; the node, which got the
whole token out of band (its lab/config), checks the MAC and pins the CA. The secret never
travels.
"""
from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from . import validate as v
from .ca import CertificateAuthority, load_csr
from .errors import ApiError, bad, not_found, refused
from .store import Store
from testbed.common.tokens import TOKEN_ID_RE, TOKEN_RE, ca_mac, new_token

log = logging.getLogger("msm.enrolment")

TOKEN_KINDS = ("mn", "sg", "msr", "operator")
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 30 * 86400.0


def sg_cn(mvpn: str, zone: str) -> str:
    """The SG of `mvpn` as named in DNS (claim 21) and in its certificate: sg-<mvpn>.<zone>."""
    return f"sg-{mvpn.lower()}.{zone.rstrip('.')}"


def _ttl(value: Any, field: str) -> float:
    if value is None:
        return DEFAULT_TTL_S
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_TTL_S:
        raise bad(field, f"must be a number of seconds between 1 and {int(MAX_TTL_S)}")
    return float(value)


class Enrolment:
    """Tokens, enrolment and test-only certificates over one store and CA."""

    def __init__(self, store: Store, ca: CertificateAuthority, zone: str, allow_test_certs: bool = False) -> None:
        self.store = store
        self.ca = ca
        self.zone = zone
        self.allow_test_certs = allow_test_certs

    # ------------------------------------------------------------------ registry
    def identity(self, kind: Any, identity: Any) -> tuple[str, str]:
        """Validate (kind, identity) against the registry; returns them normalised. 400/404."""
        kind = v.text(kind, "kind")
        if kind not in TOKEN_KINDS:
            raise bad("kind", f"{kind!r} is not one of {', '.join(TOKEN_KINDS)}")
        if kind == "mn":
            fqdn = v.fqdn(identity, "identity")
            if self.store.find_user(fqdn) is None:
                raise not_found("identity", f"{fqdn!r} is not a registered user (kind mn needs one)")
            return kind, fqdn
        if kind == "sg":
            name = v.name(identity, "identity")
            if name not in {m["name"] for m in self.store.mvpns()}:
                raise not_found("identity", f"{name!r} is not a registered M-VPN (kind sg needs one)")
            return kind, name
        return kind, v.hostname(identity, "identity")

    def subject(self, kind: str, identity: str, sg_public_override: str | None = None
                ) -> tuple[str, list[str], list[str]]:
        """(cn, san_ips, san_dns) the registry gives `identity` of `kind` (see module doc)."""
        if kind == "mn":
            user = self.store.user(identity)
            return user["fqdn"], [sg_public_override or user["sg_public"]], [user["fqdn"]]
        if kind == "sg":
            mvpn = self.store.mvpn(identity)
            cn = sg_cn(mvpn["name"], self.zone)
            return cn, [sg_public_override or mvpn["sg_public"]], [cn]
        return identity, [], [identity]

    # -------------------------------------------------------------------- tokens
    def create_token(self, body: Any) -> dict:
        """POST /api/tokens {identity, kind, ttl_s?} -> {token, id, identity, kind, expires (unix s)}."""
        body = v.obj(body)
        kind, identity = self.identity(v.require(body, "kind"), v.require(body, "identity"))
        ttl = _ttl(body.get("ttl_s"), "ttl_s")
        for _ in range(5):
            token_id, secret = new_token()
            if self.store.token(token_id) is None:
                break
        rec = self.store.add_token(token_id, secret, identity, kind, ttl)
        log.info("token %s for %s %s, valid %.0f s", token_id, kind, identity, ttl)
        return {"token": f"{token_id}.{secret}", **rec}

    def add_seed_token(self, entry: dict) -> None:
        """A token the lab declared (`seed.tokens`): {identity, kind, token, ttl_s}."""
        kind, identity = self.identity(entry.get("kind"), entry.get("identity"))
        m = TOKEN_RE.match(str(entry.get("token", "")))
        if not m:
            raise bad("token", "must be <id>.<secret>: 6 then 16-64 characters of [a-z0-9]")
        self.store.add_token(m.group(1), m.group(2), identity, kind, _ttl(entry.get("ttl_s"), "ttl_s"))

    def _token(self, text: Any, kind: Any = None) -> dict:
        """The unused, unexpired token record for `text` ("<id>.<secret>"); 401/403 with reason."""
        m = TOKEN_RE.match(text) if isinstance(text, str) else None
        if not m:
            raise refused(401, "token_unknown", "not an enrolment token (<id>.<secret>)", "token")
        rec = self.store.token(m.group(1))
        if rec is None or not hmac.compare_digest(rec["secret"].encode(), m.group(2).encode()):
            raise refused(401, "token_unknown", f"no token {m.group(1)} with this secret", "token")
        return self._usable(rec, kind)

    @staticmethod
    def _usable(rec: dict, kind: Any = None) -> dict:
        if rec["used_at"] is not None:
            raise refused(403, "token_used", f"token {rec['id']} was already used", "token")
        if time.time() > rec["expires"]:
            raise refused(403, "token_expired", f"token {rec['id']} expired", "token")
        if kind is not None and kind != rec["kind"]:
            raise refused(403, "token_kind", f"token {rec['id']} is for kind {rec['kind']}, not {kind!r}", "kind")
        return rec

    def ca_for_token(self, token_id: str) -> dict:
        """GET /api/ca?token_id= -> {ca_pem, token_id, mac}: mac = hex HMAC-SHA256(secret, ca_pem)."""
        if not TOKEN_ID_RE.match(token_id):
            raise refused(401, "token_unknown", "token_id must be 6 characters of [a-z0-9]", "token_id")
        rec = self.store.token(token_id)
        if rec is None:
            raise refused(401, "token_unknown", f"no token {token_id}", "token_id")
        self._usable(rec)
        pem = self.ca.cert_pem
        return {"ca_pem": pem, "token_id": token_id, "mac": ca_mac(rec["secret"], pem)}

    # ----------------------------------------------------------------- enrolment
    def enroll(self, body: Any) -> dict:
        """POST /api/enroll {token, csr_pem, kind?} -> {cert_pem, ca_pem, serial, san, ...}.

        The token is checked, the CSR's signature verified, subject/SAN taken from the registry,
        then token consumption and certificate record commit in one transaction (a second use of
        the token, even concurrent, gets 403 token_used). No private key in the answer.
        """
        body = v.obj(body)
        rec = self._token(body.get("token"), body.get("kind"))
        csr = load_csr(body.get("csr_pem"))
        kind, identity = rec["kind"], rec["identity"]
        try:
            cn, ips, dns = self.subject(kind, identity)
        except ApiError as exc:  # the user or M-VPN was deleted after the token was made
            raise refused(403, "token_unknown", f"token {rec['id']}: {exc.message}", "token") from None
        issued = self.ca.sign(csr.public_key(), cn, kind, ips, dns)
        with self.store.transaction():
            self.store.use_token(rec["id"], issued.serial_hex)
            self.store.record_cert(issued.serial, cn, kind, issued.not_before.isoformat(),
                                   issued.not_after.isoformat(), issued.san, identity=identity)
            if kind in ("mn", "msr"):
                # the one a sink may fetch for this node (claims 55-56)
                self.store.set_node_cert(identity, issued.cert_pem)
        log.info("enrolled %s %s with token %s: serial %s", kind, identity, rec["id"], issued.serial_hex)
        return self._answer(issued, cn, kind, identity)

    def test_cert(self, body: Any) -> dict:
        """POST /api/testcerts {csr_pem, identity, kind, validity?, days?, sg_public_override?}
        (operator, only with allow_test_certs): a certificate for negative tests of IKE peers
        (wrong SG in SAN, expired, not yet valid). Recorded as test-only: it never logs in to
        the portal and never becomes a node's published certificate."""
        body = v.obj(body)
        csr = load_csr(body.get("csr_pem"))
        kind, identity = self.identity(v.require(body, "kind"), v.require(body, "identity"))
        if kind == "operator":
            raise bad("kind", "no test certificates of kind operator")
        override = body.get("sg_public_override")
        if override is not None:
            if kind not in ("mn", "sg"):
                raise bad("sg_public_override", "only allowed with kind mn or sg")
            override = str(v.ipv4(override, "sg_public_override"))
        cn, ips, dns = self.subject(kind, identity, override)
        validity = v.text(body.get("validity", "valid"), "validity")
        issued = self.ca.sign(csr.public_key(), cn, kind, ips, dns, validity=validity, days=body.get("days"))
        self.store.record_cert(issued.serial, cn, kind, issued.not_before.isoformat(),
                               issued.not_after.isoformat(), issued.san, identity=identity, test=True)
        return self._answer(issued, cn, kind, identity)

    def _answer(self, issued, cn: str, kind: str, identity: str) -> dict:
        return {"cn": cn, "kind": kind, "identity": identity, "serial": issued.serial_hex, "san": issued.san,
                "not_before": issued.not_before.isoformat(), "not_after": issued.not_after.isoformat(),
                "cert_pem": issued.cert_pem, "ca_pem": self.ca.cert_pem}
