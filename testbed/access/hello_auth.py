"""AODV extensions for authenticated attach (claims 40-56), as scapy layers.

Why extensions on the hello: the patent's node authenticates in the very message that
makes it a neighbour of its new sink (claim 40: "an authentication extension ... in its
hello message"), so attach costs no extra round trip on the radio. RFC 3561 extensions
are type (8 bits), length (8 bits), data; they are registered with the AODV helper's
framework (`testbed.aodv.messages.register_extension`) so `parse_message` decodes them.

Types (private range, after AODV's 128-130):
- 131 AUTH: shared-secret authenticator (claims 40-41): timestamp (ms), nonce, identity,
  HMAC-SHA256. The node's home MSM checks the HMAC (the sink never sees the secret); the
  sink checks timestamp and nonce against replay.
- 132 CHUNK: a slice of a larger blob (kind 1 = certificate DER, 2 = signature, 3 = the
  sink's certificate). One extension holds at most 255 data bytes, a DER certificate is
  ~500-900 bytes: the blob is split into chunks, all inside one UDP datagram (<1500 bytes
  for an EC P-256 or RSA-2048 certificate, so no IP fragmentation either).
- 133 CERTAUTH: certificate hello header (claims 50-54): timestamp, nonce, the peer's nonce
  (the sink echoes the node's), flags (certificate carried / fetch by DIAMETER / by DNS),
  SHA-256 fingerprint of the certificate, identity. The signature (CHUNK kind 2) covers the
  RREP header and every non-CHUNK extension, so the fingerprint binds the certificate.
- 134 ROUTES: what the sink advertises (claims 43-46): a verdict (member / visitor) and
  (prefix, length, gateway, metric) entries.
"""
from __future__ import annotations

import struct

from scapy.fields import (
    ByteEnumField,
    ByteField,
    FieldLenField,
    IPField,
    LongField,
    PacketListField,
    ShortField,
    StrFixedLenField,
    StrLenField,
)

from testbed.aodv.access_hook import EXT_AUTH, EXT_CERTAUTH, EXT_CHUNK, EXT_ROUTES
from testbed.aodv.messages import RREP, AODVExtension, register_extension
from testbed.common.extensions import ListItem, MalformedMessage


MAC_LEN = 32
NONCE_LEN = 8
FP_LEN = 32
CHUNK_MAX = 252  # 255 - kind/index/total

KIND_CERT = 1
KIND_SIG = 2
KIND_SINK_CERT = 3
CHUNK_KINDS = {KIND_CERT: "cert", KIND_SIG: "signature", KIND_SINK_CERT: "sink_cert"}

FLAG_CERT_CARRIED = 0x01
FLAG_FETCH_DIAMETER = 0x02
FLAG_FETCH_DNS = 0x04

VERDICT_MEMBER = 0
VERDICT_VISITOR = 1
VERDICTS = {VERDICT_MEMBER: "member", VERDICT_VISITOR: "visitor"}


class AuthExt(AODVExtension):
    """Shared-secret authenticator: HMAC-SHA256(secret, signed bytes), see auth_data()."""

    name = "AODV auth extension"
    fields_desc = [
        ByteField("type", EXT_AUTH),
        ByteField("length", None),
        LongField("ts_ms", 0),
        StrFixedLenField("nonce", b"\0" * NONCE_LEN, NONCE_LEN),
        FieldLenField("id_len", None, length_of="identity", fmt="B"),
        StrLenField("identity", b"", length_from=lambda p: p.id_len),
        StrFixedLenField("mac", b"\0" * MAC_LEN, MAC_LEN),
    ]


class ChunkExt(AODVExtension):
    """Type 132: one slice (<= 252 bytes) of a blob: kind, index, total, data.

    Fields: kind (KIND_CERT / KIND_SIG / KIND_SINK_CERT), index (0-based), total (slices),
    data. See split_blob() / join_blob(); check_consistent() checks index < total.
    """

    name = "AODV blob chunk extension"
    fields_desc = [
        ByteField("type", EXT_CHUNK),
        ByteField("length", None),
        ByteEnumField("kind", KIND_CERT, CHUNK_KINDS),
        ByteField("index", 0),
        ByteField("total", 1),
        StrLenField("data", b"", length_from=lambda p: max(0, (p.length or 0) - 3)),
    ]


class CertAuthExt(AODVExtension):
    """Type 133: certificate hello header (claims 50-54).

    Fields: ts_ms (ms since the epoch, 64-bit), nonce and peer_nonce (8 bytes each),
    flags (FLAG_*), fingerprint (SHA-256 of the DER certificate, 32 bytes), id_len and
    identity (FQDN bytes). 58 + len(identity) data bytes.
    """

    name = "AODV certificate auth extension"
    fields_desc = [
        ByteField("type", EXT_CERTAUTH),
        ByteField("length", None),
        LongField("ts_ms", 0),
        StrFixedLenField("nonce", b"\0" * NONCE_LEN, NONCE_LEN),
        StrFixedLenField("peer_nonce", b"\0" * NONCE_LEN, NONCE_LEN),
        ByteField("flags", 0),
        StrFixedLenField("fingerprint", b"\0" * FP_LEN, FP_LEN),
        FieldLenField("id_len", None, length_of="identity", fmt="B"),
        StrLenField("identity", b"", length_from=lambda p: p.id_len),
    ]


class RouteEntry(ListItem):
    """One advertised route in a ROUTES extension: prefix (IPv4), plen (bits, 0-32),
    gateway (IPv4), metric (16-bit). 11 bytes."""

    name = "advertised route"
    fields_desc = [
        IPField("prefix", "0.0.0.0"),
        ByteField("plen", 0),
        IPField("gateway", "0.0.0.0"),
        ShortField("metric", 0),
    ]


class RoutesExt(AODVExtension):
    """Type 134: the sink's answer (claims 43-46): verdict, then RouteEntry list.

    1 + 11 * n data bytes, so at most 23 routes (routes_ext() refuses more).
    """

    name = "AODV advertised routes extension"
    fields_desc = [
        ByteField("type", EXT_ROUTES),
        ByteField("length", None),
        ByteEnumField("verdict", VERDICT_MEMBER, VERDICTS),
        PacketListField("routes", [], RouteEntry,
                        length_from=lambda p: max(0, (p.length or 0) - 1)),
    ]


for _t, _c in ((EXT_AUTH, AuthExt), (EXT_CHUNK, ChunkExt), (EXT_CERTAUTH, CertAuthExt),
               (EXT_ROUTES, RoutesExt)):
    register_extension(_t, _c)


class ExtensionError(MalformedMessage):
    """The extensions parse, but do not form a consistent authenticated hello.

    A MalformedMessage (testbed.common.extensions), so one except clause can drop both.
    """


def check_consistent(msg) -> None:
    """Inner lengths must agree with each extension's length byte.

    scapy reads an identity of `id_len` bytes even past the extension's end (into the
    next one), so a forged length would shift the fields; refuse it instead.
    """
    for e in msg.extensions or []:
        if isinstance(e, AuthExt):
            want = 8 + NONCE_LEN + 1 + (e.id_len or 0) + MAC_LEN
            ok = len(e.identity) == e.id_len and len(e.mac) == MAC_LEN
        elif isinstance(e, CertAuthExt):
            want = 8 + 2 * NONCE_LEN + 1 + FP_LEN + 1 + (e.id_len or 0)
            ok = len(e.identity) == e.id_len and len(e.fingerprint) == FP_LEN
        elif isinstance(e, ChunkExt):
            want, ok = 3 + len(e.data), e.length >= 3 and e.index < e.total
        elif isinstance(e, RoutesExt):
            want, ok = 1 + 11 * len(e.routes), True
        else:
            continue
        if not ok or e.length != want:
            raise ExtensionError(f"extension {e.type}: length {e.length}, fields need {want}")


def rrep_header(msg: RREP) -> bytes:
    """The 20 fixed RREP bytes with the hop count zeroed (it changes on the way)."""
    return bytes(RREP(flags=msg.flags, prefix_sz=msg.prefix_sz, hop_count=0, dst=msg.dst,
                      dst_seq=msg.dst_seq, orig=msg.orig, lifetime=msg.lifetime))[:20]


def auth_data(msg: RREP, ext: AuthExt) -> bytes:
    """Bytes the shared-secret HMAC covers: RREP header + the AUTH extension minus its MAC.

    This is what the sink forwards to the MSM as TB-Authenticated-Data, so the MSM checks
    exactly what the node sent (identity, timestamp, nonce and the hello's address/seqno).
    """
    e = ext.copy()
    e.mac = b"\0" * MAC_LEN
    return rrep_header(msg) + bytes(e)[:-MAC_LEN]


def signed_data(msg: RREP) -> bytes:
    """Bytes a certificate hello signature covers: header + every non-CHUNK extension."""
    out = [rrep_header(msg)]
    for e in msg.extensions or []:
        if not isinstance(e, ChunkExt):
            out.append(bytes(e))
    return b"".join(out)


def split_blob(kind: int, blob: bytes) -> list[ChunkExt]:
    """`blob` (bytes) as ChunkExt slices of at most CHUNK_MAX bytes, in order.

    Raises ValueError if it needs more than 255 chunks (index and total are bytes).
    """
    parts = [blob[i:i + CHUNK_MAX] for i in range(0, len(blob), CHUNK_MAX)] or [b""]
    if len(parts) > 255:
        raise ValueError(f"blob of {len(blob)} bytes needs more than 255 chunks")
    return [ChunkExt(kind=kind, index=i, total=len(parts), data=p) for i, p in enumerate(parts)]


def join_blob(msg: RREP, kind: int) -> bytes | None:
    """Reassemble a chunked blob; None if absent. Raises ExtensionError if inconsistent."""
    chunks = [e for e in msg.extensions or [] if isinstance(e, ChunkExt) and e.kind == kind]
    if not chunks:
        return None
    total = chunks[0].total
    if total == 0 or any(c.total != total for c in chunks) or len(chunks) != total:
        raise ExtensionError(f"{CHUNK_KINDS.get(kind, kind)}: {len(chunks)} chunks, total says "
                             f"{total}")
    by_index = {c.index: c.data for c in chunks}
    if sorted(by_index) != list(range(total)):
        raise ExtensionError(f"{CHUNK_KINDS.get(kind, kind)}: chunk indexes {sorted(by_index)}")
    return b"".join(by_index[i] for i in range(total))


def routes_ext(verdict: int, routes: list[tuple[str, str, int]]) -> RoutesExt:
    """routes: (prefix 'a.b.c.d/n', gateway, metric)."""
    entries = []
    for prefix, gw, metric in routes:
        net, plen = prefix.split("/")
        entries.append(RouteEntry(prefix=net, plen=int(plen), gateway=gw, metric=min(metric, 65535)))
    if len(entries) * 11 + 1 > 255:
        raise ValueError("too many routes for one extension")
    return RoutesExt(verdict=verdict, routes=entries)


def routes_of(ext: RoutesExt) -> list[tuple[str, str, int]]:
    """(prefix 'a.b.c.d/n', gateway, metric) per entry; ExtensionError for n > 32."""
    out = []
    for r in ext.routes:
        if r.plen > 32:
            raise ExtensionError(f"route prefix length {r.plen}")
        out.append((f"{r.prefix}/{r.plen}", r.gateway, r.metric))
    return out


def pack_ts(ts_ms: int) -> bytes:
    """A timestamp in ms since the epoch as 8 bytes, network order."""
    return struct.pack("!Q", ts_ms)


__all__ = [
    "AuthExt", "ChunkExt", "CertAuthExt", "RoutesExt", "RouteEntry", "ExtensionError",
    "EXT_AUTH", "EXT_CHUNK", "EXT_CERTAUTH", "EXT_ROUTES", "KIND_CERT", "KIND_SIG",
    "KIND_SINK_CERT", "FLAG_CERT_CARRIED", "FLAG_FETCH_DIAMETER", "FLAG_FETCH_DNS",
    "VERDICT_MEMBER", "VERDICT_VISITOR", "auth_data", "signed_data", "split_blob",
    "join_blob", "routes_ext", "check_consistent", "routes_of", "rrep_header", "MAC_LEN", "NONCE_LEN",
]
