"""Mobility security associations and timestamp-based replay protection (RFC 5944 5.7).

Why timestamps and not nonces: the RFC requires timestamp support, and it needs no state
beyond the last accepted identification per MN, so a restarted MN can register at once.
The identification is a 64-bit NTP-format time (seconds since 1900 in the high 32 bits,
fraction in the low 32 bits). The HA accepts it if it is within `tolerance` seconds of its
own clock AND greater than the last identification accepted for that MN; otherwise it
replies 133 (identification mismatch) with its own time in the high 32 bits, so the MN can
correct its clock offset and retry (RFC 5944 5.7.1).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_now(now: float | None = None) -> int:
    t = time.time() if now is None else now
    sec = int(t) + NTP_EPOCH_OFFSET
    frac = int((t - int(t)) * (1 << 32)) & 0xFFFFFFFF
    return ((sec & 0xFFFFFFFF) << 32) | frac


def ntp_seconds(ident: int) -> float:
    """Unix time of an NTP-format identification."""
    return (ident >> 32) - NTP_EPOCH_OFFSET + (ident & 0xFFFFFFFF) / (1 << 32)


@dataclass
class SecurityAssociation:
    """One MN-HA mobility security association: SPI, key, algorithm, replay method."""
    spi: int
    key: bytes
    algorithm: str = "hmac-md5"
    replay: str = "timestamps"


class ReplayGuard:
    """Timestamp replay protection: within tolerance of our clock and strictly increasing."""

    def __init__(self, tolerance: float = 7.0) -> None:
        self.tolerance = tolerance
        self.last: dict[str, int] = {}

    def check(self, home: str, ident: int, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if abs(ntp_seconds(ident) - now) > self.tolerance:
            return False
        return ident > self.last.get(home, 0)

    def accept(self, home: str, ident: int) -> None:
        self.last[home] = ident

    @staticmethod
    def mismatch_id(ident: int, now: float | None = None) -> int:
        """Identification for a 133 reply: our time high, the MN's low 32 bits."""
        return (ntp_now(now) & 0xFFFFFFFF00000000) | (ident & 0xFFFFFFFF)


class ClockOffset:
    """MN side: the offset to add to our clock, learnt from a 133 reply."""

    def __init__(self) -> None:
        self.offset = 0.0

    def ident(self) -> int:
        return ntp_now(time.time() + self.offset)

    def learn(self, reply_ident: int) -> None:
        self.offset = (reply_ident >> 32) - NTP_EPOCH_OFFSET - time.time() + 0.5
