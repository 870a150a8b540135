"""AODV messages (RFC 3561 section 5) as scapy layers on UDP port 654.

Why scapy layers: every agent in the testbed declares its wire format the same way, so
captures (tcpdump -> scapy) and the agent share one definition.

Layout (all multi-byte fields network order):
- RREQ  (type 1, 24 bytes): type, J R G D U flags (5 bits), reserved (11), hop count,
  RREQ ID, destination IP, destination seqno, originator IP, originator seqno.
- RREP  (type 2, 20 bytes): type, R A flags (2 bits), reserved (9), prefix size (5),
  hop count, destination IP, destination seqno, originator IP, lifetime (ms).
- RERR  (type 3, 4 + 8n bytes): type, N flag (1 bit), reserved (15), dest count, then n
  (unreachable destination IP, unreachable destination seqno) pairs.
- RREP-ACK (type 4, 2 bytes): type, reserved.

After the fixed part, a message may carry an extension list (RFC 3561 section 7 style:
type (8), length (8) of the data that follows, data). This project's extensions:
- 128 HANDOVER: the patent's sink handover (claims 26-39), see HandoverKind.
- 129 WEIGHT: summed administrative weight from the RREQ's originator (claims 63-66).
- 130 GRATUITOUS: marks a long-session gratuitous RREP (claims 67-70).
Other types (e.g. the authentication extension that issue 5 adds) can be registered with
register_extension(); unknown types are kept as opaque AODVExtension objects.

parse_message() is the strict entry point for bytes off the wire: it checks every length
before scapy sees the data, so a truncated or inconsistent message raises MalformedMessage
instead of being silently padded by scapy.
"""
from __future__ import annotations

import enum

from scapy.fields import (
    BitField,
    ByteEnumField,
    ByteField,
    FieldLenField,
    FlagsField,
    IntField,
    IPField,
    PacketListField,
)
from scapy.layers.inet import UDP
from scapy.packet import Packet, bind_layers

from testbed.common.extensions import Extension, ExtensionRegistry, ListItem, MalformedMessage

AODV_PORT = 654

RREQ_TYPE = 1
RREP_TYPE = 2
RERR_TYPE = 3
RREP_ACK_TYPE = 4

EXT_HANDOVER = 128
EXT_WEIGHT = 129
EXT_GRATUITOUS = 130

FIXED_LEN = {RREQ_TYPE: 24, RREP_TYPE: 20, RREP_ACK_TYPE: 2}

#: Largest value of the 8-bit Hop Count (RFC 3561 5.1, 5.2). A node adds one before it
#: stores or forwards (6.5, 6.7), so a message already at 255 cannot be used: dropped.
MAX_HOP_COUNT = 0xFF
#: Largest value of the 32-bit Lifetime in milliseconds (RFC 3561 5.2).
MAX_LIFETIME_MS = 0xFFFFFFFF
#: Largest value of a 32-bit field (RREQ ID, sequence numbers, the WEIGHT sum).
MAX_U32 = 0xFFFFFFFF


def lifetime_ms(seconds: float) -> int:
    """A lifetime in seconds as the RREP's Lifetime field: ms, clamped to [0, 2**32 - 1].

    Why clamp instead of drop: the value is ours (a remaining route time), and a longer one
    than the field holds only means "as long as can be said" (RFC 3561 5.2, 6.6.2).
    """
    return max(0, min(MAX_LIFETIME_MS, int(seconds * 1000)))


def saturating_add(a: int, b: int, limit: int = MAX_U32) -> int:
    """a + b, held at limit: for sums carried in a fixed-width field (the WEIGHT sum)."""
    return min(limit, a + b)


class HandoverKind(enum.IntEnum):
    """Roles of the HANDOVER extension in the patent's procedure (claims 27-35)."""

    ATTACH = 1      # MN hello to a (new) sink: seq = last registered seqno, addr = old sink
    REGISTERED = 2  # sink -> MN registration reply: seq = MN seqno, addr = sink
    LOCATE = 3      # new sink's RREQ for the MN (claim 30): addr = old sink
    BIND = 4        # new sink's unsolicited RREP toward old sink (claims 29/32): addr = new sink
    ACK = 5         # old sink -> MN via new sink (claim 35): seq = new MN seqno, addr = old sink
    FAILED = 6      # new sink -> MN RERR when the old sink cannot be reached (claim 35)


# ---------------------------------------------------------------- extensions
_EXTENSIONS = ExtensionRegistry("AODV")


def register_extension(ext_type: int, cls: type[Packet]) -> None:
    """Let another area (e.g. the access hellos) decode its own extension type.

    Args: ext_type: the type byte (0-255); cls: an AODVExtension subclass.
    Raises: ValueError if the type is not a byte or is already taken by another class.
    Source: RFC 3561 section 7 (extension format); the types are this project's.
    """
    _EXTENSIONS.register(cls, ext_type)


class AODVExtension(Extension, ListItem):
    """Type / length / data extension after an AODV message (RFC 3561 section 7).

    Fields: `type` (byte), `length` (byte, data bytes; None on build = computed), `data`.
    Decoding bytes with this class gives the class registered for the
    first byte, or AODVExtension itself for an unknown type (kept opaque).
    Raises (on build): ValueError for more than 255 data bytes.
    """

    name = "AODV extension"
    registry = _EXTENSIONS


class HandoverExt(AODVExtension):
    """Patent handover extension: kind, reserved, MN seqno, a sink address (10 data bytes)."""

    name = "AODV handover extension"
    data_len = 10
    fields_desc = [
        ByteField("type", EXT_HANDOVER),
        ByteField("length", None),
        ByteEnumField("kind", HandoverKind.ATTACH, {k.value: k.name for k in HandoverKind}),
        ByteField("reserved", 0),
        IntField("mn_seq", 0),
        IPField("addr", "0.0.0.0"),
    ]


class WeightExt(AODVExtension):
    """Summed administrative weight from the RREQ originator to the receiving router."""

    name = "AODV weight extension"
    data_len = 4
    fields_desc = [
        ByteField("type", EXT_WEIGHT),
        ByteField("length", None),
        IntField("weight", 0),
    ]


class GratuitousExt(AODVExtension):
    """Marks a gratuitous RREP sent by a route-reply source to keep a long session alive.

    One data byte, `reserved` (sent 0, ignored on receipt): RFC 3561 section 7 allows an
    empty extension, but Wireshark's AODV dissector marks Length 0 as malformed ("Invalid
    option length") and stops decoding there, so a pcap of a long session would not open
    clean (issue 11 section 5; the long-session capture showed it on every such RREP)."""

    name = "AODV gratuitous-RREP extension"
    data_len = 1
    fields_desc = [
        ByteField("type", EXT_GRATUITOUS),
        ByteField("length", None),
        ByteField("reserved", 0),
    ]


register_extension(EXT_HANDOVER, HandoverExt)
register_extension(EXT_WEIGHT, WeightExt)
register_extension(EXT_GRATUITOUS, GratuitousExt)


# ---------------------------------------------------------------- messages
class AODV(Packet):
    """Dispatcher: picks the message class from the first (type) byte."""

    name = "AODV"
    fields_desc = [ByteField("type", 0)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args, **kargs):
        """The class for the type octet (RREQ 1, RREP 2, RERR 3, RREP-ACK 4; RFC 3561 5),
        or this generic class for an empty buffer or an unknown type."""
        if _pkt and len(_pkt) >= 1:
            return _MESSAGES.get(_pkt[0], cls)
        return cls

    def ext(self, cls: type[Packet]) -> Packet | None:
        """First extension that is an instance of `cls` (an AODVExtension class), or None."""
        for e in getattr(self, "extensions", []) or []:
            if isinstance(e, cls):
                return e
        return None


class RREQ(AODV):
    """Route request (RFC 3561 5.1), 24 bytes + extensions.

    Fields: flags J R G D U, hop_count (hops), rreq_id, dst / orig (IPv4 dotted),
    dst_seq / orig_seq (32-bit sequence numbers), extensions (AODVExtension list).
    """

    name = "AODV RREQ"
    fields_desc = [
        ByteField("type", RREQ_TYPE),
        # Bit names from least significant: U D G R J (the RFC lists J R G D U, MSB first).
        FlagsField("flags", 0, 5, "UDGRJ"),
        BitField("reserved", 0, 11),
        ByteField("hop_count", 0),
        IntField("rreq_id", 0),
        IPField("dst", "0.0.0.0"),
        IntField("dst_seq", 0),
        IPField("orig", "0.0.0.0"),
        IntField("orig_seq", 0),
        PacketListField("extensions", [], AODVExtension),
    ]


class RREP(AODV):
    """Route reply (RFC 3561 5.2), 20 bytes + extensions; also the hello (6.9).

    Fields: flags R A, prefix_sz (bits, 0-31), hop_count (hops), dst / orig (IPv4 dotted),
    dst_seq (32-bit), lifetime (ms, 32-bit; see lifetime_ms()), extensions.
    """

    name = "AODV RREP"
    fields_desc = [
        ByteField("type", RREP_TYPE),
        FlagsField("flags", 0, 2, "AR"),  # R is the MSB, A the next bit
        BitField("reserved", 0, 9),
        BitField("prefix_sz", 0, 5),
        ByteField("hop_count", 0),
        IPField("dst", "0.0.0.0"),
        IntField("dst_seq", 0),
        IPField("orig", "0.0.0.0"),
        IntField("lifetime", 0),
        PacketListField("extensions", [], AODVExtension),
    ]


class Unreachable(ListItem):
    """One (destination, seqno) pair of a RERR."""

    name = "AODV unreachable destination"
    fields_desc = [IPField("dst", "0.0.0.0"), IntField("seq", 0)]


class RERR(AODV):
    """Route error (RFC 3561 5.3), 4 + 8n bytes + extensions.

    Fields: flags N (no delete), dest_count (n, 1-255; computed on build), unreachable
    (list of n Unreachable), extensions.
    """

    name = "AODV RERR"
    fields_desc = [
        ByteField("type", RERR_TYPE),
        FlagsField("flags", 0, 1, "N"),
        BitField("reserved", 0, 15),
        FieldLenField("dest_count", None, count_of="unreachable", fmt="B"),
        PacketListField("unreachable", [], Unreachable, count_from=lambda p: p.dest_count),
        PacketListField("extensions", [], AODVExtension),
    ]


class RREPAck(AODV):
    """Route reply acknowledgment (RFC 3561 5.4), 2 bytes + extensions."""

    name = "AODV RREP-ACK"
    fields_desc = [
        ByteField("type", RREP_ACK_TYPE),
        ByteField("reserved", 0),
        PacketListField("extensions", [], AODVExtension),
    ]


_MESSAGES: dict[int, type[Packet]] = {
    RREQ_TYPE: RREQ,
    RREP_TYPE: RREP,
    RERR_TYPE: RERR,
    RREP_ACK_TYPE: RREPAck,
}

bind_layers(UDP, AODV, dport=AODV_PORT)
bind_layers(UDP, AODV, sport=AODV_PORT)


def parse_message(data: bytes) -> Packet:
    """Strictly decode one AODV message (a UDP 654 payload) to RREQ, RREP, RERR or RREPAck.

    Every length is checked before scapy sees the bytes (RFC 3561 section 5 fixed sizes,
    section 7 extension format; the walker is testbed.common.extensions).

    Raises MalformedMessage for: empty, unknown message type, a fixed part shorter than
    its type needs (RERR: 4 + 8 * DestCount, DestCount 0 refused), an extension without
    its length byte or longer than the message, a registered extension of the wrong size
    (HANDOVER 10, WEIGHT 4, GRATUITOUS 0 data bytes), or bytes scapy cannot decode.
    Unknown extension types are kept as opaque AODVExtension objects.
    """
    if not data:
        raise MalformedMessage("empty message")
    mtype = data[0]
    if mtype not in _MESSAGES:
        raise MalformedMessage(f"unknown message type {mtype}")
    if mtype == RERR_TYPE:
        if len(data) < 4:
            raise MalformedMessage("truncated RERR header")
        count = data[3]
        if count == 0:
            raise MalformedMessage("RERR with DestCount 0")
        fixed = 4 + 8 * count
    else:
        fixed = FIXED_LEN[mtype]
    if len(data) < fixed:
        raise MalformedMessage(
            f"{_MESSAGES[mtype].__name__} needs {fixed} bytes, got {len(data)}")
    _EXTENSIONS.walk(data, fixed)
    try:
        return _MESSAGES[mtype](data)
    except Exception as exc:  # scapy raises many kinds; the caller only needs "bad"
        raise MalformedMessage(f"undecodable {_MESSAGES[mtype].__name__}: {exc}") from exc


def hello(addr: str, seq: int, lifetime_ms: int, extensions: list | None = None) -> RREP:
    """RFC 3561 6.9 hello: an RREP about ourselves, hop count 0, to be sent with TTL 1.

    Args: addr: our IPv4 address (dotted); seq: our sequence number (32-bit);
    lifetime_ms: ALLOWED_HELLO_LOSS * HELLO_INTERVAL in ms (32-bit); extensions: list.
    """
    return RREP(dst=addr, dst_seq=seq, orig=addr, hop_count=0, lifetime=lifetime_ms,
                extensions=extensions or [])


def pack_ipv4(addr: str) -> bytes:
    """Helper for tests and raw packet building."""
    return bytes(int(x) for x in addr.split("."))


__all__ = [
    "AODV", "RREQ", "RREP", "RERR", "RREPAck", "Unreachable",
    "AODVExtension", "HandoverExt", "WeightExt", "GratuitousExt", "HandoverKind",
    "register_extension", "parse_message", "MalformedMessage", "hello",
    "AODV_PORT", "EXT_HANDOVER", "EXT_WEIGHT", "EXT_GRATUITOUS", "pack_ipv4",
    "MAX_HOP_COUNT", "MAX_LIFETIME_MS", "MAX_U32", "lifetime_ms", "saturating_add",
]
