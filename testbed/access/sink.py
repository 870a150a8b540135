"""The sink's side of an authenticated attach (claims 40-56).

Given a hello, the sink (an MSR) decides who the node is without blocking its loop:
- AUTH extension (shared secret): replay check here, then an AA-Request to the node's
  home MSM (the MSM holds the secret and checks the HMAC over the bytes forwarded as
  TB-Authenticated-Data); the answer's routes and workgroup filters are installed.
- CERTAUTH extension (certificate): the node's certificate comes from the hello's
  chunks, or by DIAMETER (claim 56) / DNS (claim 55) from the MSM; the sink checks the
  MSM CA's signature, validity, the name and the node's signature over the hello itself,
  then asks the MSM (AUTHORIZE_ONLY) for routes and filters, and answers with its own
  certificate and a signature covering the node's nonce (claims 53-54).
- Unknown identity with visitors enabled (claims 46-49): only a default route via the FA,
  and the sink's filter lets through only IP-IP to/from the FA.
Every refusal is counted under its reason and logged; a refused node gets no route and
its forwarded traffic is dropped.

The answer to the node is a unicast RREP from the sink (hello form) with a ROUTES
extension: what the node installs (claims 43-45).
"""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from scapy.packet import Packet

from testbed.aodv.messages import RREP, MalformedMessage, hello, parse_message

from . import credentials as cr
from . import hello_auth as ha
from .policy import NftPolicy

log = logging.getLogger("access.sink")

SendFn = Callable[[bytes, str, "str | None"], None]  # (data, node address, iface)


@dataclass
class NodeState:
    address: str
    identity: str = ""
    method: str = ""
    verdict: str = "pending"  # pending / member / visitor / refused
    reason: str | None = None
    routes: list[tuple[str, str, int]] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    hello_at: float = 0.0
    decided_at: float = 0.0
    iface: str | None = None

    @property
    def attach_ms(self) -> float | None:
        if self.decided_at and self.hello_at:
            return round((self.decided_at - self.hello_at) * 1000, 3)
        return None


class AccessSink:
    def __init__(self, cfg, send: SendFn, diameter: Any = None, via: Any = None,
                 policy: NftPolicy | None = None, dns_fetch: Callable | None = None) -> None:
        self.cfg = cfg
        self.addr = str(cfg.address)
        self.send = send
        self.diameter = diameter  # BlockingDiameterClient (submit) or None
        self.via = via  # CompletionQueue of the caller's loop, or None (callbacks on its thread)
        self.policy = policy or NftPolicy(cfg.nft_table, apply=cfg.nft)
        self.dns_fetch = dns_fetch
        self.replay = cr.ReplayGuard(cfg.replay_window_ms)
        self.counters: collections.Counter[str] = collections.Counter()
        self.nodes: dict[str, NodeState] = {}
        self.ca = self.own_cert = self.own_key = None
        if cfg.certs is not None:
            self.ca = cr.load_cert(open(cfg.certs.ca_file, "rb").read())
            self.own_cert = cr.load_cert(open(cfg.certs.cert_file, "rb").read())
            self.own_key = cr.load_key(open(cfg.certs.key_file, "rb").read())
        #: attach times per method (secret/certificate/plain), the last 1000 of each
        self.attach_times: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=1000))
        self._next_sweep = 0.0

    # ------------------------------------------------------------------ entry
    def on_hello(self, data: bytes | Packet, src: str, iface: str | None = None) -> bool:
        """A hello (TTL-1 RREP about the sender) arrived. Returns True if consumed here."""
        t0 = time.monotonic()
        try:
            msg = parse_message(data) if isinstance(data, (bytes, bytearray)) else data
        except MalformedMessage as exc:
            self.refuse_count("malformed", src, str(exc))
            return True
        if not isinstance(msg, RREP) or msg.dst != msg.orig or msg.hop_count != 0:
            return False
        try:
            ha.check_consistent(msg)
        except ha.ExtensionError as exc:
            self.refuse_count("malformed", src, str(exc))
            return True
        node = msg.orig
        if node != src:
            self.refuse_count("spoofed_source", src, f"hello about {node} sent by {src}")
            return True
        auth, cauth = msg.ext(ha.AuthExt), msg.ext(ha.CertAuthExt)
        st = self.nodes.get(node)
        if st and st.verdict == "pending" and t0 - st.hello_at < 2 * (self.cfg.msm.timeout
                                                                      if self.cfg.msm else 3):
            self.counters["hello_while_pending"] += 1
            return True
        if st and st.verdict in ("member", "visitor") and auth is None and cauth is None:
            return False  # periodic plain hellos of an attached node: AODV's business
        if st and st.verdict == "refused" and \
                t0 - st.decided_at < self.cfg.refused_holddown_ms / 1000:
            self.counters["hello_ignored_holddown"] += 1  # a forger must not flood the MSM
            return True
        if not self._room_for(node, t0):
            self.counters["node_table_full_dropped"] += 1
            return True
        self.counters["hellos"] += 1
        st = self.nodes[node] = NodeState(node, hello_at=t0, iface=iface)
        if auth is not None and self.cfg.shared_secret:
            self._secret_hello(msg, auth, st)
        elif cauth is not None and self.cfg.certificate:
            self._cert_hello(msg, cauth, st)
        elif self.cfg.plain_hellos == "open":
            st.method, st.identity = "plain", node
            self._grant(st, "member", [self._route3(r) for r in self.cfg.open_routes], None)
        else:
            self._decide_refused(st, "no_authenticator", "hello carries no usable access extension")
        return True

    def _forget(self, node: str) -> None:
        """Drop a refused node's state and its nft chain: it is unknown again."""
        self.nodes.pop(node, None)
        self.policy.remove(node)
        self.counters["refused_forgotten"] += 1

    def _room_for(self, node: str, now: float) -> bool:
        """Issue 11 section 4: at most cfg.max_nodes senders are remembered. Refused ones
        go after refused_retention_ms (swept once a second) or, when the table is full,
        as soon as their holddown is over (oldest decision first); members, visitors and
        pending hellos are never pushed out. False: no room for a new sender."""
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            keep = self.cfg.refused_retention_ms / 1000
            for a in [a for a, n in self.nodes.items()
                      if n.verdict == "refused" and now - n.decided_at >= keep]:
                self._forget(a)
        if node in self.nodes or len(self.nodes) < self.cfg.max_nodes:
            return True
        hold = self.cfg.refused_holddown_ms / 1000
        done = sorted((n.decided_at, a) for a, n in self.nodes.items()
                      if n.verdict == "refused" and now - n.decided_at >= hold)
        if not done:
            return False
        self._forget(done[0][1])
        return True

    # ------------------------------------------------------------------ shared secret
    def _secret_hello(self, msg: RREP, auth: ha.AuthExt, st: NodeState) -> None:
        st.method = "secret"
        st.identity = auth.identity.decode(errors="replace")
        try:
            self.replay.check(st.identity, auth.ts_ms, auth.nonce)
        except cr.CredentialError as exc:
            return self._decide_refused(st, exc.reason, str(exc))
        self.counters["diameter_requests"] += 1
        self.diameter.submit("authenticate", st.identity, bytes(auth.mac),
                             authenticated_data=ha.auth_data(msg, auth), node_address=st.address,
                             nas_ip_address=self.addr, timeout=self.cfg.msm.timeout,
                             on_done=lambda ans, err: self._on_answer(st, ans, err), via=self.via)

    def _on_answer(self, st: NodeState, ans, err, verified_cert=None, peer_nonce=b"") -> None:
        if self.nodes.get(st.address) is not st:
            return  # superseded by a newer hello
        if err is not None:
            self.counters["msm_unavailable"] += 1
            return self._decide_refused(st, "msm_unavailable", str(err), count=False)
        if ans.ok:
            routes = [(r.prefix, r.gateway, r.metric) for r in ans.routes]
            st.filters = [f.to_avp_text() for f in ans.filters]
            self._grant(st, "member", routes, ans.filters, peer_nonce=peer_nonce)
            return
        reason = ans.reason or f"result {ans.result_code}"
        if reason == "unknown user" and self.cfg.visitors.enabled:
            fa = str(self.cfg.visitors.fa_address)
            st.reason = reason
            self._grant(st, "visitor", [("0.0.0.0/0", fa, 1)], None, peer_nonce=peer_nonce)
            return
        self._decide_refused(st, "rejected_by_msm", reason)

    # ------------------------------------------------------------------ certificate
    def _cert_hello(self, msg: RREP, cauth: ha.CertAuthExt, st: NodeState) -> None:
        st.method = "certificate"
        st.identity = cauth.identity.decode(errors="replace")
        try:
            self.replay.check(st.identity, cauth.ts_ms, cauth.nonce)
            sig = ha.join_blob(msg, ha.KIND_SIG)
            if not sig:
                raise cr.CredentialError("no_signature")
            cert_der = ha.join_blob(msg, ha.KIND_CERT)
        except (cr.CredentialError, ha.ExtensionError) as exc:
            return self._decide_refused(st, getattr(exc, "reason", "malformed"), str(exc))
        signed = ha.signed_data(msg)
        nonce = bytes(cauth.nonce)
        if cert_der is not None and self.cfg.cert_source == "hello":
            return self._check_cert_then_authorize(st, cert_der, bytes(cauth.fingerprint), sig,
                                                   signed, nonce)
        self.counters[f"cert_fetch_{self.cfg.cert_source}"] += 1
        if self.cfg.cert_source == "diameter":
            # claim 56: one AUTHORIZE_ONLY gives the certificate and (if it checks) the policy
            def done(ans, err):
                if err is not None or ans is None or not ans.certificate_pem:
                    if err is None and ans is not None and not ans.ok and not ans.certificate_pem:
                        return self._on_answer(st, ans, None)
                    return self._on_answer(st, None, err or RuntimeError("no certificate"))
                if self._verify(st, ans.certificate_pem.encode(), bytes(cauth.fingerprint),
                                sig, signed):
                    self._on_answer(st, ans, None, peer_nonce=nonce)
            self.counters["diameter_requests"] += 1
            self.diameter.submit("authorize", st.identity, node_address=st.address,
                                 nas_ip_address=self.addr, want_certificate=True,
                                 timeout=self.cfg.msm.timeout, on_done=done, via=self.via)
            return
        # claim 55: DNS (TXT under the node's name), a blocking call of ~1 ms on the LAN
        try:
            pem = self.dns_fetch(st.identity) if self.dns_fetch else None
        except Exception as exc:  # resolver trouble is "MSM unavailable", not a forgery
            pem = None
            log.debug("DNS certificate fetch for %s failed: %s", st.identity, exc)
        if not pem:
            return self._decide_refused(st, "no_certificate", "DNS had no certificate")
        self._check_cert_then_authorize(st, pem, bytes(cauth.fingerprint), sig, signed, nonce)

    def _verify(self, st: NodeState, cert_data: bytes, fp: bytes, sig: bytes,
                signed: bytes) -> bool:
        try:
            cert = cr.load_cert(cert_data)
            if cr.fingerprint(cert) != fp:
                raise cr.CredentialError("fingerprint_mismatch")
            cr.verify_cert(cert, self.ca)
            if st.identity.lower() not in cr.cert_identity(cert):
                raise cr.CredentialError("name_mismatch", f"{st.identity} not in certificate")
            cr.verify_signature(cert, sig, signed)
        except cr.CredentialError as exc:
            self._decide_refused(st, exc.reason, str(exc))
            return False
        return True

    def _check_cert_then_authorize(self, st, cert_data, fp, sig, signed, nonce) -> None:
        if not self._verify(st, cert_data, fp, sig, signed):
            return
        self.counters["diameter_requests"] += 1
        self.diameter.submit("authorize", st.identity, node_address=st.address,
                             nas_ip_address=self.addr, want_certificate=False,
                             timeout=self.cfg.msm.timeout,
                             on_done=lambda a, e: self._on_answer(st, a, e, peer_nonce=nonce),
                             via=self.via)

    # ------------------------------------------------------------------ decisions
    @staticmethod
    def _route3(text: str) -> tuple[str, str, int]:
        p, gw, m = text.split()
        return p, gw, int(m)

    def _grant(self, st: NodeState, verdict: str, routes, filters, peer_nonce: bytes = b"") -> None:
        if verdict == "member":
            ok = self.policy.member(st.address, filters) if filters is not None else True
        else:
            ok = self.policy.visitor(st.address, str(self.cfg.visitors.fa_address))
        if not ok:
            return self._decide_refused(st, "policy_install_failed", "nft refused the filter")
        st.verdict, st.routes, st.decided_at = verdict, routes, time.monotonic()
        self.counters[f"attached_{verdict}"] += 1
        self.attach_times[st.method].append(st.attach_ms or 0.0)
        log.info("%s %s (%s) attached as %s in %.1f ms: routes %s", st.method, st.identity,
                 st.address, verdict, st.attach_ms or 0, routes)
        self._reply(st, verdict, routes, peer_nonce)

    def _decide_refused(self, st: NodeState, reason: str, detail: str, count: bool = True) -> None:
        st.verdict, st.reason, st.decided_at = "refused", reason, time.monotonic()
        if count:
            self.refuse_count(reason, st.address, f"{st.identity or '?'}: {detail}")
        self.policy.refuse(st.address)

    def refuse_count(self, reason: str, src: str, detail: str) -> None:
        self.counters["refused"] += 1
        self.counters[f"refused_{reason}"] += 1
        log.warning("refused hello from %s: %s (%s)", src, reason, detail)

    def _reply(self, st: NodeState, verdict: str, routes, peer_nonce: bytes) -> None:
        v = ha.VERDICT_MEMBER if verdict == "member" else ha.VERDICT_VISITOR
        exts: list = []
        if st.method == "certificate" and self.own_cert is not None:
            exts.append(ha.CertAuthExt(ts_ms=cr.now_ms(), nonce=cr.new_nonce(),
                                       peer_nonce=peer_nonce, flags=ha.FLAG_CERT_CARRIED,
                                       fingerprint=cr.fingerprint(self.own_cert),
                                       identity=self.cfg.identity.encode()))
        exts.append(ha.routes_ext(v, routes))
        msg = hello(self.addr, 0, 0, exts)
        if st.method == "certificate" and self.own_key is not None:
            msg.extensions += ha.split_blob(ha.KIND_SIG, cr.sign(self.own_key, ha.signed_data(msg)))
            msg.extensions += ha.split_blob(ha.KIND_SINK_CERT, cr.der(self.own_cert))
        self.counters["replies_sent"] += 1
        self.send(bytes(msg), st.address, st.iface)

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        def stats(v: list[float]) -> dict:
            s = sorted(v)
            return {"n": len(s), "median_ms": s[len(s) // 2] if s else None,
                    "max_ms": s[-1] if s else None}
        return {
            "counters": dict(self.counters),
            "nodes": {a: {"identity": n.identity, "method": n.method, "verdict": n.verdict,
                          "reason": n.reason, "routes": n.routes, "filters": n.filters,
                          "attach_ms": n.attach_ms} for a, n in self.nodes.items()},
            "attach_ms": {k: stats(v) for k, v in self.attach_times.items()},
            "policy": {"nodes": dict(self.policy.nodes), "errors": self.policy.errors},
        }
