"""The realm-indexed workgroup filter (claims 2, 6) as an nftables table of its own.

A row says: traffic that arrived through the tunnel of peer SG `peer_sg_public` (the realm
index) from private address `initiator_private` may go to `targets`. Private addresses
alone are ambiguous (two M-VPNs may both have a 10.0.0.5), so every rule is qualified by
the ingress interface, which is the peer's own tunnel interface (see testbed.tunnel).

Shape of the ruleset (one table, nothing outside it is touched):

    chain forward { type filter hook forward priority 0; policy accept;
                    iifname vmap { "tun-A" : jump from_A, "tun-C" : jump from_C } }
    chain from_A  { ip saddr 10.0.0.5 ip daddr { 10.0.0.7 } counter name "r_..." accept
                    counter name "drop_A" drop }

Traffic from a tunnel without a row is dropped and counted on that peer's drop counter;
traffic from other interfaces is not this filter's business. Every row has a named
counter. Updates are one `nft -f` transaction (flush the chains, add/delete counters,
re-add rules), so there is never a moment without a filter, and counters of rows that
stay keep their values.
"""
from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Iterable, Sequence

log = logging.getLogger(__name__)


class FilterError(RuntimeError):
    """nft refused the ruleset (message carries nft's own error)."""


@dataclass(frozen=True)
class FilterRow:
    """One row of the workgroup filter table, as the MSM portal serves it."""
    peer_sg_public: str
    initiator_private: str
    targets: tuple[str, ...]
    initiator_fqdn: str = ""
    initiator_mvpn: str = ""  # informative; names an auto-created peer tunnel

    @classmethod
    def from_json(cls, d: dict) -> "FilterRow":
        """Build a row from the portal's JSON; ValueError names the bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"row: expected an object, got {type(d).__name__}")
        peer = _addr_field(d, "peer_sg_public")
        init = _addr_field(d, "initiator_private")
        targets = d.get("targets", [])
        if not isinstance(targets, list):
            raise ValueError("row.targets: expected a list of addresses")
        if not all(isinstance(t, str) for t in targets):
            raise ValueError("row.targets: every target must be an address string")
        try:
            tg = tuple(sorted({str(IPv4Address(t)) for t in targets}, key=IPv4Address))
        except ValueError as exc:
            raise ValueError(f"row.targets: {exc}") from None
        fqdn = d.get("initiator_fqdn") or ""
        return cls(peer, init, tg, str(fqdn), str(d.get("initiator_mvpn") or ""))

    @property
    def key(self) -> tuple[str, str]:
        return (self.peer_sg_public, self.initiator_private)


def _addr_field(d: dict, name: str) -> str:
    """An IPv4 address given as a string (ints would be accepted by IPv4Address)."""
    if name not in d:
        raise ValueError(f"row.{name}: missing")
    v = d[name]
    if not isinstance(v, str):
        raise ValueError(f"row.{name}: expected an address string, got {type(v).__name__}")
    try:
        return str(IPv4Address(v))
    except ValueError as exc:
        raise ValueError(f"row.{name}: {exc}") from None


def _hex(addr: str) -> str:
    return IPv4Address(addr).packed.hex()


def row_counter_name(row: FilterRow) -> str:
    """Deterministic counter name for a row: r_<peer hex>_<initiator hex>."""
    return f"r_{_hex(row.peer_sg_public)}_{_hex(row.initiator_private)}"


def drop_counter_name(peer_public: str) -> str:
    return f"drop_{_hex(peer_public)}"


def merge_rows(rows: Iterable[FilterRow]) -> list[FilterRow]:
    """Merge rows with the same (peer, initiator) key by uniting their targets."""
    merged: dict[tuple[str, str], FilterRow] = {}
    for r in rows:
        if r.key in merged:
            old = merged[r.key]
            tg = tuple(sorted(set(old.targets) | set(r.targets), key=IPv4Address))
            merged[r.key] = FilterRow(r.peer_sg_public, r.initiator_private, tg,
                                      old.initiator_fqdn or r.initiator_fqdn,
                                      old.initiator_mvpn or r.initiator_mvpn)
        else:
            merged[r.key] = r
    return sorted(merged.values(), key=lambda r: (IPv4Address(r.peer_sg_public),
                                                   IPv4Address(r.initiator_private)))


@dataclass
class WorkgroupFilter:
    """Renders rows to nftables and reads back their counters.

    peer_ifaces: {peer SG public address: name of that peer's tunnel interface as seen in
    the namespace where the filter runs}. hooks: the base chains to filter in ("forward",
    and "input" if targets may live on the SG itself). always_allow: nft expressions
    accepted from every tunnel before the rows; `{peer}` is replaced by the peer SG's
    address (e.g. "ip saddr {peer} udp sport {{ 500, 4500 }}" lets IKE answers of the
    peer SG reach our own initiating MNs).
    """
    peer_ifaces: dict[str, str] = field(default_factory=dict)
    table: str = "tb_workgroup"
    hooks: Sequence[str] = ("forward",)
    priority: int = 0
    always_allow: Sequence[str] = ()
    nft_cmd: Sequence[str] = ("nft",)
    rows: list[FilterRow] = field(default_factory=list)
    version: int | None = None
    skipped_rows: list[FilterRow] = field(default_factory=list)

    # ---- rendering ---------------------------------------------------------------------
    def _peer_chain(self, peer: str) -> str:
        return f"from_{_hex(peer)}"

    def render(self, rows: Iterable[FilterRow], existing_counters: Iterable[str] = ()) -> str:
        """The `nft -f` text that makes the table exactly what `rows` say (one transaction)."""
        rows = merge_rows(rows)
        t = f"ip {self.table}"
        peers = sorted(self.peer_ifaces, key=IPv4Address)
        out = [f"table {t} {{}}"]
        chains = [f"{h}" for h in self.hooks] + [self._peer_chain(p) for p in peers]
        # Empty (flush) every chain that exists and drop chains of peers that left, so the
        # new content replaces the old in the same transaction.
        out.append(f"flush table {t}")
        wanted_counters = [row_counter_name(r) for r in rows if r.peer_sg_public in self.peer_ifaces]
        wanted_counters += [drop_counter_name(p) for p in peers]
        for h in self.hooks:
            out.append(f"add chain {t} {h} {{ type filter hook {h} priority {self.priority}; "
                       f"policy accept; }}")
        for p in peers:
            out.append(f"add chain {t} {self._peer_chain(p)}")
        for c in wanted_counters:
            out.append(f"add counter {t} {c}")
        # chains and counters no longer wanted
        for c in sorted(set(existing_counters) - set(wanted_counters)):
            out.append(f"delete counter {t} {c}")
        for chain in sorted(set(self._existing_chains) - set(chains)):
            out.append(f"delete chain {t} {chain}")
        if peers:
            vmap = ", ".join(f'"{self.peer_ifaces[p]}" : jump {self._peer_chain(p)}' for p in peers)
            for h in self.hooks:
                out.append(f"add rule {t} {h} iifname vmap {{ {vmap} }}")
        for p in peers:
            ch = self._peer_chain(p)
            for expr in self.always_allow:
                out.append(f"add rule {t} {ch} {expr.format(peer=p)} accept")
            for r in rows:
                if r.peer_sg_public != p or not r.targets:
                    continue
                tg = ", ".join(r.targets)
                out.append(f'add rule {t} {ch} ip saddr {r.initiator_private} ip daddr {{ {tg} }} '
                           f'counter name "{row_counter_name(r)}" accept')
            out.append(f'add rule {t} {ch} counter name "{drop_counter_name(p)}" drop')
        return "\n".join(out) + "\n"

    _existing_chains: tuple[str, ...] = ()

    # ---- nft I/O -----------------------------------------------------------------------
    def _nft(self, args: Sequence[str], stdin: str | None = None) -> str:
        cmd = list(self.nft_cmd) + list(args)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FilterError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return proc.stdout

    def _list_table(self) -> list[dict]:
        try:
            out = self._nft(["-j", "list", "table", "ip", self.table])
        except FilterError:
            return []  # table does not exist yet
        return json.loads(out).get("nftables", [])

    def apply(self, rows: Iterable[FilterRow], version: int | None = None) -> None:
        """Make the kernel's table match `rows` (atomic; counters of kept rows survive)."""
        rows = merge_rows(rows)
        items = self._list_table()
        existing_counters = [i["counter"]["name"] for i in items if "counter" in i]
        self._existing_chains = tuple(i["chain"]["name"] for i in items if "chain" in i)
        text = self.render(rows, existing_counters)
        log.debug("nft ruleset:\n%s", text)
        self._nft(["-f", "-"], stdin=text)
        self.skipped_rows = [r for r in rows if r.peer_sg_public not in self.peer_ifaces]
        for r in self.skipped_rows:
            log.warning("row %s/%s: no tunnel to peer SG %s, row not installed",
                        r.peer_sg_public, r.initiator_private, r.peer_sg_public)
        self.rows = rows
        self.version = version
        log.info("workgroup filter: %d rows, %d peers (version %s)", len(rows) -
                 len(self.skipped_rows), len(self.peer_ifaces), version)

    def set_peers(self, peer_ifaces: dict[str, str]) -> None:
        """Change the peer -> interface map and re-render the current rows."""
        self.peer_ifaces = dict(peer_ifaces)
        self.apply(self.rows, self.version)

    def read_counters(self) -> dict[str, dict[str, int]]:
        """{counter name: {packets, bytes}} from `nft -j list counters`."""
        out = self._nft(["-j", "list", "counters", "table", "ip", self.table])
        res = {}
        for item in json.loads(out).get("nftables", []):
            c = item.get("counter")
            if c:
                res[c["name"]] = {"packets": c.get("packets", 0), "bytes": c.get("bytes", 0)}
        return res

    def status(self) -> dict:
        """Rows with their counters and per-peer drop counters, JSON-ready."""
        try:
            counters = self.read_counters()
        except (FilterError, ValueError) as exc:
            return {"error": str(exc), "version": self.version}
        rows = []
        for r in self.rows:
            c = counters.get(row_counter_name(r), {"packets": 0, "bytes": 0})
            rows.append({"peer_sg_public": r.peer_sg_public,
                         "ifname": self.peer_ifaces.get(r.peer_sg_public),
                         "initiator_private": r.initiator_private,
                         "initiator_fqdn": r.initiator_fqdn, "targets": list(r.targets),
                         "installed": r.peer_sg_public in self.peer_ifaces,
                         "counter": row_counter_name(r), **c})
        drops = {p: {"ifname": ifn, **counters.get(drop_counter_name(p), {"packets": 0, "bytes": 0})}
                 for p, ifn in self.peer_ifaces.items()}
        return {"version": self.version, "table": self.table, "rows": rows, "drops": drops}

    def remove(self) -> None:
        """Delete the table (agent shutdown)."""
        try:
            self._nft(["delete", "table", "ip", self.table])
        except FilterError as exc:
            log.debug("%s", exc)
