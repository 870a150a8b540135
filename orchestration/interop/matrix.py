"""The interop matrix: what is tested (releases, roles, proposals, key types), what each
release can do, and one cell's result, rendered as Markdown and HTML (issue 12).

Rows are (peer release, role), columns (proposal, certificate key type). A cell is
``pass``, ``fail`` (with the first check that failed and the log excerpts explaining it),
``unsupported`` ("not supported by <release>") or ``n/a`` (the role does not use that
column, e.g. claim 24's IPsec authenticates with the MN-HA key, not a certificate).
Only ``pass`` and ``fail`` cells were tested; ``counts`` keeps the other two apart.
"""
from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass, field
from typing import Iterable

# --- what is tested ---------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """An IKE proposal and the ESP proposal that goes with it (strongSwan syntax)."""
    ike: str
    esp: str
    needs: tuple[str, ...]          # features a release must have (see FEATURE_SINCE)


PROPOSALS: dict[str, Proposal] = {
    "aes128gcm16-prfsha256-ecp256": Proposal("aes128gcm16-prfsha256-ecp256", "aes128gcm16",
                                             ("aes-gcm", "ecp256")),
    "aes256-sha256-modp3072": Proposal("aes256-sha256-modp3072", "aes256-sha256", ("modp3072",)),
    "chacha20poly1305-prfsha256-curve25519": Proposal("chacha20poly1305-prfsha256-curve25519",
                                                      "chacha20poly1305",
                                                      ("chacha20poly1305", "curve25519")),
}
# The negative "nothing in common" cell offers this; our SG accepts none of it.
NO_COMMON_PROPOSAL = Proposal("aes192-sha384-ecp384", "aes192-sha384", ())

KEY_FEATURE = {"rsa3072": "rsa", "p256": "ecdsa", "ed25519": "ed25519"}
KEY_TYPES = tuple(KEY_FEATURE)
PSK = "psk"   # the column of claim 24's IPsec, which authenticates with the MN-HA key

ROLES = {
    "mn": "stock initiating MN -> our SG (claims 7-11)",
    "sg": "our MN agent -> stock responder SG (claim 12)",
    "ha": "our MN on a CCoA -> stock home agent IPsec (claim 24)",
}
NEGATIVES = {
    "wrong-san": "identity SG-A, but a certificate whose subjectAltName names another SG",
    "wrong-id": "identity and certificate subjectAltName both naming another SG",
    "expired": "expired certificate",
    "other-ca": "certificate from another CA",
    "no-proposal": "proposal with nothing in common",
}

# First strongSwan release with each feature in charon + kernel-libipsec, from strongSwan's
# NEWS/ChangeLog: ChaCha20/Poly1305 5.3.0 (chapoly/openssl), Curve25519 and Ed25519 5.5.2
# (curve25519 plugin; openssl plugin from 5.7.0 with OpenSSL >= 1.1.1), AES-GCM and
# ECDSA/ECP since 4.x, MODP-3072 and RSA since the beginning.
FEATURE_SINCE: dict[str, tuple[int, ...]] = {
    "aes-gcm": (4, 4, 0), "ecp256": (4, 4, 0), "modp3072": (4, 0, 0),
    "chacha20poly1305": (5, 3, 0), "curve25519": (5, 5, 2),
    "rsa": (4, 0, 0), "ecdsa": (4, 4, 0), "ed25519": (5, 5, 2),
}
# What each Debian suite ships (checked in the built images: `dpkg -l strongswan-charon`).
SUITE_RELEASE = {"bullseye": "5.9.1", "bookworm": "5.9.8", "trixie": "6.0.1"}
# Names in `swanctl --list-algs` of the algorithms each feature needs (runtime cross-check).
FEATURE_ALGS = {"aes-gcm": "AES_GCM_16", "ecp256": "ECP_256", "modp3072": "MODP_3072",
                "chacha20poly1305": "CHACHA20_POLY1305", "curve25519": "CURVE_25519"}


def version(release: str) -> tuple[int, ...]:
    """'5.9.8' -> (5, 9, 8); ValueError for anything else."""
    parts = tuple(int(x) for x in release.split("."))
    if len(parts) != 3:
        raise ValueError(f"strongSwan release {release!r}: expected X.Y.Z")
    return parts


def missing_features(release: str, proposal: str, key_type: str) -> list[str]:
    """Features of (proposal, key type) that strongSwan RELEASE lacks ([] = supported)."""
    needs = list(PROPOSALS[proposal].needs) + [KEY_FEATURE[key_type]]
    v = version(release)
    return [f for f in needs if v < FEATURE_SINCE[f]]


def listed_algs(list_algs: str) -> set[str]:
    """Algorithm names in `swanctl --list-algs` output ("  AES_GCM_16[openssl] ECP_256[...]"
    -> {"AES_GCM_16", "ECP_256"}); exact names, so ECP_256_BP is not ECP_256."""
    return set(re.findall(r"([A-Z][A-Z0-9_]*)\[", list_algs))


def algs_disagree(release: str, list_algs: str) -> list[str]:
    """Features on which the knowledge (FEATURE_SINCE) and RELEASE's `swanctl --list-algs`
    disagree, both ways: claimed but not listed, or listed although the knowledge would mark
    cells needing it "not supported" (the runtime check that the knowledge is right). Key
    types have no list-algs entry and are not cross-checked."""
    v, listed = version(release), listed_algs(list_algs)
    return [f for f, alg in FEATURE_ALGS.items() if (v >= FEATURE_SINCE[f]) != (alg in listed)]


# --- results ------------------------------------------------------------------------------


@dataclass
class Cell:
    """One cell. status: pass | fail | unsupported | n/a. steps: check name -> passed (True or
    False), a count ("rekey lost": packets) or "n/a" for a check the role has not."""
    suite: str
    role: str
    column: str                      # "<proposal> / <key type>" or a negative's name
    status: str
    reason: str = ""
    steps: dict[str, bool | int | str] = field(default_factory=dict)
    setup_ms: float | None = None
    logs: dict[str, str] = field(default_factory=dict)   # "peer"/"ours" -> excerpt

    def to_json(self) -> dict:
        """The cell as a JSON-ready dict of all its fields (dataclasses.asdict); one entry of
        matrix.json's ``cells``.
        """
        return asdict(self)


def column(proposal: str, key_type: str) -> str:
    """A matrix column label: "<proposal> / <key type>", e.g. "aes256-sha256-modp3072 / p256"."""
    return f"{proposal} / {key_type}"


def counts(cells: Iterable[Cell]) -> dict[str, dict[str, int]]:
    """Per row label ("trixie (6.0.1) as mn"): how many cells pass, fail, are n/a and are
    not supported. n/a and unsupported cells were not tested and count as neither."""
    out: dict[str, dict[str, int]] = {}
    for c in cells:
        row = out.setdefault(_row_label(c.suite, c.role), {"pass": 0, "fail": 0, "n/a": 0, "unsupported": 0})
        row[c.status] = row.get(c.status, 0) + 1
    return out


def _short(cell: Cell) -> str:
    if cell.status == "pass":
        if cell.reason.startswith("refused"):   # a negative cell: refused as it must be
            return "pass: refused"
        return "pass" + (f" ({cell.setup_ms:.0f} ms)" if cell.setup_ms is not None else "")
    if cell.status == "unsupported":
        return f"not supported by {cell.reason}"
    if cell.status == "n/a":
        return "n/a"
    return f"FAIL: {cell.reason}"


def _column_order(col: str, seen: int) -> tuple:
    """Proposals in PROPOSALS order, key types then PSK within each, negatives last."""
    if " / " in col:
        p, k = col.split(" / ", 1)
        props, keys = list(PROPOSALS), list(KEY_TYPES) + [PSK]
        return (0, props.index(p) if p in props else 99, keys.index(k) if k in keys else 99, seen)
    negs = list(NEGATIVES)
    return (1, negs.index(col) if col in negs else 99, 0, seen)


def _grid(cells: Iterable[Cell]) -> tuple[list[tuple[str, str]], list[str], dict]:
    cells = list(cells)
    rows, cols, by = [], [], {}
    for c in cells:
        row = (c.suite, c.role)
        if row not in rows:
            rows.append(row)
        if c.column not in cols:
            cols.append(c.column)
        by[(row, c.column)] = c
    cols = [c for _, c in sorted((_column_order(c, i), c) for i, c in enumerate(cols))]
    return rows, cols, by


def _row_label(suite: str, role: str) -> str:
    return f"{suite} ({SUITE_RELEASE.get(suite, '?')}) as {role}"


def render_markdown(cells: Iterable[Cell]) -> str:
    """A Markdown table (rows = release x role, columns = proposal x key type and the
    negative cells), followed by the log excerpts of every failing cell."""
    cells = list(cells)
    rows, cols, by = _grid(cells)
    out = ["| peer release x role | " + " | ".join(cols) + " |",
           "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        out.append(f"| {_row_label(*row)} | " + " | ".join(
            _short(by[(row, c)]).replace("|", "/") if (row, c) in by else "" for c in cols) + " |")
    out += ["", "Cells per row (n/a and not supported were not tested): " + "; ".join(
        f"{row} {n['pass']} pass, {n['n/a']} n/a, {n['unsupported']} not supported, {n['fail']} fail"
        for row, n in counts(cells).items()) + "."]
    notes = sorted({f"{c.role}: {c.reason}" for c in cells if c.status == "n/a" and c.reason})
    if notes:
        out += ["", "n/a: " + "; ".join(notes) + "."]
    failing = [c for c in cells if c.status == "fail"]
    for c in failing:
        out += ["", f"**{_row_label(c.suite, c.role)}, {c.column}: {c.reason}**"]
        for side, text in c.logs.items():
            out += [f"{side} log:", "```", text.strip() or "(nothing logged)", "```"]
    return "\n".join(out) + "\n"


def render_html(cells: Iterable[Cell], title: str = "strongSwan interop matrix") -> str:
    """The same table as a standalone HTML page (pass green, fail red, others grey)."""
    cells = list(cells)
    rows, cols, by = _grid(cells)
    colour = {"pass": "#c8f0c8", "fail": "#f5b5b5", "unsupported": "#e0e0e0", "n/a": "#f0f0f0"}
    esc = html.escape
    out = [f"<!doctype html><meta charset=utf-8><title>{esc(title)}</title>",
           "<style>td,th{border:1px solid #999;padding:4px;font:13px sans-serif}"
           "table{border-collapse:collapse}pre{font-size:11px}</style>",
           f"<h1>{esc(title)}</h1><table><tr><th>peer release x role</th>"
           + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>"]
    for row in rows:
        tds = []
        for c in cols:
            cell = by.get((row, c))
            if cell is None:
                tds.append("<td></td>")
                continue
            logs = "".join(f"<details><summary>{esc(k)} log</summary><pre>{esc(v)}</pre></details>"
                           for k, v in cell.logs.items()) if cell.status == "fail" else ""
            tds.append(f'<td style="background:{colour.get(cell.status, "#fff")}" '
                       f'title="{esc(cell.reason, quote=True)}">{esc(_short(cell))}{logs}</td>')
        out.append(f"<tr><th>{esc(_row_label(*row))}</th>{''.join(tds)}</tr>")
    out.append("</table>")
    return "\n".join(out) + "\n"
