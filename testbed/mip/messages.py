"""Mobile IPv4 messages (RFC 5944, UDP 434; RFC 3024 reverse tunnelling) as scapy layers.

Why scapy layers: the registration request and reply already exist in
`scapy.layers.mobileip` (MobileIPRRQ / MobileIPRRP); what scapy lacks are the extensions
that follow them and the ICMP router advertisement that carries the agent advertisement.
They are declared here so that captures and agents share one definition.

Registration messages (UDP payload):
- request  (type 1, 24 bytes fixed): type, flags S B D M G r T x, lifetime, home address,
  home agent, care-of address, identification (64 bits).
- reply    (type 3, 20 bytes fixed): type, code, lifetime, home address, home agent,
  identification.
Then extensions in (type, length, data) form (RFC 5944 1.9):
- 32 MN-HA authentication, 33 MN-FA, 34 FA-HA: SPI (32 bits) + authenticator; the
  default algorithm is HMAC-MD5 (RFC 2104) over the UDP payload up to and including
  this extension's type, length and SPI (RFC 5944 3.5.1).
- 130 encapsulating delivery style (RFC 3024 3.3), no data.
Unknown types 0-127 make the message malformed (must be understood); 128-255 are skipped.

Agent advertisement (RFC 5944 2.1): an ICMP router advertisement (type 9, RFC 1256)
followed by the mobility agent advertisement extension (type 16: sequence number,
registration lifetime, flags R B H F M G r T, care-of addresses) and optionally the
prefix-lengths extension (19) and one-byte padding (0). Agent solicitation = ICMP router
solicitation (type 10) sent with TTL 1.

parse_registration() is the strict entry point for bytes off the wire: every length is
checked before scapy sees the data, so a truncated message raises MalformedMessage.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from scapy.fields import (
    ByteField,
    FieldLenField,
    FieldListField,
    FlagsField,
    IntField,
    IPField,
    PacketListField,
    ShortField,
    StrLenField,
    XShortField,
)
from scapy.layers.mobileip import MobileIP, MobileIPRRP, MobileIPRRQ
from scapy.packet import Packet, Raw, bind_layers
from scapy.utils import checksum

from testbed.common.extensions import Extension, ExtensionRegistry, ListItem, MalformedMessage

MIP_PORT = 434
RRQ_TYPE = 1
RRP_TYPE = 3
RRQ_FIXED = 24
RRP_FIXED = 20

# Registration request flags (RFC 5944 3.3; T from RFC 3024 3.1)
F_S, F_B, F_D, F_M, F_G, F_R, F_T, F_X = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
RRQ_FLAG_NAMES = "xTrGMDBS"  # scapy FlagsField order: least significant bit first

# Agent advertisement flags (RFC 5944 2.1.1; T from RFC 3024 3.2)
A_R, A_B, A_H, A_F, A_M, A_G, A_r, A_T = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
ADV_FLAG_NAMES = "TrGMFHBR"

EXT_PAD = 0
EXT_AGENT_ADV = 16
EXT_PREFIX_LEN = 19
EXT_MN_HA_AUTH = 32
EXT_MN_FA_AUTH = 33
EXT_FA_HA_AUTH = 34
EXT_ENCAP_DELIVERY = 130

HMAC_MD5_LEN = 16

# Reply codes (RFC 5944 3.4; 74-76, 79, 137-139 from RFC 3024)
ACCEPTED = 0
ACCEPTED_NO_SIMULTANEOUS = 1
FA_UNSPECIFIED = 64
FA_PROHIBITED = 65
FA_INSUFFICIENT_RESOURCES = 66
FA_MN_AUTH_FAILED = 67
FA_HA_AUTH_FAILED = 68
FA_LIFETIME_TOO_LONG = 69
FA_POORLY_FORMED_REQUEST = 70
FA_POORLY_FORMED_REPLY = 71
FA_ENCAP_UNAVAILABLE = 72
FA_REVERSE_TUNNEL_UNAVAILABLE = 74
FA_REVERSE_TUNNEL_MANDATORY = 75
FA_INVALID_COA = 77
FA_REGISTRATION_TIMEOUT = 78
FA_HA_UNREACHABLE = 88
HA_UNSPECIFIED = 128
HA_PROHIBITED = 129
HA_INSUFFICIENT_RESOURCES = 130
HA_MN_AUTH_FAILED = 131
HA_FA_AUTH_FAILED = 132
HA_ID_MISMATCH = 133
HA_POORLY_FORMED = 134
HA_TOO_MANY_BINDINGS = 135
HA_UNKNOWN_HA = 136
HA_REVERSE_TUNNEL_UNAVAILABLE = 137
HA_REVERSE_TUNNEL_MANDATORY = 138
HA_ENCAP_UNAVAILABLE = 139

REPLY_CODES = {
    ACCEPTED: "accepted", ACCEPTED_NO_SIMULTANEOUS: "accepted_no_simultaneous_bindings",
    FA_UNSPECIFIED: "fa_reason_unspecified", FA_PROHIBITED: "fa_administratively_prohibited",
    FA_INSUFFICIENT_RESOURCES: "fa_insufficient_resources",
    FA_MN_AUTH_FAILED: "fa_mn_failed_authentication", FA_HA_AUTH_FAILED: "fa_ha_failed_authentication",
    FA_LIFETIME_TOO_LONG: "fa_requested_lifetime_too_long",
    FA_POORLY_FORMED_REQUEST: "fa_poorly_formed_request", FA_POORLY_FORMED_REPLY: "fa_poorly_formed_reply",
    FA_ENCAP_UNAVAILABLE: "fa_requested_encapsulation_unavailable",
    FA_REVERSE_TUNNEL_UNAVAILABLE: "fa_reverse_tunnel_unavailable",
    FA_REVERSE_TUNNEL_MANDATORY: "fa_reverse_tunnel_mandatory",
    FA_INVALID_COA: "fa_invalid_care_of_address", FA_REGISTRATION_TIMEOUT: "fa_registration_timeout",
    FA_HA_UNREACHABLE: "fa_home_agent_unreachable",
    HA_UNSPECIFIED: "ha_reason_unspecified", HA_PROHIBITED: "ha_administratively_prohibited",
    HA_INSUFFICIENT_RESOURCES: "ha_insufficient_resources",
    HA_MN_AUTH_FAILED: "ha_mn_failed_authentication", HA_FA_AUTH_FAILED: "ha_fa_failed_authentication",
    HA_ID_MISMATCH: "ha_identification_mismatch", HA_POORLY_FORMED: "ha_poorly_formed_request",
    HA_TOO_MANY_BINDINGS: "ha_too_many_simultaneous_bindings", HA_UNKNOWN_HA: "ha_unknown_home_agent",
    HA_REVERSE_TUNNEL_UNAVAILABLE: "ha_reverse_tunnel_unavailable",
    HA_REVERSE_TUNNEL_MANDATORY: "ha_reverse_tunnel_mandatory",
    HA_ENCAP_UNAVAILABLE: "ha_requested_encapsulation_unavailable",
}


def code_name(code: int) -> str:
    """Name of a registration reply code (RFC 5944 3.4, RFC 3024), or 'code_N'."""
    return REPLY_CODES.get(code, f"code_{code}")


# ---- extensions ----------------------------------------------------------------------
_EXT_CLASSES = ExtensionRegistry("Mobile IP")


class MIPExtension(Extension):
    """Any (type, length, data) extension (RFC 5944 1.9); the fallback for unknown types.

    Fields: `type` (byte), `length` (byte, data bytes; None on build = computed), `data`.
    Extensions follow the fixed message as chained scapy payloads; decoding dispatches
    on the type byte to the class registered in this module.
    Raises (on build): ValueError for more than 255 data bytes.
    """
    name = "Mobile IP extension"
    registry = _EXT_CLASSES
    fields_desc = [ByteField("type", 255)] + Extension.fields_desc[1:]

    def guess_payload_class(self, payload: bytes):
        """Extensions follow one another until the payload ends (RFC 5944 1.9)."""
        return MIPExtension if payload else Raw


_register = _EXT_CLASSES.register


@_register
class PadExtension(MIPExtension):
    """One-byte padding (type 0, no length field), used in agent advertisements (2.1.3)."""
    name = "Pad"
    has_length = False
    fields_desc = [ByteField("type", EXT_PAD)]


class _AuthExtension(MIPExtension):
    min_data_len = 4  # the SPI (RFC 5944 3.5.1)
    fields_desc = [ByteField("type", EXT_MN_HA_AUTH),
                   ByteField("length", None),
                   IntField("spi", 256),
                   StrLenField("authenticator", b"", length_from=lambda p: max(p.length - 4, 0))]


@_register
class MNHAAuth(_AuthExtension):
    """Mobile-Home authentication extension (RFC 5944 3.5.2), type 32."""
    name = "MN-HA Authentication"
    fields_desc = [ByteField("type", EXT_MN_HA_AUTH)] + _AuthExtension.fields_desc[1:]


@_register
class MNFAAuth(_AuthExtension):
    """Mobile-Foreign authentication extension (RFC 5944 3.5.3), type 33."""
    name = "MN-FA Authentication"
    fields_desc = [ByteField("type", EXT_MN_FA_AUTH)] + _AuthExtension.fields_desc[1:]


@_register
class FAHAAuth(_AuthExtension):
    """Foreign-Home authentication extension (RFC 5944 3.5.4), type 34."""
    name = "FA-HA Authentication"
    fields_desc = [ByteField("type", EXT_FA_HA_AUTH)] + _AuthExtension.fields_desc[1:]


@_register
class EncapDeliveryExt(MIPExtension):
    """Encapsulating delivery style extension (RFC 3024 3.3), type 130, no data."""
    name = "Encapsulating Delivery Style"
    fields_desc = [ByteField("type", EXT_ENCAP_DELIVERY), ByteField("length", 0)]


@_register
class AgentAdvExt(MIPExtension):
    """Mobility agent advertisement extension (RFC 5944 2.1.1), type 16."""
    name = "Mobility Agent Advertisement"
    fields_desc = [ByteField("type", EXT_AGENT_ADV),
                   ByteField("length", None),
                   ShortField("seq", 0),
                   ShortField("reg_lifetime", 1800),
                   FlagsField("flags", 0, 8, ADV_FLAG_NAMES),
                   ByteField("reserved", 0),
                   FieldListField("coas", [], IPField("", "0.0.0.0"),
                                  length_from=lambda p: max(p.length - 6, 0))]


@_register
class PrefixLengthsExt(MIPExtension):
    """Prefix-lengths extension (RFC 5944 2.1.2), type 19: one byte per router address."""
    name = "Prefix-Lengths"
    fields_desc = [ByteField("type", EXT_PREFIX_LEN),
                   ByteField("length", None),
                   FieldListField("prefix_lengths", [], ByteField("", 24),
                                  length_from=lambda p: p.length)]


bind_layers(MobileIPRRQ, MIPExtension)
bind_layers(MobileIPRRP, MIPExtension)


# ---- ICMP router discovery (RFC 1256) carrying the agent advertisement -------------------
class RouterAddress(ListItem):
    """One (router address, preference) entry of a router advertisement (RFC 1256)."""
    name = "Router address"
    fields_desc = [IPField("addr", "0.0.0.0"), IntField("preference", 0)]


class _ICMPChecksum(Packet):
    """Fills the ICMP checksum (RFC 792) over the message and its extensions when unset."""

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        """The built bytes with the 16-bit checksum at octets 2-3 when ``chksum`` is None."""
        p += pay
        if self.chksum is None:
            p = p[:2] + struct.pack("!H", checksum(p)) + p[4:]
        return p


class ICMPRouterAdvert(_ICMPChecksum):
    """ICMP router advertisement (type 9); agent advertisement extensions follow it.

    Not bound under IP (scapy's ICMP owns protocol 1): build as IP(proto=1)/ICMPRouterAdvert()
    and parse the ICMP bytes with ICMPRouterAdvert(data).
    """
    name = "ICMP Router Advertisement"
    fields_desc = [ByteField("type", 9), ByteField("code", 0), XShortField("chksum", None),
                   FieldLenField("num_addrs", None, count_of="addrs", fmt="B"),
                   ByteField("addr_entry_size", 2), ShortField("lifetime", 1800),
                   PacketListField("addrs", [], RouterAddress, count_from=lambda p: p.num_addrs)]

    def guess_payload_class(self, payload: bytes):
        """After the router addresses come the Mobility Agent Advertisement and other
        extensions (RFC 5944 2.1), else nothing."""
        return MIPExtension if payload else Raw


class ICMPRouterSolicit(_ICMPChecksum):
    """ICMP router solicitation (type 10) = agent solicitation when sent with TTL 1."""
    name = "ICMP Router Solicitation"
    fields_desc = [ByteField("type", 10), ByteField("code", 0), XShortField("chksum", None),
                   IntField("reserved", 0)]


# ---- strict parsing and authentication ---------------------------------------------------
@dataclass
class ParsedRegistration:
    """A request or reply with its extensions located in the raw bytes."""
    raw: bytes
    msg_type: int
    pkt: Packet                       # MobileIPRRQ or MobileIPRRP (payload = extensions)
    extensions: list[tuple[int, int, int]] = field(default_factory=list)  # (type, offset, total len)

    def ext(self, ext_type: int) -> tuple[int, int] | None:
        """(offset, total length in bytes) of the first extension of `ext_type`, or None."""
        for t, off, ln in self.extensions:
            if t == ext_type:
                return off, ln
        return None


def walk_extensions(raw: bytes, start: int) -> list[tuple[int, int, int]]:
    """(type, offset, total length in bytes) of each extension in raw[start:], strictly.

    Every type is skippable here (the caller decides what it needs); see
    `testbed.common.extensions.ExtensionRegistry.walk`.
    Raises: MalformedMessage for a missing length byte, a length beyond the message, or an
    authentication extension (32-34) shorter than its SPI (RFC 5944 3.5.1).
    """
    return _EXT_CLASSES.walk(raw, start)


KNOWN_REG_EXTENSIONS = {EXT_MN_HA_AUTH, EXT_MN_FA_AUTH, EXT_FA_HA_AUTH}


def parse_registration(raw: bytes) -> ParsedRegistration:
    """Parse a UDP 434 payload strictly: request or reply, extensions within bounds.

    Raises MalformedMessage for: empty, unknown type, short fixed part, extensions out of
    bounds, an unknown extension type below 128 (RFC 5944 1.9: must be understood), or an
    authentication extension whose length is shorter than its SPI.
    """
    raw = bytes(raw)
    if not raw:
        raise MalformedMessage("empty message")
    t = raw[0]
    if t == RRQ_TYPE:
        fixed = RRQ_FIXED
    elif t == RRP_TYPE:
        fixed = RRP_FIXED
    else:
        raise MalformedMessage(f"type {t} is not a registration request (1) or reply (3)")
    if len(raw) < fixed:
        raise MalformedMessage(f"type {t}: {len(raw)} bytes, fixed part needs {fixed}")
    exts = _EXT_CLASSES.walk(raw, fixed, skippable_from=128,
                             understood=KNOWN_REG_EXTENSIONS | {EXT_PAD})
    pkt = MobileIP(raw)
    inner = pkt.payload
    return ParsedRegistration(raw=raw, msg_type=t, pkt=inner, extensions=exts)


def authenticator(key: bytes, data: bytes) -> bytes:
    """HMAC-MD5 (RFC 2104) of `data` under `key`: the default Mobile IP algorithm."""
    return hmac.new(key, data, hashlib.md5).digest()


def add_auth(raw: bytes, spi: int, key: bytes, ext_type: int = EXT_MN_HA_AUTH) -> bytes:
    """Append an authentication extension protecting everything before its authenticator."""
    head = bytes(raw) + struct.pack("!BBI", ext_type, 4 + HMAC_MD5_LEN, spi)
    return head + authenticator(key, head)


def auth_spi(msg: ParsedRegistration, ext_type: int = EXT_MN_HA_AUTH) -> int | None:
    """SPI (32-bit) of the message's `ext_type` authentication extension, or None."""
    loc = msg.ext(ext_type)
    if loc is None:
        return None
    off, _ln = loc
    return struct.unpack_from("!I", msg.raw, off + 2)[0]


def verify_auth(msg: ParsedRegistration, key: bytes, ext_type: int = EXT_MN_HA_AUTH) -> bool:
    """True if the message's `ext_type` authenticator is right for `key` (constant time)."""
    loc = msg.ext(ext_type)
    if loc is None:
        return False
    off, ln = loc
    got = msg.raw[off + 6:off + ln]
    want = authenticator(key, msg.raw[:off + 6])
    return len(got) == len(want) and hmac.compare_digest(got, want)


def build_request(*, flags: int, lifetime: int, home: str, ha: str, coa: str, ident: int,
                  spi: int, key: bytes) -> bytes:
    """A registration request with the MN-HA authentication extension."""
    body = bytes(MobileIP(type=RRQ_TYPE) / MobileIPRRQ(flags=flags, lifetime=lifetime,
                                                        homeaddr=home, haaddr=ha,
                                                        coaddr=coa, id=ident))
    return add_auth(body, spi, key)


def build_reply(*, code: int, lifetime: int, home: str, ha: str, ident: int,
                spi: int | None, key: bytes | None) -> bytes:
    """A registration reply, authenticated when an MN-HA key is known."""
    body = bytes(MobileIP(type=RRP_TYPE) / MobileIPRRP(code=code, lifetime=lifetime,
                                                        homeaddr=home, haaddr=ha, id=ident))
    if spi is not None and key is not None:
        return add_auth(body, spi, key)
    return body


@dataclass
class AgentAdvertisement:
    """What a mobile node needs from an ICMP router advertisement with extension 16."""
    source: str
    routers: list[str]
    seq: int
    reg_lifetime: int
    flags: int
    coas: list[str]
    adv_lifetime: int

    @property
    def is_fa(self) -> bool:
        """The F bit: the sender offers foreign agent service (RFC 5944 2.1.1)."""
        return bool(self.flags & A_F)

    @property
    def is_ha(self) -> bool:
        """The H bit: the sender is a home agent on this link (RFC 5944 2.1.1)."""
        return bool(self.flags & A_H)


def build_advertisement(*, router: str, seq: int, reg_lifetime: int, flags: int,
                        coas: list[str], adv_lifetime: int = 30, prefix_len: int | None = None) -> bytes:
    """ICMP bytes of an agent advertisement (router advertisement + extension 16 [+19])."""
    pkt = (ICMPRouterAdvert(lifetime=adv_lifetime, addrs=[RouterAddress(addr=router)])
           / AgentAdvExt(seq=seq, reg_lifetime=reg_lifetime, flags=flags, coas=coas))
    if prefix_len is not None:
        pkt = pkt / PrefixLengthsExt(prefix_lengths=[prefix_len])
    return bytes(pkt)


def parse_advertisement(icmp: bytes, source: str) -> AgentAdvertisement | None:
    """Agent advertisement from ICMP bytes, or None (plain router advertisement or bad)."""
    if len(icmp) < 8 or icmp[0] != 9 or checksum(icmp) != 0:
        return None
    n, size = icmp[4], icmp[5]
    if size < 2 or len(icmp) < 8 + 4 * size * n:
        return None
    try:
        exts = walk_extensions(icmp, 8 + 4 * size * n)
    except MalformedMessage:
        return None
    for t, off, ln in exts:
        if t == EXT_AGENT_ADV and ln >= 8 and (ln - 8) % 4 == 0:
            ext = AgentAdvExt(icmp[off:off + ln])
            routers = [str(a.addr) for a in ICMPRouterAdvert(icmp[:8 + 8 * n]).addrs] if size == 2 else []
            return AgentAdvertisement(source=source, routers=routers, seq=ext.seq,
                                      reg_lifetime=ext.reg_lifetime, flags=int(ext.flags),
                                      coas=[str(c) for c in ext.coas],
                                      adv_lifetime=struct.unpack_from("!H", icmp, 6)[0])
    return None


__all__ = [n for n in dir() if not n.startswith("_")]
