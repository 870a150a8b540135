"""DIAMETER messages: header checks, AVP structure checks, scapy encode/decode.

Why we check before scapy parses: scapy decodes leniently (a lying AVP length
silently turns the rest of the message into padding or nonsense values). A
DIAMETER peer must instead answer a broken request with a precise Result-Code
(RFC 6733 section 7.1.5) and must know whether message framing on the TCP
stream is still intact. ``check_header`` and ``check_avps`` therefore walk the
raw bytes first and raise ``MalformedMessage`` carrying the Result-Code, the
offending AVP (for Failed-AVP) and whether the connection can continue.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from scapy.contrib import diameter as sd

from . import avps as A
from . import constants as C


class MalformedMessage(Exception):
    """A message we could not accept; says how to answer and whether to go on."""

    def __init__(self, reason: str, result_code: int, *, framing_lost: bool = False,
                 failed_avp: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result_code = result_code
        self.framing_lost = framing_lost
        self.failed_avp = failed_avp


@dataclass(frozen=True)
class Header:
    version: int
    length: int
    flags: int
    code: int
    app_id: int
    hop_by_hop: int
    end_to_end: int

    @property
    def is_request(self) -> bool:
        return bool(self.flags & C.FLAG_REQUEST)


def parse_header(data: bytes) -> Header:
    """Decode the fixed 20-byte header without judging it."""
    if len(data) < C.HEADER_LEN:
        raise MalformedMessage("short header", C.RESULT_INVALID_MESSAGE_LENGTH, framing_lost=True)
    ver_len, flags_code, app_id, hbh, e2e = struct.unpack("!IIIII", data[: C.HEADER_LEN])
    return Header(ver_len >> 24, ver_len & 0xFFFFFF, flags_code >> 24, flags_code & 0xFFFFFF,
                  app_id, hbh, e2e)


def check_length_word(first4: bytes, max_len: int = C.MAX_MESSAGE_LEN) -> int:
    """Validate version and length from the first 4 bytes; return the length.

    A bad version or length means we cannot find the next message boundary:
    the caller answers (if it can) and closes the connection.
    """
    version = first4[0]
    length = int.from_bytes(first4[1:4], "big")
    if version != C.VERSION:
        raise MalformedMessage(f"unsupported version {version}", C.RESULT_UNSUPPORTED_VERSION,
                               framing_lost=True)
    if length < C.HEADER_LEN or length % 4 or length > max_len:
        raise MalformedMessage(f"invalid message length {length}", C.RESULT_INVALID_MESSAGE_LENGTH,
                               framing_lost=True)
    return length


def check_header(h: Header) -> None:
    """Header bit rules of RFC 6733 section 3 (framing is still intact here)."""
    if h.flags & C.FLAG_RESERVED_MASK:
        raise MalformedMessage("reserved header bits set", C.RESULT_INVALID_HDR_BITS)
    if h.is_request and h.flags & C.FLAG_ERROR:
        raise MalformedMessage("request with E bit", C.RESULT_INVALID_HDR_BITS)


def check_avps(data: bytes, depth: int = 0) -> None:
    """Walk an AVP area; raise MalformedMessage on any structural fault."""
    off = 0
    n = len(data)
    while off < n:
        if n - off < 8:
            stub = (data[off:] + b"\0" * 8)[:8]
            stub = stub[:5] + (8).to_bytes(3, "big")
            raise MalformedMessage("truncated AVP header", C.RESULT_INVALID_AVP_LENGTH,
                                   failed_avp=stub)
        code, flags_len = struct.unpack("!II", data[off:off + 8])
        flags = flags_len >> 24
        length = flags_len & 0xFFFFFF
        vendor_bit = bool(flags & C.AVP_FLAG_VENDOR)
        header = 12 if vendor_bit else 8
        vendor = struct.unpack("!I", data[off + 8:off + 12])[0] if vendor_bit and n - off >= 12 else 0
        if length < header or off + length > n:
            raise MalformedMessage(f"AVP {code} has invalid length {length}",
                                   C.RESULT_INVALID_AVP_LENGTH,
                                   failed_avp=_failed_stub(code, flags, vendor))
        avp_raw = data[off:off + length]
        if flags & C.AVP_FLAG_RESERVED_MASK:
            raise MalformedMessage(f"AVP {code} has reserved flag bits", C.RESULT_INVALID_AVP_BITS,
                                   failed_avp=avp_raw)
        # The dictionary is keyed by vendor; a V bit with vendor 0 is malformed.
        if vendor_bit and vendor == 0:
            raise MalformedMessage(f"AVP {code} has V bit and vendor 0", C.RESULT_INVALID_AVP_BITS,
                                   failed_avp=avp_raw)
        fixed = A.fixed_data_length(code, vendor)
        if fixed is not None and length - header != fixed:
            raise MalformedMessage(f"{A.avp_name(code, vendor)} must carry {fixed} bytes",
                                   C.RESULT_INVALID_AVP_LENGTH,
                                   failed_avp=_failed_stub(code, flags, vendor))
        # Failed-AVP carries someone's broken AVP by design: don't judge its inside.
        if A.is_grouped(code, vendor) and not (code == C.AVP_FAILED_AVP and vendor == 0):
            if depth > 8:
                raise MalformedMessage("grouped AVPs nested too deep", C.RESULT_INVALID_AVP_VALUE,
                                       failed_avp=avp_raw)
            check_avps(data[off + header:off + length], depth + 1)
        padded = length + (-length % 4)
        if off + padded > n:
            # Missing padding on the last AVP: tolerate, as most stacks do.
            padded = n - off
        off += padded


def _failed_stub(code: int, flags: int, vendor: int) -> bytes:
    """The offending AVP for Failed-AVP when its own length can't be trusted:
    its header with a zero payload of the type's minimum size (RFC 6733 7.1.5)."""
    header = 12 if flags & C.AVP_FLAG_VENDOR else 8
    payload = A.fixed_data_length(code, vendor) or 0
    out = struct.pack("!IB", code, flags) + (header + payload).to_bytes(3, "big")
    if header == 12:
        out += struct.pack("!I", vendor)
    return out + b"\0" * payload


@dataclass
class Message:
    """A decoded message: the header plus scapy's AVP list."""

    header: Header
    avps: list[Any] = field(default_factory=list)
    raw: bytes = b""
    pkt: Any = None

    @property
    def code(self) -> int:
        return self.header.code

    @property
    def is_request(self) -> bool:
        return self.header.is_request

    @property
    def name(self) -> str:
        short = C.COMMAND_NAMES.get(self.code, f"CMD{self.code}")
        return short + ("R" if self.is_request else "A")

    def find(self, code: int, vendor: int = 0) -> Any | None:
        return A.find(self.avps, code, vendor)

    def find_all(self, code: int, vendor: int = 0) -> list[Any]:
        return A.find_all(self.avps, code, vendor)

    def text(self, code: int, vendor: int = 0) -> str | None:
        a = self.find(code, vendor)
        return None if a is None else A.as_text(a)

    def integer(self, code: int, vendor: int = 0) -> int | None:
        a = self.find(code, vendor)
        return None if a is None else A.as_int(a)

    @property
    def result_code(self) -> int | None:
        return self.integer(C.AVP_RESULT_CODE)


def decode(data: bytes, max_len: int = C.MAX_MESSAGE_LEN) -> Message:
    """Full validation, then scapy decoding. Raises MalformedMessage."""
    length = check_length_word(data[:4], max_len)
    if length != len(data):
        raise MalformedMessage("length field does not match data", C.RESULT_INVALID_MESSAGE_LENGTH,
                               framing_lost=True)
    h = parse_header(data)
    check_header(h)
    check_avps(data[C.HEADER_LEN:])
    try:
        pkt = sd.DiamG(data)
    except Exception as exc:  # scapy raising on odd values must not kill the peer
        raise MalformedMessage(f"undecodable: {exc}", C.RESULT_INVALID_AVP_VALUE) from exc
    avp_list = [a for a in pkt.avpList if hasattr(a, "avpCode")]
    return Message(h, avp_list, data, pkt)


def encode(code: int, *, request: bool, app_id: int, hop_by_hop: int, end_to_end: int,
           avp_list: list[Any], proxiable: bool = False, error: bool = False,
           retransmit: bool = False) -> bytes:
    """Build a message with scapy's DiamG and return its bytes."""
    flags = ((C.FLAG_REQUEST if request else 0) | (C.FLAG_PROXIABLE if proxiable else 0)
             | (C.FLAG_ERROR if error else 0) | (C.FLAG_RETRANSMIT if retransmit else 0))
    pkt = sd.DiamG(version=C.VERSION, drFlags=flags, drCode=code, drAppId=app_id,
                   drHbHId=hop_by_hop, drEtEId=end_to_end, avpList=avp_list)
    return bytes(pkt)
