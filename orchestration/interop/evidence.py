"""What charon's logs and `swanctl --list-sas` say about one matrix cell, as pure functions
(unit-tested without Docker; the runner feeds them text read from the nodes).

- auth_schemes / key_type_confirmed: the signature scheme of each authentication, read from
  charon's IKE log lines (RFC 7296 2.15 AUTH payload; RFC 7427 signature schemes), e.g.
  ``authentication of '198.51.100.1' (myself) with ED25519 successful`` (5.9.1, 5.9.8 and
  6.0.1 print the same words).
- refusal_reason: which negative cell a refusal in our charon's log belongs to (exactly one).
- parse_list_sas / judge_*: the IKE_SA and CHILD_SA identities before and after each rekey
  step, to tell reauthentication, IKE_SA rekey and CHILD_SA rekey apart (RFC 7296 1.3.2,
  1.3.3, 2.8; RFC 4478 for reauthentication).
- excerpt: the log lines that explain a failure, without charon's echo of the loaded
  configuration.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Signature scheme names charon prints per certificate key type (5.9.1, 5.9.8, 6.0.1):
# RSA with RFC 7427 signature auth: RSA_EMSA_PKCS1_SHA2_256 (or RSA_EMSA_PSS_* with rsa_pss);
# ECDSA P-256: ECDSA_WITH_SHA256_DER (RFC 7427) or ECDSA-256 (classic auth method 9);
# Ed25519: ED25519; the MN-HA key of claim 24: "pre-shared key".
KEY_SCHEMES = {
    "rsa3072": r"RSA_EMSA_(PKCS1|PSS)_[A-Z0-9_]+",
    "p256": r"ECDSA_WITH_SHA(256|384|512)_DER|ECDSA-256",
    "ed25519": r"ED25519",
    "psk": r"pre-shared key",
}
_AUTH = re.compile(r"authentication of '([^']*)'( \(myself\))? with (.+?)( successful)?\s*$")


def auth_schemes(log: str, identity: str, myself: bool) -> list[str]:
    """Signature schemes of every authentication of IDENTITY in LOG, in order.

    myself=True: the lines where this charon authenticated itself as IDENTITY (it signed);
    False: the lines where it verified IDENTITY (``... successful``). Shape: ['ED25519', ...].
    """
    out = []
    for line in log.splitlines():
        m = _AUTH.search(line)
        if not m or m.group(1) != identity or bool(m.group(2)) != myself:
            continue
        if not myself and not m.group(4):
            continue
        out.append(m.group(3))
    return out


def key_type_confirmed(schemes: list[str], key_type: str) -> bool:
    """True when there was at least one authentication and every one used KEY_TYPE's scheme
    (KEY_SCHEMES). KeyError for an unknown key type."""
    want = re.compile(KEY_SCHEMES[key_type])
    return bool(schemes) and all(want.fullmatch(s) for s in schemes)


# Why our SG refused a negative cell, most specific first: the first pattern found in our
# charon's log names the cell. The certificate checks all end in "no trusted ... public key
# found"; only the SAN case has no earlier, more specific line (its certificate is valid and
# from our CA, but does not contain the identity, so charon never considers it).
OUR_REFUSALS: tuple[tuple[str, str], ...] = (
    ("no-proposal", r"received proposals unacceptable|no acceptable proposal found"),
    ("wrong-id", r"no matching peer config found"),
    ("expired", r"subject certificate invalid \(valid from"),
    ("other-ca", r"no issuer certificate found"),
    ("wrong-san", r"no trusted \S+ public key found for"),
)
# The SAN case's refusal is only that when the identity did select a peer config and a
# certificate was received (else the same line means "no certificate sent").
REFUSAL_CONTEXT = {"wrong-san": (r"selected peer config", r"received end entity cert")}
# What the stock initiator hears back (it only sees the notify; RFC 7296 3.10.1).
PEER_REFUSALS = {"no-proposal": r"NO_PROPOSAL_CHOSEN"}
PEER_REFUSAL_DEFAULT = r"AUTHENTICATION_FAILED"


def refusal_reason(our_log: str) -> tuple[str | None, str]:
    """(negative cell kind, the log line) of the first OUR_REFUSALS pattern found in our log,
    or (None, "") when none is."""
    for kind, pattern in OUR_REFUSALS:
        if not all(re.search(p, our_log) for p in REFUSAL_CONTEXT.get(kind, ())):
            continue
        for line in our_log.splitlines():
            if re.search(pattern, line):
                return kind, line.strip()
    return None, ""


def peer_refusal(kind: str) -> str:
    """The pattern the stock initiator's log must show for negative cell KIND."""
    return PEER_REFUSALS.get(kind, PEER_REFUSAL_DEFAULT)


# ---- list-sas ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSA:
    """One CHILD_SA line of ``swanctl --list-sas``: connection ``name``, unique id ``uid``,
    ``state`` (INSTALLED, REKEYED, ...), and its inbound/outbound ESP SPIs (8 hex digits;
    "" when list-sas showed none). RFC 7296 1.3.
    """
    name: str
    uid: int
    state: str
    spi_in: str = ""
    spi_out: str = ""


@dataclass(frozen=True)
class IkeSA:
    """One IKE_SA of ``swanctl --list-sas`` (parse_list_sas): connection ``name``, unique id
    ``uid``, ``state`` (ESTABLISHED, REKEYED, ...), initiator and responder IKE SPIs (16 hex
    digits, RFC 7296 3.1) and its CHILD_SAs. evidence.judge compares two of them across a
    rekey or reauthentication.
    """
    name: str
    uid: int
    state: str
    spi_i: str
    spi_r: str
    children: tuple[ChildSA, ...] = ()

    @property
    def installed_spis(self) -> frozenset[str]:
        """Inbound and outbound SPIs of the INSTALLED CHILD_SAs (hex, 8 digits each)."""
        return frozenset(s for c in self.children if c.state == "INSTALLED" for s in (c.spi_in, c.spi_out) if s)


_IKE = re.compile(r"^(\S+): #(\d+), (\w+), IKEv\d, ([0-9a-f]+)_i\*? ([0-9a-f]+)_r\*?")
_CHILD = re.compile(r"^\s+(\S+): #(\d+), reqid \d+, (\w+)")
_SPI = re.compile(r"^\s+(in|out)\s+([0-9a-f]{8})")


def parse_list_sas(text: str) -> list[IkeSA]:
    """`swanctl --list-sas` output -> IKE_SAs with their CHILD_SAs (unknown lines ignored)."""
    sas: list[dict] = []
    for line in text.splitlines():
        if m := _IKE.match(line):
            sas.append({"name": m.group(1), "uid": int(m.group(2)), "state": m.group(3),
                        "spi_i": m.group(4), "spi_r": m.group(5), "children": []})
        elif sas and (m := _CHILD.match(line)):
            sas[-1]["children"].append({"name": m.group(1), "uid": int(m.group(2)), "state": m.group(3)})
        elif sas and sas[-1]["children"] and (m := _SPI.match(line)):
            sas[-1]["children"][-1]["spi_" + m.group(1)] = m.group(2)
    return [IkeSA(**{**s, "children": tuple(ChildSA(**c) for c in s["children"])}) for s in sas]


def current(text: str, conn: str) -> IkeSA | None:
    """The newest ESTABLISHED IKE_SA of connection CONN in list-sas TEXT (make-before-break
    reauthentication briefly lists the old one too)."""
    up = [s for s in parse_list_sas(text) if s.name == conn and s.state == "ESTABLISHED"]
    return max(up, key=lambda s: s.uid) if up else None


def _describe(sa: IkeSA | None) -> str:
    if sa is None:
        return "no ESTABLISHED IKE_SA"
    return f"IKE_SA #{sa.uid} {sa.spi_i}/{sa.spi_r}, CHILD SPIs {sorted(sa.installed_spis)}"


def judge(step: str, before: IkeSA | None, after: IkeSA | None) -> str:
    """'' when AFTER is what STEP must make of BEFORE, else why not. Steps:
    - "reauth": a new IKE_SA (new SPIs) with new CHILD_SAs (RFC 4478 / RFC 7296 2.8.3:
      everything is set up again);
    - "ike-rekey": a new IKE_SA (new SPIs) that carries the same CHILD_SAs (RFC 7296 2.18);
    - "child-rekey": the same IKE_SA with new CHILD_SA SPIs (RFC 7296 2.8).
    ValueError for another step."""
    if step not in ("reauth", "ike-rekey", "child-rekey"):
        raise ValueError(f"rekey step {step!r}: choose reauth, ike-rekey or child-rekey")
    if before is None or after is None or not before.installed_spis or not after.installed_spis:
        return f"{step}: cannot tell ({_describe(before)} -> {_describe(after)})"
    same_ike = (before.uid, before.spi_i, before.spi_r) == (after.uid, after.spi_i, after.spi_r)
    new_ike = before.spi_i != after.spi_i and before.spi_r != after.spi_r and before.uid != after.uid
    new_child = not (before.installed_spis & after.installed_spis)
    same_child = before.installed_spis == after.installed_spis
    ok = {"reauth": new_ike and new_child,
          "ike-rekey": new_ike and same_child,
          "child-rekey": same_ike and new_child}[step]
    return "" if ok else f"{step} did not happen as such: {_describe(before)} -> {_describe(after)}"


# ---- excerpts --------------------------------------------------------------------------------

# charon's echo of a loaded connection at cfg level 2 ("08[CFG]   proposals = IKE:...",
# "08[CFG]   local:"): configuration, not an event.
_CONFIG_ECHO = re.compile(r"\[CFG\]\s+[\w-]+( = .*|:)\s*$")
_INTERESTING = re.compile(r"(?i)error|fail|\bno\b|NO_PROPOSAL|invalid|expired|refus|unacceptable"
                          r"|can't|unable|conflict|timeout|not found|denied|Traceback")


def excerpt(text: str, pattern: str | None = None, lines: int = 8) -> str:
    """The last LINES lines of TEXT that match PATTERN, or else that look like an error; never
    the configuration echo. Falls back to the last lines of what is left."""
    rows = [ln for ln in text.splitlines() if ln.strip() and not _CONFIG_ECHO.search(ln)]
    if pattern:
        hit = [ln for ln in rows if re.search(pattern, ln)]
        if hit:
            return "\n".join(hit[-lines:])
    keep = [ln for ln in rows if _INTERESTING.search(ln)]
    return "\n".join((keep or rows)[-lines:])
