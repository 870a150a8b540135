"""testbed.mip.linkwatch: a carrier flap folded into one notification still counts.

The kernel's linkwatch may report a quick down-up (the lab's re-attach takes a few ms) as a
single RTM_NEWLINK that shows the link up; only its carrier-change counter moved on. Fed
crafted rtnetlink messages through a socket pair, the watch must report down + up then, and
nothing for a notification without a carrier change (e.g. an MTU change).
"""
from __future__ import annotations

import socket
import struct

from testbed.mip.linkwatch import IFF_LOWER_UP, IFINFO, NLMSG_HDR, RTM_NEWLINK, LinkWatch

IFLA_CARRIER_CHANGES = 35


def newlink(index: int, up: bool, changes: int | None) -> bytes:
    attrs = b"" if changes is None else struct.pack("=HHI", 8, IFLA_CARRIER_CHANGES, changes)
    body = IFINFO.pack(0, 1, index, 0x1 | (IFF_LOWER_UP if up else 0), 0) + attrs
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), RTM_NEWLINK, 0, 0, 0) + body


def watch() -> tuple[LinkWatch, socket.socket]:
    w = LinkWatch("lo")
    w.sock.close()
    w.sock, feed = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    w.sock.setblocking(False)
    return w, feed


def test_folded_flap_is_down_and_up():
    w, feed = watch()
    feed.send(newlink(w.index, True, 4))
    assert w.changes() == [True]          # first news of the link
    feed.send(newlink(w.index, True, 6))  # down and up folded: only the counter tells
    assert w.changes() == [False, True]
    feed.send(newlink(w.index, True, 6))  # another change of the link (no carrier change)
    assert w.changes() == []


def test_separate_notifications_are_not_doubled():
    w, feed = watch()
    feed.send(newlink(w.index, True, 2))
    w.changes()
    feed.send(newlink(w.index, False, 3))
    feed.send(newlink(w.index, True, 4))
    assert w.changes() == [False, True]
    feed.send(newlink(w.index + 1, True, 9))   # another interface
    assert w.changes() == []


def test_without_the_counter_a_folded_flap_is_invisible():
    # what the watch did before: the state alone shows no change
    w, feed = watch()
    feed.send(newlink(w.index, True, None))
    w.changes()
    feed.send(newlink(w.index, True, None))
    assert w.changes() == []
