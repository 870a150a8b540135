"""Which AODV interfaces exist right now (polled; links are re-created when nodes move)."""
from __future__ import annotations

import socket

from pyroute2 import IPRoute

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


def current_interfaces(ipr: IPRoute, wanted: list[str], skip: set[str]
                       ) -> dict[str, tuple[int, str]]:
    """name -> (ifindex, first IPv4 address) for usable interfaces.

    `wanted` empty means: every interface that is up and has an IPv4 address, except
    loopback and those in `skip` (the buffer TUN).
    """
    out: dict[str, tuple[int, str]] = {}
    links = {}
    for l in ipr.get_links():
        name = l.get("ifname")
        # IFF_LOWER_UP follows the carrier at once; operstate lags (linkwatch, up to 1 s)
        up = bool(l["flags"] & IFF_UP) and bool(l["flags"] & IFF_LOWER_UP)
        links[l["index"]] = (name, up)
    addrs: dict[int, str] = {}
    for a in ipr.get_addr(family=socket.AF_INET):
        addrs.setdefault(a["index"], a.get("address"))
    for idx, (name, up) in links.items():
        if not up or idx not in addrs or name == "lo" or name in skip:
            continue
        if wanted and name not in wanted:
            continue
        out[name] = (idx, addrs[idx])
    return out


def local_addresses(ipr: IPRoute) -> set[str]:
    return {a.get("address") for a in ipr.get_addr(family=socket.AF_INET)}
