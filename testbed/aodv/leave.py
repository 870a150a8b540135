"""The MN's leave notice: its Mobile IP agent tells its AODV agent that it left the sinks.

Why (issue 14, claim 14): an MN that runs AODV at home and Mobile IP away keeps its
catch-all routes to AODV's buffer TUN for `handover.catchall_grace_ms` after losing its
sink, in case the move was to another sink. When the move was to a foreign network, the
Mobile IP agent knows it as soon as its registration there is accepted; one datagram on a
Unix socket lets the AODV agent withdraw the catch-alls at once instead of holding the
MN's traffic for the rest of the grace time.

Wire: one Unix datagram whose payload is exactly ``LEAVE_NOTICE`` (b"left"); anything
else is counted and dropped by the receiver.
"""
from __future__ import annotations

import os
import socket

LEAVE_NOTICE = b"left"


def open_leave_socket(path: str) -> socket.socket:
    """Bind a non-blocking Unix datagram socket at `path` (a stale file is replaced; the
    directory is made if missing, as for the status file beside it).

    Raises OSError when the directory cannot be made or written.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    sock.bind(path)
    return sock


def send_leave_notice(path: str) -> bool:
    """Send the leave notice to the AODV agent listening at `path`.

    Returns False (never raises) when nobody listens: the grace time then decides, as
    before the notice existed.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as s:
            s.sendto(LEAVE_NOTICE, path)
        return True
    except OSError:
        return False
