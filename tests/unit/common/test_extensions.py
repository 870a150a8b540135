"""The one extension base (testbed/common/extensions.py), on a family declared here.

Each strictness check is shown twice: the well-formed bytes pass, the same bytes made
wrong in exactly one way raise MalformedMessage.
"""
import pytest
from scapy.fields import ByteField, IntField

from testbed.common.extensions import Extension, ExtensionRegistry, ListItem, MalformedMessage

REG = ExtensionRegistry("test")


class TExt(Extension, ListItem):
    name = "test extension"
    registry = REG


@REG.register
class Fixed4(TExt):
    data_len = 4
    fields_desc = [ByteField("type", 7), ByteField("length", None), IntField("value", 0)]


@REG.register
class AtLeast2(TExt):
    min_data_len = 2
    fields_desc = [ByteField("type", 8)] + Extension.fields_desc[1:]


@REG.register
class Pad(TExt):
    has_length = False
    fields_desc = [ByteField("type", 0)]


FIXED = b"HDR"  # a 3-byte fixed part before the extensions


# ---------------------------------------------------------------- registration
def test_register_by_type_field_default_and_explicit_type():
    assert REG[7] is Fixed4 and REG[8] is AtLeast2 and REG[0] is Pad
    reg = ExtensionRegistry("other")
    reg.register(Fixed4, 200)
    assert reg[200] is Fixed4 and 7 not in reg


def test_register_refuses_a_taken_type_and_non_bytes():
    reg = ExtensionRegistry("other")
    reg.register(Fixed4)
    reg.register(Fixed4)  # the same class again is harmless
    with pytest.raises(ValueError, match="already Fixed4"):
        reg.register(AtLeast2, 7)
    for bad in (-1, 256, "7"):
        with pytest.raises(ValueError, match="not a byte"):
            reg.register(AtLeast2, bad)


def test_decoding_dispatches_on_type_and_keeps_unknown_types_opaque():
    assert type(TExt(bytes([7, 4, 0, 0, 1, 2]))) is Fixed4
    assert TExt(bytes([7, 4, 0, 0, 1, 2])).value == 258
    unknown = TExt(bytes([99, 3]) + b"abc")
    assert type(unknown) is TExt and unknown.data == b"abc" and unknown.length == 3
    # the unregistered base has nothing to dispatch to
    assert type(Extension(bytes([7, 0]))) is Extension


# ---------------------------------------------------------------- length filling
def test_length_is_filled_on_build_from_the_data():
    assert bytes(Fixed4(value=1)) == bytes([7, 4, 0, 0, 0, 1])
    assert bytes(AtLeast2(data=b"xyz")) == bytes([8, 3]) + b"xyz"
    assert bytes(TExt(type=99)) == bytes([99, 0])
    assert bytes(Pad()) == b"\x00"  # no length byte to fill


def test_an_explicit_length_is_kept_as_given():
    # a deliberately wrong length (for negative tests) must reach the wire unchanged
    assert bytes(Fixed4(length=9, value=1)) == bytes([7, 9, 0, 0, 0, 1])


def test_build_refuses_data_that_does_not_fit_the_length_byte():
    assert len(bytes(TExt(type=99, data=b"x" * 255))) == 257
    with pytest.raises(ValueError, match="256 data bytes do not fit"):
        bytes(TExt(type=99, data=b"x" * 256))


# ---------------------------------------------------------------- strict walk
GOOD = FIXED + bytes([7, 4, 0, 0, 0, 1]) + b"\x00" + bytes([8, 2]) + b"ab" + bytes([200, 1, 9])


def test_walk_locates_every_extension():
    assert REG.walk(GOOD, len(FIXED)) == [(7, 3, 6), (0, 9, 1), (8, 10, 4), (200, 14, 3)]
    assert REG.walk(FIXED, len(FIXED)) == []


@pytest.mark.parametrize("raw, why", [
    (FIXED + bytes([7]), "no length byte"),                        # truncated header
    (FIXED + bytes([200, 3, 1, 2]), "beyond the message"),         # over-long: 3 claimed, 2 left
    (GOOD[:-1], "beyond the message"),                             # last extension cut short
    (FIXED + bytes([7, 3, 0, 0, 1]), "must have length 4, has 3"),  # fixed size broken
    (FIXED + bytes([8, 1, 0]), "length 1 < 2"),                    # below the minimum
])
def test_walk_refuses_truncated_and_over_long(raw, why):
    with pytest.raises(MalformedMessage, match=why):
        REG.walk(raw, len(FIXED))


def test_unknown_types_below_skippable_from_are_refused():
    raw = FIXED + bytes([5, 0]) + bytes([130, 0])
    # without the rule (AODV) both are skipped
    assert [t for t, _o, _l in REG.walk(raw, len(FIXED))] == [5, 130]
    # with it (RFC 5944 1.9), type 5 must be understood
    with pytest.raises(MalformedMessage, match="unknown non-skippable extension type 5"):
        REG.walk(raw, len(FIXED), skippable_from=128)
    # 130 is skippable, 7 is registered: fine
    ok = FIXED + bytes([130, 0]) + bytes([7, 4, 0, 0, 0, 1])
    assert len(REG.walk(ok, len(FIXED), skippable_from=128)) == 2
    # a registered type the receiver says it does not understand is refused too
    with pytest.raises(MalformedMessage, match="type 7"):
        REG.walk(ok, len(FIXED), skippable_from=128, understood={0, 8})


def test_malformed_is_a_value_error_and_the_shared_class():
    from testbed.access.hello_auth import ExtensionError
    from testbed.aodv import messages as aodv
    from testbed.mip import messages as mip
    assert issubclass(MalformedMessage, ValueError)
    assert aodv.MalformedMessage is MalformedMessage is mip.MalformedMessage
    assert issubclass(ExtensionError, MalformedMessage)


def test_the_three_families_share_the_base():
    from testbed.access import hello_auth
    from testbed.aodv import messages as aodv
    from testbed.mip import messages as mip
    for cls in (aodv.AODVExtension, mip.MIPExtension, hello_auth.AuthExt, mip.MNHAAuth):
        assert issubclass(cls, Extension)
    assert aodv.AODVExtension.registry[hello_auth.EXT_AUTH] is hello_auth.AuthExt
    assert mip.MIPExtension.registry[mip.EXT_MN_HA_AUTH] is mip.MNHAAuth
    # Mobile IP chains extensions as payloads (the family's choice, not the base's)
    chained = mip.MIPExtension(bytes([200, 0, 32, 4, 0, 0, 1, 0]))
    assert type(chained) is mip.MIPExtension and isinstance(chained.payload, mip.MNHAAuth)
