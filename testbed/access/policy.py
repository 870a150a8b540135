"""Per-node workgroup filters at the sink, as nftables (claims 41, 49).

Why one chain per node behind a verdict map: nodes attach and leave independently; each
attach replaces exactly that node's two chains (from the node / to the node) in one
atomic `nft -f` transaction, and traffic of nodes this sink does not serve is untouched.

    table ip tb_access
      map nodes_in  { ipv4_addr : verdict }   # saddr -> jump in_<node>
      map nodes_out { ipv4_addr : verdict }   # daddr -> jump out_<node>
      chain forward { type filter hook forward priority -5; ip saddr vmap @nodes_in;
                      ip daddr vmap @nodes_out }

A member gets its MSM filters (IPFilterRule, RFC 6733 4.3.1: `in` = from the node,
`out` = to the node, `assigned` = the node) then a counted drop; a visitor only IP-IP
(protocol 4) to/from its FA (claim 49); a refused node nothing at all.
"""
from __future__ import annotations

import logging
import subprocess

from testbed.diameter.rules import Endpoint, FilterRule, parse_filter

log = logging.getLogger("access.policy")

IPIP_PROTO = 4


def chain_suffix(addr: str) -> str:
    return addr.replace(".", "_")


def _addr_match(field: str, ep: Endpoint, node: str) -> str:
    if ep.address == "any":
        return ""
    value = node if ep.address == "assigned" else ep.address
    return f"ip {field} {'!= ' if ep.negated else ''}{value} "


def _ports(field: str, ep: Endpoint) -> str:
    if not ep.ports:
        return ""
    return f"th {field} {{ {', '.join(ep.ports.split(','))} }} "


def rule_to_nft(rule: FilterRule, node: str) -> str:
    """One IPFilterRule as the body of an nft rule in the node's chain."""
    text = _addr_match("saddr", rule.src, node) + _addr_match("daddr", rule.dst, node)
    if rule.proto != "ip":
        text += f"ip protocol {int(rule.proto)} "
    elif rule.src.ports or rule.dst.ports:
        text += "meta l4proto { tcp, udp } "
    text += _ports("sport", rule.src) + _ports("dport", rule.dst)
    return text + ("accept" if rule.action == "permit" else "drop")


def member_rules(node: str, filters: list[FilterRule | str]) -> tuple[list[str], list[str]]:
    rin, rout = [], []
    for f in filters:
        rule = f if isinstance(f, FilterRule) else parse_filter(f)
        (rin if rule.direction == "in" else rout).append(rule_to_nft(rule, node))
    return rin, rout


def visitor_rules(fa: str) -> tuple[list[str], list[str]]:
    return ([f"ip daddr {fa} ip protocol {IPIP_PROTO} accept"],
            [f"ip saddr {fa} ip protocol {IPIP_PROTO} accept"])


class NftPolicy:
    """Renders and (if `apply`) installs the per-node chains with `nft -f -`."""

    def __init__(self, table: str = "tb_access", apply: bool = True, nft: str = "nft") -> None:
        self.table = table
        self.apply_enabled = apply
        self.nft = nft
        self.nodes: dict[str, str] = {}  # addr -> kind (member/visitor/refused)
        self.rendered: dict[str, tuple] = {}  # addr -> rules installed (skip identical re-installs)
        self.errors = 0
        self.last_script = ""

    def base(self) -> str:
        t = self.table
        return (f"table ip {t} {{\n"
                f"  map nodes_in {{ type ipv4_addr : verdict; }}\n"
                f"  map nodes_out {{ type ipv4_addr : verdict; }}\n"
                f"  chain forward {{ type filter hook forward priority -5; policy accept;\n"
                f"    ip saddr vmap @nodes_in\n    ip daddr vmap @nodes_out\n  }}\n}}\n")

    def node_script(self, node: str, rin: list[str], rout: list[str]) -> str:
        t, s = self.table, chain_suffix(node)
        lines = [self.base()]
        for name, rules in ((f"in_{s}", rin), (f"out_{s}", rout)):
            lines.append(f"add chain ip {t} {name}")
            lines.append(f"flush chain ip {t} {name}")
            for r in rules:
                lines.append(f"add rule ip {t} {name} {r}")
            lines.append(f"add rule ip {t} {name} counter drop")
        lines.append(f"delete element ip {t} nodes_in {{ {node} }}" if node in self.nodes else "")
        lines.append(f"delete element ip {t} nodes_out {{ {node} }}" if node in self.nodes else "")
        lines.append(f"add element ip {t} nodes_in {{ {node} : jump in_{s} }}")
        lines.append(f"add element ip {t} nodes_out {{ {node} : jump out_{s} }}")
        return "\n".join(x for x in lines if x) + "\n"

    def _run(self, script: str) -> bool:
        self.last_script = script
        if not self.apply_enabled:
            return True
        r = subprocess.run([self.nft, "-f", "-"], input=script, text=True, capture_output=True)
        if r.returncode != 0:
            self.errors += 1
            log.error("nft refused the policy: %s\n%s", r.stderr.strip(), script)
            return False
        return True

    def _install(self, node: str, kind: str, rin: list[str], rout: list[str]) -> bool:
        key = (kind, tuple(rin), tuple(rout))
        if self.rendered.get(node) == key:
            return True  # same policy already there: keep its counters
        ok = self._run(self.node_script(node, rin, rout))
        if ok:
            self.nodes[node] = kind
            self.rendered[node] = key
        return ok

    def member(self, node: str, filters: list[FilterRule | str]) -> bool:
        return self._install(node, "member", *member_rules(node, filters))

    def visitor(self, node: str, fa: str) -> bool:
        return self._install(node, "visitor", *visitor_rules(fa))

    def refuse(self, node: str) -> bool:
        return self._install(node, "refused", [], [])

    def remove(self, node: str) -> bool:
        if node not in self.nodes:
            return True
        t, s = self.table, chain_suffix(node)
        script = (f"delete element ip {t} nodes_in {{ {node} }}\n"
                  f"delete element ip {t} nodes_out {{ {node} }}\n"
                  f"delete chain ip {t} in_{s}\ndelete chain ip {t} out_{s}\n")
        ok = self._run(script)
        self.nodes.pop(node, None)
        self.rendered.pop(node, None)
        return ok

    def flush(self) -> None:
        """Remove the whole table (agent stop)."""
        if self.apply_enabled:
            subprocess.run([self.nft, "delete", "table", "ip", self.table], capture_output=True)
        self.nodes.clear()
        self.rendered.clear()
