"""Encoding/decoding and the structural checks that decide our error answers."""

from __future__ import annotations

import struct

import pytest

from testbed.diameter import avps as A
from testbed.diameter import constants as C
from testbed.diameter.message import MalformedMessage, check_length_word, decode, encode
from testbed.diameter.nasreq import build_aaa_avps, build_aar, parse_aaa, parse_aar
from testbed.diameter.rules import RuleError, parse_filter, parse_route


def _msg(avp_list, code=C.CMD_CAPABILITIES_EXCHANGE, app=0, request=True):
    return encode(code, request=request, app_id=app, hop_by_hop=7, end_to_end=9, avp_list=avp_list)


def test_roundtrip_keeps_header_and_typed_values():
    data = _msg([A.make(C.AVP_ORIGIN_HOST, "a.example"),
                 A.make_address(C.AVP_HOST_IP_ADDRESS, "192.0.2.7"),
                 A.make_address(C.AVP_HOST_IP_ADDRESS, "2001:db8::1"),
                 A.make(C.AVP_VENDOR_ID, C.VENDOR_TESTBED),
                 A.make(C.AVP_TB_CERTIFICATE, "PEM", vendor=C.VENDOR_TESTBED)])
    assert len(data) % 4 == 0
    m = decode(data)
    assert (m.code, m.is_request, m.header.hop_by_hop, m.header.end_to_end) == (257, True, 7, 9)
    assert m.text(C.AVP_ORIGIN_HOST) == "a.example"
    assert [A.as_address(a) for a in m.find_all(C.AVP_HOST_IP_ADDRESS)] == ["192.0.2.7", "2001:db8::1"]
    assert m.integer(C.AVP_VENDOR_ID) == C.VENDOR_TESTBED
    cert = m.find(C.AVP_TB_CERTIFICATE, C.VENDOR_TESTBED)
    assert A.as_bytes(cert) == b"PEM" and cert.flags & C.AVP_FLAG_MANDATORY == 0


def test_address_avp_on_the_wire_has_family_and_octets():
    raw = bytes(A.make_address(C.AVP_HOST_IP_ADDRESS, "127.0.0.1"))
    assert raw[8:14] == b"\x00\x01\x7f\x00\x00\x01"  # a regression freeDiameter caught


@pytest.mark.parametrize("first4, rc", [
    (b"\x02\x00\x00\x14", C.RESULT_UNSUPPORTED_VERSION),
    (b"\x01\x00\x00\x10", C.RESULT_INVALID_MESSAGE_LENGTH),
    (b"\x01\x00\x00\x15", C.RESULT_INVALID_MESSAGE_LENGTH),
    (b"\x01\xff\xff\xfc", C.RESULT_INVALID_MESSAGE_LENGTH),
])
def test_bad_version_or_length_loses_framing(first4, rc):
    with pytest.raises(MalformedMessage) as e:
        check_length_word(first4)
    assert e.value.result_code == rc and e.value.framing_lost


def _patch_avp_length(data: bytes, avp_offset: int, new_len: int) -> bytes:
    pos = 20 + avp_offset + 5
    return data[:pos] + new_len.to_bytes(3, "big") + data[pos + 3:]


def test_avp_length_beyond_message_is_invalid_avp_length():
    data = _msg([A.make(C.AVP_ORIGIN_HOST, "a.example")])
    bad = _patch_avp_length(data, 0, 200)
    with pytest.raises(MalformedMessage) as e:
        decode(bad)
    assert e.value.result_code == C.RESULT_INVALID_AVP_LENGTH and not e.value.framing_lost
    assert e.value.failed_avp[:4] == struct.pack("!I", C.AVP_ORIGIN_HOST)


def test_fixed_length_avp_with_wrong_length_is_refused():
    # Origin-State-Id (Unsigned32) carrying 8 bytes
    avp = struct.pack("!IB3s", C.AVP_ORIGIN_STATE_ID, 0x40, (16).to_bytes(3, "big")) + b"\0" * 8
    data = _msg([])
    data = data[:1] + (len(data) + 16).to_bytes(3, "big") + data[4:] + avp
    with pytest.raises(MalformedMessage) as e:
        decode(data)
    assert e.value.result_code == C.RESULT_INVALID_AVP_LENGTH


def test_reserved_bits_are_ignored_but_bad_bit_combinations_are_not():
    """RFC 6733 3 and 4.1: reserved bits "MUST be set to zero and ignored by the
    receiver" (freeDiameter ignores them too); an E bit on a request is 3008 and a
    V bit with vendor 0 is 3009."""
    data = bytearray(_msg([A.make(C.AVP_ORIGIN_HOST, "a")]))
    data[4] |= 0x01
    data[20 + 4] |= 0x01
    m = decode(bytes(data))
    assert m.text(C.AVP_ORIGIN_HOST) == "a"
    data = bytearray(_msg([A.make(C.AVP_ORIGIN_HOST, "a")]))
    data[4] |= C.FLAG_ERROR
    with pytest.raises(MalformedMessage) as e:
        decode(bytes(data))
    assert e.value.result_code == C.RESULT_INVALID_HDR_BITS
    vendor_zero = struct.pack("!IBBHI", C.AVP_ORIGIN_HOST, 0xC0, 0, 13, 0) + b"a\0\0\0"
    data = _msg([])
    data = data[:1] + (len(data) + len(vendor_zero)).to_bytes(3, "big") + data[4:] + vendor_zero
    with pytest.raises(MalformedMessage) as e:
        decode(data)
    assert e.value.result_code == C.RESULT_INVALID_AVP_BITS


def test_aar_and_aaa_roundtrip():
    sid, avp_list = build_aar(origin_host="msr1.h", origin_realm="h", destination_realm="h",
                              identity="mn1.h", auth_request_type=C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE,
                              authenticator=b"\x01\x02", authenticated_data=b"hello",
                              node_address="10.1.0.5", nas_ip_address="10.1.0.1",
                              want_certificate=True)
    req = parse_aar(decode(_msg(avp_list, C.CMD_AA, C.APP_NASREQ)))
    assert (req.session_id, req.identity, req.authenticator, req.authenticated_data) == \
        (sid, "mn1.h", b"\x01\x02", b"hello")
    assert (req.node_address, req.nas_ip_address, req.want_certificate) == ("10.1.0.5", "10.1.0.1", True)
    answer = build_aaa_avps(req, routes=[parse_route("0.0.0.0/0 10.1.0.254 10"),
                                         parse_route("10.1.0.0/16 0.0.0.0 1")],
                            filters=[parse_filter("permit in ip from assigned to 10.1.0.0/16")],
                            reply_message=None, certificate_pem="PEM")
    ans = parse_aaa(decode(_msg([A.make(C.AVP_RESULT_CODE, 2001)] + answer, C.CMD_AA,
                                C.APP_NASREQ, request=False)), 0.01)
    assert ans.ok and ans.certificate_pem == "PEM"
    home, default = ans.home_and_default()
    assert default.gateway == "10.1.0.254" and home.prefix == "10.1.0.0/16"
    assert home.metric < default.metric


def test_aar_without_authenticator_is_missing_avp():
    _, avp_list = build_aar(origin_host="s", origin_realm="h", destination_realm="h", identity="n",
                            auth_request_type=C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE)
    with pytest.raises(MalformedMessage) as e:
        parse_aar(decode(_msg(avp_list, C.CMD_AA, C.APP_NASREQ)))
    assert e.value.result_code == C.RESULT_MISSING_AVP


def test_answer_with_unreadable_rule_is_not_success():
    answer = [A.make(C.AVP_RESULT_CODE, 2001), A.make(C.AVP_NAS_FILTER_RULE, "allow everything")]
    ans = parse_aaa(decode(_msg(answer, C.CMD_AA, C.APP_NASREQ, request=False)), 0.0)
    assert not ans.ok and ans.invalid_rules == ["allow everything"]


@pytest.mark.parametrize("text", [
    "permit in ip from assigned to 10.1.0.0/16",
    "deny out 6 from !192.0.2.0/24 80,443 to assigned 1000-2000 established",
    "permit in 17 from any to 10.1.2.3/32 53",
])
def test_filter_rules_roundtrip(text):
    assert parse_filter(text).to_avp_text() == text


@pytest.mark.parametrize("text", [
    "allow in ip from any to any", "permit sideways ip from any to any",
    "permit in ip from 300.1.1.1 to any", "permit in ip any to any",
    "permit in ip from any to any 70000", "permit in ip from any to any bogus",
])
def test_bad_filter_rules_are_refused(text):
    with pytest.raises(RuleError):
        parse_filter(text)


def test_routes():
    r = parse_route("10.1.0.7/16 0.0.0.0 1")
    assert r.prefix == "10.1.0.0/16" and not r.is_default
    assert parse_route("0.0.0.0/0 10.1.0.254 10").is_default
    for bad in ("10.1.0.0/16", "10.1.0.0/16 gw 1", "10.1.0.0/16 0.0.0.0 -1"):
        with pytest.raises(RuleError):
            parse_route(bad)


def _scapy_avp(code, value, vendor=0):
    from scapy.contrib import diameter as sd
    return sd.AVP([code, vendor] if vendor else code, val=value)


def test_codec_bytes_equal_scapys_encoding_of_the_same_message():
    """scapy stays the declaration: for the AVP kinds we send (UTF8String, OctetString,
    Unsigned32, Enumerated, Address, Grouped, vendor AVPs) our codec writes exactly the
    bytes scapy's own DiamG builds, and scapy reads our bytes back to the same values."""
    from scapy.contrib import diameter as sd
    ours = [A.make(C.AVP_ORIGIN_HOST, "msr1.home.example"),
            A.make_address(C.AVP_HOST_IP_ADDRESS, "192.0.2.7"),
            A.make(C.AVP_VENDOR_ID, C.VENDOR_TESTBED),
            A.make(C.AVP_AUTH_REQUEST_TYPE, C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE),
            A.make(C.AVP_USER_PASSWORD, b"\x00\x01\xfe\xff"),
            A.make(C.AVP_VENDOR_SPECIFIC_APPLICATION_ID,
                   [A.make(C.AVP_VENDOR_ID, 10415), A.make(C.AVP_AUTH_APPLICATION_ID, 16777251)]),
            A.make(C.AVP_TB_CERTIFICATE, "PEM-", vendor=C.VENDOR_TESTBED)]
    theirs = [_scapy_avp(C.AVP_ORIGIN_HOST, b"msr1.home.example"),
              _scapy_avp(C.AVP_HOST_IP_ADDRESS, "192.0.2.7"),
              _scapy_avp(C.AVP_VENDOR_ID, C.VENDOR_TESTBED),
              _scapy_avp(C.AVP_AUTH_REQUEST_TYPE, C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE),
              _scapy_avp(C.AVP_USER_PASSWORD, b"\x00\x01\xfe\xff"),
              _scapy_avp(C.AVP_VENDOR_SPECIFIC_APPLICATION_ID,
                         [_scapy_avp(C.AVP_VENDOR_ID, 10415),
                          _scapy_avp(C.AVP_AUTH_APPLICATION_ID, 16777251)]),
              _scapy_avp(C.AVP_TB_CERTIFICATE, b"PEM-", C.VENDOR_TESTBED)]
    data = _msg(ours, C.CMD_AA, C.APP_NASREQ)
    ref = bytes(sd.DiamG(version=1, drFlags=0x80, drCode=C.CMD_AA, drAppId=C.APP_NASREQ,
                         drHbHId=7, drEtEId=9, avpList=theirs))
    assert data == ref
    pkt = decode(data).pkt
    assert [int(a.avpCode) for a in pkt.avpList] == [a.code for a in ours]
    assert pkt.avpList[2].val == C.VENDOR_TESTBED and pkt.avpList[6].val == b"PEM-"


def test_unknown_mandatory_avp_inside_groups_is_found_with_its_path():
    from testbed.diameter.peer import first_unknown_mandatory
    unknown = A.make(65000, b"?", mandatory=True)
    inner = A.make(C.AVP_PROXY_INFO, [A.make(C.AVP_PROXY_HOST, "p.example"), unknown])
    m = decode(_msg([A.make(C.AVP_ORIGIN_HOST, "a"), inner], C.CMD_DEVICE_WATCHDOG))
    failed = first_unknown_mandatory(m.avps)
    # Failed-AVP content: Proxy-Info holding only the offending AVP (RFC 6733 7.5)
    assert failed == A.make(C.AVP_PROXY_INFO, [unknown]).encode()
    assert first_unknown_mandatory(decode(_msg([A.make(C.AVP_PROXY_INFO, [
        A.make(C.AVP_PROXY_HOST, "p.example"), A.make(65000, b"?", mandatory=False)])])).avps) is None
