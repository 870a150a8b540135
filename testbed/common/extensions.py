"""One type-length-data extension framework for every message of the testbed.

Why one: AODV (RFC 3561 section 7 style extensions), Mobile IP (RFC 5944 1.9) and the
access hellos (claims 40-56, carried as AODV extensions) all append the same shape to a
fixed message: type (8 bits), length (8 bits) = number of data bytes that follow, data.
This module holds what they share, once:

- `Extension`: the scapy base layer (fields `type`, `length`, `data`); its `post_build`
  fills the length byte when it is left as None and refuses more than 255 data bytes.
- `ExtensionRegistry`: type byte -> declared class, for one message family. A family's
  base class names its registry in a `registry` attribute; scapy's `dispatch_hook` then
  decodes each extension as its declared class, or as the family base when the type is
  unknown (kept opaque, nothing lost).
- `ExtensionRegistry.walk`: the strict walker that checks every length *before* scapy
  sees the bytes (scapy pads short fields silently) and raises `MalformedMessage`.
- `MalformedMessage`: the one error for bytes that are not a well-formed message.
- `ListItem`: a layer that is one item of a list field (so it has no payload).

Per-class constraints read by the walker (class attributes):
- `data_len`: exact number of data bytes, or None (any length);
- `min_data_len`: fewest data bytes (default 0);
- `has_length`: False for a one-byte extension without a length byte (RFC 5944 2.1.3 Pad).
"""
from __future__ import annotations

from collections.abc import Collection

from scapy.fields import ByteField, StrLenField
from scapy.packet import Packet

#: Largest number of data bytes the 8-bit length byte can state.
MAX_DATA_LEN = 0xFF


class MalformedMessage(ValueError):
    """Bytes that are not a well-formed message; the text says which byte and why.

    Raised by `ExtensionRegistry.walk` and by the strict entry points built on it
    (`testbed.aodv.messages.parse_message`, `testbed.mip.messages.parse_registration`).
    A ValueError, so callers that drop bad input can catch either.
    """


class ExtensionRegistry(dict):
    """Type byte (0-255) -> scapy class of one message family's extensions.

    A dict, so `reg.get(t)`, `t in reg` and `reg.pop(t)` work as usual.

    Args:
        family: a name for messages ("AODV", "Mobile IP").
    """

    def __init__(self, family: str) -> None:
        super().__init__()
        self.family = family

    def register(self, cls: type[Packet], ext_type: int | None = None) -> type[Packet]:
        """Declare `cls` as the decoder of `ext_type`; usable as a class decorator.

        Args:
            cls: an `Extension` subclass.
            ext_type: the type byte, 0-255; None = the default of cls's first field.
        Returns: cls (so that `@registry.register` works).
        Raises: ValueError if the type is outside 0-255 or already taken by another class.
        """
        t = cls.fields_desc[0].default if ext_type is None else ext_type
        if not isinstance(t, int) or not 0 <= t <= 0xFF:
            raise ValueError(f"{self.family} extension type {t!r} is not a byte (0-255)")
        if self.get(t, cls) is not cls:
            raise ValueError(f"{self.family} extension type {t} is already {self[t].__name__}; "
                             f"cannot register {cls.__name__}")
        self[t] = cls
        return cls

    def walk(self, raw: bytes, start: int, *, skippable_from: int | None = None,
             understood: Collection[int] | None = None) -> list[tuple[int, int, int]]:
        """Locate every extension in raw[start:], strictly.

        Args:
            raw: the whole message (bytes).
            start: offset of the first extension, i.e. the fixed part's length in bytes.
            skippable_from: types at or above this may be skipped when not understood
                (RFC 5944 1.9: 128-255); below it an unknown type makes the message
                malformed. None = every unknown type is skippable (RFC 3561 section 7
                gives no such rule; AODV keeps unknown extensions opaque).
            understood: types the receiver understands; None = the registered ones.
        Returns: one (type, offset, total length in bytes incl. type and length bytes)
            per extension, in wire order; the last one ends exactly at len(raw).
        Raises: MalformedMessage for a type byte without its length byte (truncated), a
            length beyond the end of the message (over-long), a length that breaks the
            declared class's `data_len` / `min_data_len`, or an unknown type below
            `skippable_from`.
        """
        known = self if understood is None else understood
        out = []
        off = start
        while off < len(raw):
            t = raw[off]
            cls = self.get(t)
            if skippable_from is not None and t < skippable_from and t not in known:
                raise MalformedMessage(f"{self.family}: unknown non-skippable extension type "
                                       f"{t} at byte {off}")
            if cls is not None and not getattr(cls, "has_length", True):
                out.append((t, off, 1))
                off += 1
                continue
            if off + 2 > len(raw):
                raise MalformedMessage(f"{self.family}: extension type {t} at byte {off} has "
                                       "no length byte (truncated header)")
            ln = raw[off + 1]
            if off + 2 + ln > len(raw):
                raise MalformedMessage(f"{self.family}: extension type {t} at byte {off}: length "
                                       f"{ln} beyond the message ({len(raw) - off - 2} left)")
            want = getattr(cls, "data_len", None)
            if want is not None and ln != want:
                raise MalformedMessage(f"{self.family}: extension type {t} at byte {off} must "
                                       f"have length {want}, has {ln}")
            least = getattr(cls, "min_data_len", 0)
            if ln < least:
                raise MalformedMessage(f"{self.family}: extension type {t} at byte {off}: "
                                       f"length {ln} < {least}")
            out.append((t, off, 2 + ln))
            off += 2 + ln
        return out


class ListItem(Packet):
    """A layer that is one item of a scapy PacketListField (RERR destinations, router
    addresses, advertised routes, AODV extensions): the bytes after it belong to the next
    item, not to its payload."""

    def extract_padding(self, s: bytes):
        """(b"", rest): this item has no payload; `rest` goes to the next item."""
        return b"", s


def _data_length(pkt: Packet) -> int:
    return pkt.length


class Extension(Packet):
    """Type (8) / length (8) / data extension; the base of every family's extensions.

    Fields: `type` (byte), `length` (byte: data bytes after it; None on build = computed),
    `data` (bytes, for unknown types). Subclasses redeclare `fields_desc` with their own
    data fields after `type` and `length` (use `ByteField("length", None)`).

    A family base subclasses this and sets `registry`; decoding bytes with the family
    base dispatches on the first byte (unknown type -> the family base itself).

    Raises (on build): ValueError when the data does not fit the 8-bit length.
    Source: RFC 3561 section 7 (AODV extension format), RFC 5944 1.9 (Mobile IP).
    """

    name = "extension"
    registry: ExtensionRegistry | None = None
    #: exact data length in bytes, checked by ExtensionRegistry.walk (None = any)
    data_len: int | None = None
    #: fewest data bytes, checked by ExtensionRegistry.walk
    min_data_len = 0
    #: False for a one-byte extension without a length byte (Mobile IP Pad)
    has_length = True
    fields_desc = [
        ByteField("type", 0),
        ByteField("length", None),
        StrLenField("data", b"", length_from=_data_length),
    ]

    @classmethod
    def family_base(cls) -> type[Extension]:
        """The class of the MRO that declares `registry`: the fallback for unknown types."""
        for k in cls.__mro__:
            if "registry" in vars(k):
                return k
        return cls

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args, **kwargs):
        """The registered class for the first byte of `_pkt` (scapy calls this on decode)."""
        if _pkt and cls.registry is not None:
            return cls.registry.get(_pkt[0], cls.family_base())
        return cls

    def __init_subclass__(cls, **kwargs) -> None:
        # scapy consults dispatch_hook only where a class defines it itself: give it to the
        # family base, so that decoding with the base picks the registered class.
        super().__init_subclass__(**kwargs)
        if "registry" in vars(cls):
            cls.dispatch_hook = Extension.__dict__["dispatch_hook"]

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        """Fill the length byte (when None) with the number of data bytes built."""
        if self.has_length and self.length is None:
            if len(p) - 2 > MAX_DATA_LEN:
                raise ValueError(f"{self.name}: {len(p) - 2} data bytes do not fit the 8-bit "
                                 "length")
            p = p[:1] + bytes([len(p) - 2]) + p[2:]
        return p + pay


__all__ = ["MalformedMessage", "ExtensionRegistry", "Extension", "ListItem", "MAX_DATA_LEN"]
