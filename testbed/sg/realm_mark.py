"""Realm tag on delivery: which peer realm a decrypted packet came from, visible to the target.

Why: once SG-B forwards decrypted packets into M-VPN B, a target MN that talks to two
initiators with the same private address (a=10.0.0.5 in A, c=10.0.0.5 in C) cannot tell
them apart, so it cannot send each reply over the right tunnel (to SG-A or SG-C, claim 12).
The SG therefore gives each peer realm its own *source MAC address* on the LAN:

    02:<peer SG public address, 4 bytes>:00      e.g. SG-A 198.51.100.1 -> 02:c6:33:64:01:00

a locally administered unicast address that names the realm index (the peer SG's public
address) itself, so the target needs no mapping table. The MN agent (`testbed.mn`) copies
it into conntrack (`ct mark`) and routes replies by that mark (see testbed/mn/realms.py).
The IP packet is left untouched (unlike a DSCP tag, which the application would see and
which has only 6 bits).

Mechanics: the forward hook marks packets by ingress interface `rl-<peer>` (meta mark = the
peer's public address as a 32-bit number); a netdev egress hook on the LAN interface
rewrites the Ethernet source of marked packets (kernel >= 5.16, nft >= 1.0.1).
"""
from __future__ import annotations

import subprocess
from ipaddress import IPv4Address
from typing import Mapping

TABLE = "tb_realm_tag"


def realm_mac(peer_public: str) -> str:
    """The source MAC that names peer realm `peer_public` on the LAN."""
    b = IPv4Address(peer_public).packed
    return "02:" + ":".join(f"{x:02x}" for x in b) + ":00"


def realm_mark(peer_public: str) -> int:
    """The 32-bit packet/conntrack mark for a peer realm: its SG's public address."""
    return int(IPv4Address(peer_public))


def render(lan_if: str, realms: Mapping[str, str]) -> str:
    """nft text for {ingress interface rl-<peer>: peer SG public address}."""
    marks = "\n        ".join(f'iifname "{ifn}" oifname "{lan_if}" meta mark set {realm_mark(pub):#010x}'
                             for ifn, pub in sorted(realms.items()))
    macs = "\n        ".join(f"meta mark {realm_mark(pub):#010x} ether saddr set {realm_mac(pub)}"
                            for _ifn, pub in sorted(realms.items()))
    return f"""
table ip {TABLE} {{}}
delete table ip {TABLE}
table netdev {TABLE} {{}}
delete table netdev {TABLE}
table ip {TABLE} {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        {marks}
    }}
}}
table netdev {TABLE} {{
    chain egress {{
        type filter hook egress device "{lan_if}" priority 0; policy accept;
        {macs}
    }}
}}
"""


def apply(lan_if: str, realms: Mapping[str, str]) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=render(lan_if, realms), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nft ({TABLE}): {proc.stderr.strip()}")


def remove() -> None:
    for fam in ("ip", "netdev"):
        subprocess.run(["nft", "delete", "table", fam, TABLE], capture_output=True)
