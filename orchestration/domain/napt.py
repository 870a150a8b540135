"""nftables and policy routes the compiler derives: the backbone NAPT and the SG edge.

Backbone NAPT (claim 22): private realms reach the MSM's portal and DNS, nothing else.
Realms overlap, so the ingress link names the realm: a conntrack zone per link keeps equal
private tuples apart, and the link's number in the connection mark sends the answers back
to the right SG through one routing table per realm (``ip rule fwmark N lookup 100+N``).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class NaptLink:
    """One SG's link to the backbone router: interface on the router, zone/mark number,
    the SG's end of the link and the realm behind it."""

    ifname: str
    number: int
    sg_address: ipaddress.IPv4Address
    realm: ipaddress.IPv4Network


def backbone_napt(links: list[NaptLink], inet_if: str, msm: ipaddress.IPv4Address, portal_port: int) -> str:
    """The backbone router's nftables ruleset (text for ``nft -f``)."""
    zones = "\n".join(f'        iifname "{l.ifname}" ct original zone set {l.number}' for l in links)
    marks = "\n".join(f'        iifname "{l.ifname}" ct mark set {l.number}' for l in links)
    ins = "{ " + ", ".join(f'"{l.ifname}"' for l in links) + " }"
    return f"""# Backbone router NAPT (claim 22), derived by orchestration.domain.napt: one conntrack
# zone and connection mark per realm link, answers routed back by fwmark.
table ip napt {{
    counter portal_flows {{}}
    chain zone_in {{
        type filter hook prerouting priority -300; policy accept;
{zones}
    }}
    chain mark_in {{
        type filter hook prerouting priority -150; policy accept;
{marks}
        ct direction reply meta mark set ct mark
    }}
    chain forward {{
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        iifname {ins} oifname "{inet_if}" ip daddr {msm} tcp dport {portal_port} ct state new counter name portal_flows accept
        iifname {ins} oifname "{inet_if}" ip daddr {msm} udp dport 53 accept
        iifname {ins} oifname "{inet_if}" ip daddr {msm} tcp dport 53 accept
        iifname {ins} oifname "{inet_if}" ip daddr {msm} icmp type echo-request accept
        iifname "{inet_if}" oifname "{inet_if}" accept
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        oifname "{inet_if}" ct mark != 0 masquerade
    }}
}}
"""


def backbone_rules(links: list[NaptLink]) -> list[str]:
    """Setup commands: per realm link, a fwmark rule and its table's route to the realm."""
    return [f"ip rule add pref {100 + l.number} fwmark {l.number} lookup {100 + l.number} && "
            f"ip route add {l.realm} via {l.sg_address} dev {l.ifname} table {100 + l.number}" for l in links]


def sg_edge(mvpn: str, lan_if: str, inet_if: str) -> str:
    """The SG's edge filter: its LAN reaches the Internet only through workgroup tunnels
    (the agent's own interfaces) and the portal through the NAPT link."""
    return f"""# SG of M-VPN {mvpn}: the LAN reaches the Internet only through the workgroup tunnels
# and the portal through the backbone NAPT link (derived by orchestration.domain.napt).
table ip tb_edge {{
    counter lan_to_internet {{}}
    chain forward {{
        type filter hook forward priority 5; policy accept;
        iifname "{lan_if}" oifname "{inet_if}" counter name lan_to_internet drop
    }}
}}
"""


def sg_portal_route(lan_if: str, msm: ipaddress.IPv4Address, napt_gw: ipaddress.IPv4Address, napt_if: str) -> str:
    """Setup command: the LAN's portal traffic goes to the backbone NAPT (policy route)."""
    return (f"ip rule add pref 900 iif {lan_if} to {msm} lookup 90 && "
            f"ip route add default via {napt_gw} dev {napt_if} table 90")
