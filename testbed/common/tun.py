"""TUN devices opened directly through /dev/net/tun, plus the few `ip` calls around them.

Why not python-pytun: the node image carries only the stdlib and a handful of packages, and
opening a TUN device is one ioctl. Why `ip` and not pyroute2 for moving/configuring: the
device may be moved into another network namespace (one per peer realm in an SG), and
`ip -n NS` does that in one well-known step that an operator can repeat by hand.
"""
from __future__ import annotations

import fcntl
import logging
import os
import struct
import subprocess
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16


class TunError(RuntimeError):
    """A TUN device could not be created or configured (message names the device)."""


def open_tun(ifname: str) -> int:
    """Create TUN device `ifname` (no packet-info header) and return its non-blocking fd.

    The device lives as long as the fd is open (not persistent): a crashed agent leaves
    nothing behind.
    """
    if not ifname or len(ifname) >= IFNAMSIZ:
        raise TunError(f"interface name {ifname!r}: must be 1..15 characters")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", ifname.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        raise TunError(f"cannot create TUN {ifname}: {exc}") from exc
    return fd


def run_ip(args: Sequence[str], netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip [-n NS] ARGS`; raise TunError with ip's own message on failure."""
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise TunError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    log.debug("ran %s -> %d", " ".join(cmd), proc.returncode)
    return proc


def set_sysctl(ifname: str, key: str, value: str, netns: str | None = None) -> None:
    """Write a per-interface ipv4/ipv6 sysctl (e.g. ipv4 rp_filter) in `netns` or here."""
    path = f"/proc/sys/net/{key.replace('IF', ifname)}"
    if netns is None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            log.debug("sysctl %s=%s failed: %s", path, value, exc)
        return
    subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", f"echo {value} > {path}"],
                   capture_output=True)


def configure_link(ifname: str, *, netns: str | None = None, mtu: int | None = None,
                   addresses: Iterable[str] = (), routes: Iterable[str] = (),
                   move_from_here: bool = True) -> None:
    """Move `ifname` into `netns` (if given), set MTU, addresses, bring it up, add routes.

    rp_filter is switched off on the device: inner sources from a peer realm are private
    addresses that may also exist elsewhere (that is the point of realm indexing), so a
    strict reverse-path check would drop legitimate traffic. accept_local is on: the
    userspace endpoint answers "fragmentation needed" from our public address through the
    device (RFC 2003 3.1), and that address may be local where the device lives.
    """
    if netns and move_from_here:
        run_ip(["link", "set", "dev", ifname, "netns", netns])
    set_sysctl(ifname, "ipv6/conf/IF/disable_ipv6", "1", netns)
    set_sysctl(ifname, "ipv4/conf/IF/rp_filter", "0", netns)
    set_sysctl(ifname, "ipv4/conf/IF/accept_local", "1", netns)
    if mtu:
        run_ip(["link", "set", "dev", ifname, "mtu", str(mtu)], netns)
    for addr in addresses:
        run_ip(["addr", "replace", addr, "dev", ifname], netns)
    run_ip(["link", "set", "dev", ifname, "up"], netns)
    for route in routes:
        run_ip(["route", "replace"] + route.split() + ["dev", ifname], netns)
