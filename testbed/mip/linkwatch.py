"""Carrier changes of one interface, from rtnetlink: a link-layer hint of movement.

Why: waiting for advertisements to time out makes every handover cost the agent timeout.
When the link loses and regains carrier (a radio handover; `lab.move(..., flap=True)`),
the mobile node forgets the agents it heard and solicits at once (RFC 5944 2.4.2 allows
any hint of movement). Without carrier changes, advertisements still work alone.

A quick flap (a few ms, as the lab's re-attach makes it) may reach us as one RTM_NEWLINK
that shows the link up: the kernel's linkwatch folds the down and the up. Its carrier-change
counter (IFLA_CARRIER_CHANGES) still moved on, so such a message counts as down + up.
"""
from __future__ import annotations

import socket
import struct

from testbed.aodv.interfaces import carrier_changes_attr

RTMGRP_LINK = 1
RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_DELADDR = 21
IFF_LOWER_UP = 0x10000
NLMSG_HDR = struct.Struct("=IHHII")
IFINFO = struct.Struct("=BxHiII")
IFADDR = struct.Struct("=BBBBI")   # family, prefixlen, flags, scope, index


class LinkWatch:
    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.index = socket.if_nametoindex(ifname)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))
        self.carrier: bool | None = None
        self.carrier_changes: int | None = None   # IFLA_CARRIER_CHANGES last seen
        #: an IPv4 address of our interface came or went since the flag was last cleared
        #: (a co-located care-of address, e.g. from DHCP: no need to poll for it)
        self.addresses_changed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def changes(self) -> list[bool]:
        """New carrier states (True = up) of our interface since the last call, in order;
        address changes of the interface set `addresses_changed`."""
        out: list[bool] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return out
            off = 0
            while off + NLMSG_HDR.size <= len(data):
                length, kind, _f, _s, _p = NLMSG_HDR.unpack_from(data, off)
                if length < NLMSG_HDR.size:
                    break
                if kind in (RTM_NEWADDR, RTM_DELADDR) and length >= NLMSG_HDR.size + IFADDR.size:
                    if IFADDR.unpack_from(data, off + NLMSG_HDR.size)[4] == self.index:
                        self.addresses_changed = True
                elif kind in (RTM_NEWLINK, RTM_DELLINK) and length >= NLMSG_HDR.size + IFINFO.size:
                    _fam, _t, index, flags, _c = IFINFO.unpack_from(data, off + NLMSG_HDR.size)
                    if index == self.index:
                        up = kind == RTM_NEWLINK and bool(flags & IFF_LOWER_UP)
                        cc = carrier_changes_attr(data, off + NLMSG_HDR.size + IFINFO.size, off + length)
                        folded = (up and self.carrier and cc is not None and self.carrier_changes is not None
                                  and cc > self.carrier_changes)
                        if folded:   # down and up again between two notifications
                            out += [False, True]
                        elif up != self.carrier:
                            out.append(up)
                        self.carrier = up
                        if cc is not None:
                            self.carrier_changes = cc
                off += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()
