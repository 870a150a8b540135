"""Text formats carried in NASREQ answers: Framed-Route and NAS-Filter-Rule.

Why parse them: the MSM sends routes and workgroup filters as text AVPs, and the
sink (MSR) must turn them into routes it advertises and nftables rules. A rule
the sink misreads would open or close the workgroup wrongly, so both ends use
the same strict parser: the server refuses to send a rule it cannot parse and
the client drops (and reports) a rule it cannot parse.

Framed-Route (RFC 2865 section 5.22, reused by RFC 7155 section 4.4.10.5.6):
``"<prefix>/<len> <gateway> <metric>"``; gateway ``0.0.0.0`` means "the node's
own address / directly reachable". Example: ``"0.0.0.0/0 10.1.0.254 10"`` and
``"10.1.0.0/16 0.0.0.0 1"`` (home range cheaper than the default route,
claim 43).

IPFilterRule (RFC 6733 section 4.3.1), used in NAS-Filter-Rule (RFC 7155
section 4.4.9): ``action dir proto from src [ports] to dst [ports] [options]``
with action ``permit``/``deny``, dir ``in`` (from the node) / ``out`` (to the
node), proto ``ip`` or a number, addresses ``any``, ``assigned`` or
``addr[/bits]`` optionally preceded by ``!``; ports ``p``, ``p-q``, comma lists.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass


class RuleError(ValueError):
    """A route or filter string that does not follow its RFC format."""


@dataclass(frozen=True)
class Route:
    prefix: str  # e.g. "10.1.0.0/16"
    gateway: str  # "0.0.0.0" = on-link / the node's own address
    metric: int

    @property
    def is_default(self) -> bool:
        return ipaddress.ip_network(self.prefix).prefixlen == 0

    def to_avp_text(self) -> str:
        return f"{self.prefix} {self.gateway} {self.metric}"


#: Parsed rules are immutable, and a server hands the same few rules to every
#: node of an M-VPN: parse each text once. Bounded, so rules a peer sends us
#: cannot grow it (issue 11, section 4).
_RULE_CACHE = 4096


@functools.lru_cache(maxsize=_RULE_CACHE)
def parse_route(text: str) -> Route:
    parts = text.split()
    if len(parts) < 3:
        raise RuleError(f"Framed-Route {text!r}: need '<prefix> <gateway> <metric>'")
    try:
        net = ipaddress.ip_network(parts[0], strict=False)
        gw = ipaddress.ip_address(parts[1])
        metric = int(parts[2])
    except ValueError as exc:
        raise RuleError(f"Framed-Route {text!r}: {exc}") from exc
    if metric < 0:
        raise RuleError(f"Framed-Route {text!r}: metric must be >= 0")
    return Route(str(net), str(gw), metric)


_PORTS_RE = re.compile(r"^\d{1,5}(-\d{1,5})?(,\d{1,5}(-\d{1,5})?)*$")
_OPTIONS = {"frag", "ipoptions", "tcpoptions", "established", "setup", "tcpflags", "icmptypes"}


@dataclass(frozen=True)
class Endpoint:
    address: str  # "any", "assigned" or a network in CIDR form
    negated: bool = False
    ports: str = ""  # "" = all, else "80", "1000-2000", "22,80"


@dataclass(frozen=True)
class FilterRule:
    action: str  # permit | deny
    direction: str  # in (from the node) | out (to the node)
    proto: str  # "ip" or a protocol number as text
    src: Endpoint
    dst: Endpoint
    options: tuple[str, ...] = ()

    def to_avp_text(self) -> str:
        def ep(e: Endpoint) -> str:
            s = ("!" if e.negated else "") + e.address
            return s + (" " + e.ports if e.ports else "")
        text = f"{self.action} {self.direction} {self.proto} from {ep(self.src)} to {ep(self.dst)}"
        return text + ("" if not self.options else " " + " ".join(self.options))


def _endpoint(tokens: list[str], i: int, text: str) -> tuple[Endpoint, int]:
    if i >= len(tokens):
        raise RuleError(f"IPFilterRule {text!r}: missing address")
    tok = tokens[i]
    negated = tok.startswith("!")
    tok = tok[1:] if negated else tok
    if tok not in ("any", "assigned"):
        try:
            tok = str(ipaddress.ip_network(tok, strict=False))
        except ValueError as exc:
            raise RuleError(f"IPFilterRule {text!r}: bad address {tok!r}") from exc
    i += 1
    ports = ""
    if i < len(tokens) and _PORTS_RE.match(tokens[i]):
        ports = tokens[i]
        for part in ports.replace("-", ",").split(","):
            if int(part) > 65535:
                raise RuleError(f"IPFilterRule {text!r}: port {part} out of range")
        i += 1
    return Endpoint(tok, negated, ports), i


@functools.lru_cache(maxsize=_RULE_CACHE)
def parse_filter(text: str) -> FilterRule:
    tokens = text.split()
    if len(tokens) < 7:
        raise RuleError(f"IPFilterRule {text!r}: need 'action dir proto from src to dst'")
    action, direction, proto = tokens[0], tokens[1], tokens[2]
    if action not in ("permit", "deny"):
        raise RuleError(f"IPFilterRule {text!r}: action must be permit or deny")
    if direction not in ("in", "out"):
        raise RuleError(f"IPFilterRule {text!r}: direction must be in or out")
    if proto != "ip" and not (proto.isdigit() and int(proto) <= 255):
        raise RuleError(f"IPFilterRule {text!r}: proto must be 'ip' or 0-255")
    if tokens[3] != "from":
        raise RuleError(f"IPFilterRule {text!r}: expected 'from'")
    src, i = _endpoint(tokens, 4, text)
    if i >= len(tokens) or tokens[i] != "to":
        raise RuleError(f"IPFilterRule {text!r}: expected 'to'")
    dst, i = _endpoint(tokens, i + 1, text)
    options = tuple(tokens[i:])
    for opt in options:
        if opt not in _OPTIONS and not re.match(r"^[!\w,.-]+$", opt):
            raise RuleError(f"IPFilterRule {text!r}: bad option {opt!r}")
    if options and options[0] not in _OPTIONS:
        raise RuleError(f"IPFilterRule {text!r}: unknown option {options[0]!r}")
    return FilterRule(action, direction, proto, src, dst, options)
