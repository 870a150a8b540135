"""AVP construction and reading on top of ``scapy.contrib.diameter``.

scapy already knows the base protocol and most NASREQ AVPs; three RADIUS-derived
NASREQ AVPs that we need (NAS-IP-Address, Framed-IP-Address, NAS-Identifier) are
missing from its table, and our own vendor AVPs (enterprise 32473, see
``constants``) are naturally unknown to it. We add them to scapy's AVP table
(the scapy way of extending a protocol, like ``bind_layers``) so that encoding
and decoding both go through scapy and ``pkt.show()`` names them in debug logs.

The helpers here hide scapy's value conventions (bytes for strings, a two-byte
family prefix in Address values) from the peer and application code.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Iterable

from scapy.contrib import diameter as sd

from . import constants as C

_EXTRA_BASE_AVPS = {
    C.AVP_NAS_IP_ADDRESS: ("NAS-IP-Address", sd.AVPNV_OctetString, 64),
    C.AVP_FRAMED_IP_ADDRESS: ("Framed-IP-Address", sd.AVPNV_OctetString, 64),
    C.AVP_NAS_IDENTIFIER: ("NAS-Identifier", sd.AVPNV_StrLenField, 64),
}

_TESTBED_AVPS = {
    # Flags 128 = V bit only: M is clear, so a peer that does not know them may
    # ignore them instead of failing the request (RFC 6733 section 4.1).
    C.AVP_TB_AUTHENTICATED_DATA: ("TB-Authenticated-Data", sd.AVPV_OctetString, 128),
    C.AVP_TB_CERTIFICATE_REQUEST: ("TB-Certificate-Request", sd.AVPV_Unsigned32, 128),
    C.AVP_TB_CERTIFICATE: ("TB-Certificate", sd.AVPV_OctetString, 128),
}


def register_with_scapy() -> None:
    """Add our AVPs to scapy's tables; idempotent, never overrides scapy's own."""
    base = sd.AvpDefDict.setdefault(C.VENDOR_IETF, {})
    for code, definition in _EXTRA_BASE_AVPS.items():
        base.setdefault(code, definition)
    vendor = sd.AvpDefDict.setdefault(C.VENDOR_TESTBED, {})
    for code, definition in _TESTBED_AVPS.items():
        vendor.setdefault(code, definition)
    sd.vendorList.setdefault(C.VENDOR_TESTBED, "Testbed (RFC 5612 example)")


register_with_scapy()


def definition(code: int, vendor: int = 0) -> tuple | None:
    """scapy's (name, class, flags) for an AVP, or None when unknown."""
    return sd.AvpDefDict.get(vendor, {}).get(code)


def avp_name(code: int, vendor: int = 0) -> str:
    d = definition(code, vendor)
    return d[0] if d else f"AVP-{vendor}-{code}"


def fixed_data_length(code: int, vendor: int = 0) -> int | None:
    """Data length an AVP must have when scapy decodes it as fixed-length.

    scapy's fixed-length AVP classes read exactly 4 or 8 bytes whatever the
    AVP length says; checking first keeps a lying length from shifting every
    following AVP (we answer DIAMETER_INVALID_AVP_LENGTH instead).
    """
    d = definition(code, vendor)
    if d is None:
        return None
    cls = d[1]
    if issubclass(cls, (sd.AVP_FL_NV, sd.AVP_FL_V)):
        # The value is the last field; its struct size is the data length.
        return int(cls.fields_desc[-1].sz)
    return None


def is_grouped(code: int, vendor: int = 0) -> bool:
    d = definition(code, vendor)
    return bool(d) and issubclass(d[1], (sd.AVPNV_Grouped, sd.AVPV_Grouped))


# --- building ---------------------------------------------------------------

def _to_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def make(code: int, value: Any, vendor: int = 0, mandatory: bool | None = None) -> sd.AVP_Generic:
    """One AVP. Strings are UTF-8 encoded; ints go to Unsigned32/Enumerated AVPs;
    lists build Grouped AVPs. ``mandatory`` overrides the table's M bit."""
    ident: Any = [code, vendor] if vendor else code
    if isinstance(value, (str, bytes, bytearray)):
        value = _to_bytes(value)
    avp = sd.AVP(ident, val=value)
    if mandatory is not None:
        flags = int(avp.avpFlags or 0)
        avp.avpFlags = (flags | C.AVP_FLAG_MANDATORY) if mandatory else (flags & ~C.AVP_FLAG_MANDATORY)
    return avp


def make_address(code: int, address: str) -> sd.AVP_Generic:
    """An Address-typed AVP (2-byte address family then the address)."""
    # scapy's Address field converts the textual address itself (and would
    # silently turn raw bytes into an empty value).
    return sd.AVP(code, val=str(ipaddress.ip_address(address)))


def make_ipv4_octets(code: int, address: str) -> sd.AVP_Generic:
    """A RADIUS-style address AVP (4 raw octets), e.g. Framed-IP-Address."""
    return make(code, ipaddress.IPv4Address(address).packed)


# --- reading ----------------------------------------------------------------

def avp_vendor(avp: Any) -> int:
    if int(avp.avpFlags or 0) & C.AVP_FLAG_VENDOR:
        return int(getattr(avp, "avpVnd", 0) or 0)
    return 0


def find_all(avps: Iterable[Any], code: int, vendor: int = 0) -> list[Any]:
    return [a for a in avps if int(a.avpCode) == code and avp_vendor(a) == vendor]


def find(avps: Iterable[Any], code: int, vendor: int = 0) -> Any | None:
    for a in avps:
        if int(a.avpCode) == code and avp_vendor(a) == vendor:
            return a
    return None


def as_bytes(avp: Any) -> bytes:
    v = avp.val
    if v is None:
        return b""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    raise ValueError(f"{avp_name(int(avp.avpCode), avp_vendor(avp))} is not an octet string")


def as_text(avp: Any) -> str:
    """UTF8String / DiameterIdentity value; undecodable bytes raise ValueError."""
    return as_bytes(avp).decode("utf-8")


def as_int(avp: Any) -> int:
    v = avp.val
    if isinstance(v, int):
        return v
    if isinstance(v, (bytes, bytearray)) and len(v) == 4:
        return int.from_bytes(v, "big")
    raise ValueError(f"{avp_name(int(avp.avpCode), avp_vendor(avp))} is not a 32-bit integer")


def as_address(avp: Any) -> str:
    """Address-typed AVP value as text; ValueError for families we don't know."""
    data = as_bytes(avp)
    if len(data) == 6 and data[:2] == b"\x00\x01":
        return socket.inet_ntop(socket.AF_INET, data[2:])
    if len(data) == 18 and data[:2] == b"\x00\x02":
        return socket.inet_ntop(socket.AF_INET6, data[2:])
    raise ValueError("Address AVP with unknown family or bad length")


def as_ipv4_octets(avp: Any) -> str:
    data = as_bytes(avp)
    if len(data) != 4:
        raise ValueError("IPv4 address AVP must have 4 octets")
    return str(ipaddress.IPv4Address(data))


def children(avp: Any) -> list[Any]:
    v = avp.val
    return list(v) if isinstance(v, list) else []
