"""Which AODV interfaces exist right now (polled; links are re-created when nodes move)."""
from __future__ import annotations

import socket
import struct

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


RTMGRP_LINK = 0x1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_CARRIER_CHANGES = 35
_NLMSG = struct.Struct("=IHHII")      # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")    # ifinfomsg: family, type, index, flags, change
_RTA = struct.Struct("=HH")           # rtattr: len, type


def carrier_changes(name: str) -> int | None:
    """The kernel's count of carrier changes of an interface (sysfs), None if unknown."""
    try:
        with open(f"/sys/class/net/{name}/carrier_changes") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class LinkEvents:
    """Kernel link notifications (rtnetlink RTMGRP_LINK), so that a carrier flap is seen.

    Why: a radio handover re-attaches the same interface elsewhere; its carrier drops for
    milliseconds and the name and index never change, so polling (once a second) misses it
    and the node keeps sending to a neighbour that is no longer on the link. The kernel
    sends RTM_NEWLINK for carrier changes, but its linkwatch may fold a quick down-up into
    one notification that shows the link up; the carrier-change counter it carries
    (IFLA_CARRIER_CHANGES) still tells that the carrier went away in between.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, RTMGRP_LINK))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[tuple[int, bool, int | None]]:
        """(ifindex, usable, carrier changes) per notification queued now; usable = up
        with carrier; carrier changes None when the message lacks the attribute."""
        out: list[tuple[int, bool, int | None]] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:  # ENOBUFS: notifications lost; the caller re-polls anyway
                return out
            off = 0
            while off + _NLMSG.size <= len(data):
                length, mtype, _f, _s, _p = _NLMSG.unpack_from(data, off)
                if length < _NLMSG.size or off + length > len(data):
                    break
                if mtype in (RTM_NEWLINK, RTM_DELLINK) and length >= _NLMSG.size + _IFINFO.size:
                    _fam, _t, idx, flags, _c = _IFINFO.unpack_from(data, off + _NLMSG.size)
                    usable = mtype == RTM_NEWLINK and bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
                    out.append((idx, usable, carrier_changes_attr(data, off + _NLMSG.size + _IFINFO.size, off + length)))
                off += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


def carrier_changes_attr(data: bytes, off: int, end: int) -> int | None:
    """IFLA_CARRIER_CHANGES of the RTM_NEWLINK whose attributes are data[off:end], or None
    (the kernel's count of carrier changes: it moves on even when linkwatch folds a quick
    down-up into one notification)."""
    while off + _RTA.size <= end:
        alen, atype = _RTA.unpack_from(data, off)
        if alen < _RTA.size or off + alen > end:
            return None
        if atype == IFLA_CARRIER_CHANGES and alen >= _RTA.size + 4:
            return struct.unpack_from("=I", data, off + _RTA.size)[0]
        off += (alen + 3) & ~3
    return None
