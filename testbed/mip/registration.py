"""Home agent registration processing (RFC 5944 3.8), free of sockets and routes.

Why separate from ha.py: every accept/deny decision (authentication, replay, lifetime,
reverse tunnelling, deregistration) is a function of the request bytes, the MN's security
association, the binding table and the clock; tests feed bytes in and read the reply and
the binding change out. ha.py only carries out the returned action (routes, tunnel peers,
proxy ARP).
"""
from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from testbed.mip import messages as m
from testbed.mip.bindings import Binding, BindingTable
from testbed.mip.security import ReplayGuard, SecurityAssociation

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """What the HA does with one request: the reply to send and the binding change."""
    reply: bytes | None
    code: int | None
    action: str            # "bind", "deregister", "deny", "drop"
    home: str = ""
    coa: str = ""
    lifetime: int = 0
    binding: Binding | None = None
    previous: Binding | None = None
    reason: str = ""


class RegistrationProcessor:
    """Decides on registration requests for one (virtual) home agent."""

    def __init__(self, address: str, home_prefix: str, mns: dict[str, SecurityAssociation], *,
                 max_lifetime: int = 600, reverse_tunnel: str = "allowed",
                 replay_tolerance: float = 7.0, wall: Callable[[], float] = time.time,
                 bindings: BindingTable | None = None) -> None:
        if reverse_tunnel not in ("allowed", "mandatory", "refused"):
            raise ValueError(f"reverse_tunnel: {reverse_tunnel!r} is not allowed, mandatory or refused")
        self.address = address
        self.home_prefix = ipaddress.IPv4Network(home_prefix, strict=False)
        self.mns = mns
        self.max_lifetime = max_lifetime
        self.reverse_tunnel = reverse_tunnel
        self.replay = ReplayGuard(replay_tolerance)
        self.wall = wall
        self.bindings = bindings or BindingTable()
        self.counters: Counter[str] = Counter()

    def _deny(self, code: int, req, sa: SecurityAssociation | None, reason: str, ident: int | None = None) -> Decision:
        self.counters[f"denied_{m.code_name(code)}"] += 1
        self.counters["registrations_denied"] += 1
        reply = m.build_reply(code=code, lifetime=0, home=req.homeaddr, ha=req.haaddr,
                              ident=req.id if ident is None else ident,
                              spi=sa.spi if sa else None, key=sa.key if sa else None)
        log.debug("deny %s (coa %s): %s - %s", req.homeaddr, req.coaddr, m.code_name(code), reason)
        return Decision(reply=reply, code=code, action="deny", home=req.homeaddr, coa=req.coaddr,
                        reason=reason)

    def handle(self, raw: bytes, source: str) -> Decision:
        """Process one UDP 434 payload from `source`; never raises for bad input."""
        try:
            msg = m.parse_registration(raw)
        except m.MalformedMessage as exc:
            self.counters["malformed_dropped"] += 1
            log.debug("malformed from %s dropped: %s", source, exc)
            return Decision(reply=None, code=None, action="drop", reason=str(exc))
        if msg.msg_type != m.RRQ_TYPE:
            self.counters["unexpected_dropped"] += 1
            return Decision(reply=None, code=None, action="drop", reason="not a request")
        req = msg.pkt
        self.counters["requests"] += 1
        home, coa = str(req.homeaddr), str(req.coaddr)
        sa = self.mns.get(home)
        if sa is None:
            return self._deny(m.HA_MN_AUTH_FAILED, req, None, f"no security association for {home}")
        spi = m.auth_spi(msg)
        if spi is None:
            return self._deny(m.HA_MN_AUTH_FAILED, req, sa, "no MN-HA authentication extension")
        if spi != sa.spi:
            return self._deny(m.HA_MN_AUTH_FAILED, req, sa, f"SPI {spi} is not {sa.spi}")
        if not m.verify_auth(msg, sa.key):
            return self._deny(m.HA_MN_AUTH_FAILED, req, sa, "authenticator does not match")
        if str(req.haaddr) != self.address:
            return self._deny(m.HA_UNKNOWN_HA, req, sa, f"HA address {req.haaddr} is not {self.address}")
        if not self.replay.check(home, req.id, self.wall()):
            return self._deny(m.HA_ID_MISMATCH, req, sa, "identification outside tolerance or replayed",
                              ident=ReplayGuard.mismatch_id(req.id, self.wall()))
        if ipaddress.IPv4Address(home) not in self.home_prefix:
            return self._deny(m.HA_PROHIBITED, req, sa, f"{home} outside home prefix {self.home_prefix}")
        flags = int(req.flags)
        deregister = req.lifetime == 0 or coa == home
        if not deregister:
            if flags & m.F_T and self.reverse_tunnel == "refused":
                return self._deny(m.HA_REVERSE_TUNNEL_UNAVAILABLE, req, sa, "reverse tunnelling refused")
            if not flags & m.F_T and self.reverse_tunnel == "mandatory":
                return self._deny(m.HA_REVERSE_TUNNEL_MANDATORY, req, sa, "T bit not set")
            if flags & (m.F_M | m.F_G):
                return self._deny(m.HA_ENCAP_UNAVAILABLE, req, sa, "only IP-in-IP encapsulation")
        self.replay.accept(home, req.id)
        code = m.ACCEPTED_NO_SIMULTANEOUS if flags & m.F_S else m.ACCEPTED
        if deregister:
            old = self.bindings.remove(home)
            self.counters["deregistrations"] += 1
            self.counters["registrations_accepted"] += 1
            reply = m.build_reply(code=code, lifetime=0, home=home, ha=self.address, ident=req.id,
                                  spi=sa.spi, key=sa.key)
            log.debug("deregister %s (was at %s)", home, old.coa if old else None)
            return Decision(reply=reply, code=code, action="deregister", home=home, coa=coa,
                            previous=old, reason="lifetime 0 or care-of address = home address")
        lifetime = min(int(req.lifetime), self.max_lifetime)
        b, old = self.bindings.update(home, coa, lifetime, req.id, flags, source)
        self.counters["registrations_accepted"] += 1
        if old is not None and old.coa == coa:
            self.counters["re_registrations"] += 1
        reply = m.build_reply(code=code, lifetime=lifetime, home=home, ha=self.address,
                              ident=req.id, spi=sa.spi, key=sa.key)
        log.debug("bind %s -> %s for %ds (%s)", home, coa, lifetime,
                  "renewal" if old and old.coa == coa else "new care-of address")
        return Decision(reply=reply, code=code, action="bind", home=home, coa=coa, lifetime=lifetime,
                        binding=b, previous=old, reason="accepted")
