"""RFC 6733 edge cases of the server, one input each, over real TCP on loopback (issue 11, 3).

Each case sends one request from a hand-driven peer and checks the answer's
Result-Code, its E bit, the Failed-AVP it carries and whether the server closed
the connection. Unknown AVPs with the M bit are checked at every depth of
Grouped AVPs (a DWR's Proxy-Info and a CER's Vendor-Specific-Application-Id
were answered 2001 before); the same AVPs without the M bit are the negative
control (2001).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from diameter_testkit import REALM, RawPeer, make_backend, run, serving
from testbed.diameter import avps as A
from testbed.diameter import constants as C
from testbed.diameter.message import Message, decode, encode
from testbed.diameter.nasreq import parse_aaa

pytestmark = pytest.mark.timeout(60)

HOST = "raw.home.example"
UNKNOWN_M = A.make(65000, b"?", mandatory=True)
UNKNOWN_NOT_M = A.make(65000, b"?", mandatory=False)


def proxy_info(*extra: A.Avp) -> A.Avp:
    return A.make(C.AVP_PROXY_INFO, [A.make(C.AVP_PROXY_HOST, "proxy.home.example"),
                                     A.make(C.AVP_PROXY_STATE, b"state-1"), *extra])


def vsai(*extra: A.Avp) -> A.Avp:
    return A.make(C.AVP_VENDOR_SPECIFIC_APPLICATION_ID,
                  [A.make(C.AVP_VENDOR_ID, 10415), A.make(C.AVP_AUTH_APPLICATION_ID, C.APP_NASREQ), *extra])


def cer_avps(*, drop: int | None = None, extra: tuple[A.Avp, ...] = (),
             host_ip: A.Avp | None = None, apps: tuple[int, ...] = (C.APP_NASREQ,),
             host: str = HOST) -> list[A.Avp]:
    avps = [A.make(C.AVP_ORIGIN_HOST, host), A.make(C.AVP_ORIGIN_REALM, REALM),
            host_ip or A.make_address(C.AVP_HOST_IP_ADDRESS, "127.0.0.1"),
            A.make(C.AVP_VENDOR_ID, 0), A.make(C.AVP_PRODUCT_NAME, "raw-test")]
    avps += [A.make(C.AVP_AUTH_APPLICATION_ID, a) for a in apps]
    avps += list(extra)
    return [a for a in avps if a.code != drop]


def dwr_avps(*extra: A.Avp, state_id: int | None = None) -> list[A.Avp]:
    out = [A.make(C.AVP_ORIGIN_HOST, HOST), A.make(C.AVP_ORIGIN_REALM, REALM)]
    if state_id is not None:
        out.append(A.make(C.AVP_ORIGIN_STATE_ID, state_id))
    return out + list(extra)


def raw_avp(code: int, flags: int, data: bytes) -> bytes:
    length = 8 + len(data)
    return code.to_bytes(4, "big") + bytes([flags]) + length.to_bytes(3, "big") + data + \
        b"\0" * (-length % 4)


def with_raw_avp(message: bytes, avp: bytes) -> bytes:
    data = message + avp
    return data[:1] + len(data).to_bytes(3, "big") + data[4:]


@dataclass
class Case:
    name: str
    build: Callable[[RawPeer], bytes]
    result_code: int
    open_first: bool = False
    closes: bool = False
    failed_avp: bytes | None = None  # expected Failed-AVP payload (None: no check)
    counters: dict[str, int] = field(default_factory=dict)


def _dwr(raw: RawPeer, *extra: A.Avp) -> bytes:
    return raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON, dwr_avps(*extra))


def _cer(raw: RawPeer, **kw: Any) -> bytes:
    return raw.request(C.CMD_CAPABILITIES_EXCHANGE, C.APP_COMMON, cer_avps(**kw))


CASES = [
    Case("dwr proxy-info unknown M avp", lambda r: _dwr(r, proxy_info(UNKNOWN_M)),
         C.RESULT_AVP_UNSUPPORTED, open_first=True,
         failed_avp=A.make(C.AVP_PROXY_INFO, [UNKNOWN_M]).encode(), counters={"avp_unsupported": 1}),
    Case("dwr proxy-info unknown avp without M", lambda r: _dwr(r, proxy_info(UNKNOWN_NOT_M)),
         C.RESULT_SUCCESS, open_first=True),
    Case("dwr unknown M avp two groups deep",
         lambda r: _dwr(r, proxy_info(A.make(C.AVP_VENDOR_SPECIFIC_APPLICATION_ID, [UNKNOWN_M]))),
         C.RESULT_AVP_UNSUPPORTED, open_first=True,
         failed_avp=A.make(C.AVP_PROXY_INFO, [A.make(C.AVP_VENDOR_SPECIFIC_APPLICATION_ID,
                                                     [UNKNOWN_M])]).encode()),
    Case("cer vsai unknown M avp", lambda r: _cer(r, extra=(vsai(UNKNOWN_M),)),
         C.RESULT_AVP_UNSUPPORTED, closes=True,
         failed_avp=A.make(C.AVP_VENDOR_SPECIFIC_APPLICATION_ID, [UNKNOWN_M]).encode()),
    Case("cer vsai unknown avp without M", lambda r: _cer(r, extra=(vsai(UNKNOWN_NOT_M),)),
         C.RESULT_SUCCESS),
    Case("cer without host-ip-address", lambda r: _cer(r, drop=C.AVP_HOST_IP_ADDRESS),
         C.RESULT_MISSING_AVP, closes=True,
         failed_avp=A.make(C.AVP_HOST_IP_ADDRESS, b"").encode()),
    Case("cer without vendor-id", lambda r: _cer(r, drop=C.AVP_VENDOR_ID),
         C.RESULT_MISSING_AVP, closes=True, failed_avp=A.make(C.AVP_VENDOR_ID, 0).encode()),
    Case("cer no common application", lambda r: _cer(r, apps=(16777251,)),
         C.RESULT_NO_COMMON_APPLICATION, closes=True),
    Case("cer only in vsai common application", lambda r: _cer(r, apps=(), extra=(vsai(),)),
         C.RESULT_SUCCESS),
    Case("cer host-ip-address of unknown family",
         lambda r: _cer(r, host_ip=A.make(C.AVP_HOST_IP_ADDRESS, b"\x00\x63\x7f\x00\x00\x01")),
         C.RESULT_INVALID_AVP_VALUE, closes=True,
         failed_avp=A.make(C.AVP_HOST_IP_ADDRESS, b"\x00\x63\x7f\x00\x00\x01").encode()),
    Case("cer origin-host not utf-8",
         lambda r: r.request(C.CMD_CAPABILITIES_EXCHANGE, C.APP_COMMON,
                             [A.make(C.AVP_ORIGIN_HOST, b"\xff\xfe")] + cer_avps()[1:]),
         C.RESULT_INVALID_AVP_VALUE, closes=True, failed_avp=A.make(C.AVP_ORIGIN_HOST, b"\xff\xfe").encode()),
    Case("cer inband-security tls only",
         lambda r: _cer(r, extra=(A.make(C.AVP_INBAND_SECURITY_ID, C.INBAND_SECURITY_TLS),)),
         C.RESULT_NO_COMMON_SECURITY, closes=True),
    Case("cer inband-security none offered",
         lambda r: _cer(r, extra=(A.make(C.AVP_INBAND_SECURITY_ID, C.INBAND_SECURITY_TLS),
                                  A.make(C.AVP_INBAND_SECURITY_ID, C.NO_INBAND_SECURITY))),
         C.RESULT_SUCCESS),
    Case("cer with P bit", lambda r: r.request(C.CMD_CAPABILITIES_EXCHANGE, C.APP_COMMON, cer_avps(),
                                                proxiable=True),
         C.RESULT_INVALID_HDR_BITS, closes=True),
    Case("aar without P bit",
         lambda r: r.request(C.CMD_AA, C.APP_NASREQ, [A.make(C.AVP_USER_NAME, "mn1.home.example")]),
         C.RESULT_INVALID_HDR_BITS, open_first=True),
    Case("request with E bit", lambda r: r.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON, dwr_avps(),
                                                    error=True),
         C.RESULT_INVALID_HDR_BITS, open_first=True),
    Case("cer vendor-id of 8 octets",
         lambda r: with_raw_avp(_cer(r, drop=C.AVP_VENDOR_ID), raw_avp(C.AVP_VENDOR_ID, 0x40, b"\0" * 8)),
         C.RESULT_INVALID_AVP_LENGTH, closes=True),
    Case("dwr avp length past its group",
         lambda r: with_raw_avp(_dwr(r), raw_avp(C.AVP_PROXY_INFO, 0x40,
                                                  raw_avp(C.AVP_PROXY_HOST, 0x40, b"p.example")[:5]
                                                  + (200).to_bytes(3, "big") + b"p.example\0\0\0")),
         C.RESULT_INVALID_AVP_LENGTH, open_first=True),
    Case("dwr reserved avp flag bits",  # ignored by the receiver, RFC 6733 4.1
         lambda r: with_raw_avp(_dwr(r), raw_avp(C.AVP_PROXY_STATE, 0x41, b"s")),
         C.RESULT_SUCCESS, open_first=True),
    Case("dwr reserved header bits",  # ignored by the receiver, RFC 6733 3
         lambda r: (lambda b: b[:4] + bytes([b[4] | 0x0F]) + b[5:])(_dwr(r)),
         C.RESULT_SUCCESS, open_first=True),
    Case("dwr avp with V bit and vendor 0",
         lambda r: with_raw_avp(_dwr(r), raw_avp(C.AVP_PROXY_STATE, 0x80, b"\0\0\0\0s")),
         C.RESULT_INVALID_AVP_BITS, open_first=True),
    Case("cer of version 2",
         lambda r: b"\x02" + _cer(r)[1:], C.RESULT_UNSUPPORTED_VERSION, closes=True),
    Case("dwr of version 2", lambda r: b"\x02" + _dwr(r)[1:], C.RESULT_UNSUPPORTED_VERSION,
         open_first=True, closes=True),
    Case("dwr before cer", _dwr, C.RESULT_UNKNOWN_PEER, closes=True),
]


async def _answer_and_close(case: Case) -> tuple[Message | None, bool, dict[str, int], int]:
    async with serving(make_backend()) as server:
        raw = await RawPeer.connect(server.port)
        if case.open_first:
            await raw.open(HOST)
        await raw.send(case.build(raw))
        ans = await raw.recv()
        closed = await raw.closed_by_server(timeout=0.5)
        raw.close()
        return ans, closed, server.counters.snapshot(), raw.hbh


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rfc6733_answer(case: Case):
    ans, closed, counters, hbh = run(_answer_and_close(case))
    assert ans is not None and not ans.is_request
    assert ans.result_code == case.result_code, (ans.result_code, ans.text(C.AVP_ERROR_MESSAGE))
    # E bit exactly on protocol errors (3xxx), RFC 6733 7.2
    assert bool(ans.header.flags & C.FLAG_ERROR) == C.is_protocol_error(case.result_code)
    assert ans.header.hop_by_hop == hbh  # the answer is to the request we sent
    assert len(ans.find_all(C.AVP_ORIGIN_HOST)) == 1 and len(ans.find_all(C.AVP_RESULT_CODE)) == 1
    assert ans.find(C.AVP_EXPERIMENTAL_RESULT) is None  # never both (7.6)
    if ans.code == C.CMD_CAPABILITIES_EXCHANGE and not C.is_protocol_error(case.result_code):
        # CEA carries our capabilities whatever the Result-Code (5.3.2)
        for code in (C.AVP_HOST_IP_ADDRESS, C.AVP_VENDOR_ID, C.AVP_PRODUCT_NAME):
            assert ans.find(code) is not None, A.avp_name(code)
    if case.failed_avp is not None:
        failed = ans.find(C.AVP_FAILED_AVP)
        assert failed is not None and failed.data == case.failed_avp
    if case.result_code == C.RESULT_INVALID_AVP_LENGTH:
        assert ans.find(C.AVP_FAILED_AVP) is not None
    assert closed == case.closes
    for name, n in case.counters.items():
        assert counters.get(name) == n, counters


def test_second_connection_of_a_live_origin_host_is_refused_then_replaces_a_dead_one():
    """One connection per Origin-Host (RFC 6733 5.6.1 R-Reject; freeDiameter answers
    DIAMETER_UNABLE_TO_COMPLY): refused while the first answers DWR; when the first
    stays silent it is closed and the new connection is taken."""
    async def main():
        async with serving(make_backend(), duplicate_probe_s=0.5) as server:
            first = await RawPeer.connect(server.port)
            await first.open("msr1.home.example")
            second = await RawPeer.connect(server.port)
            await second.send(second.cer("msr1.home.example"))
            # the server probes the first connection: answer its DWR
            dwr = await first.recv()
            assert dwr.code == C.CMD_DEVICE_WATCHDOG and dwr.is_request
            await first.send(encode(C.CMD_DEVICE_WATCHDOG, request=False, app_id=0,
                                    hop_by_hop=dwr.header.hop_by_hop, end_to_end=dwr.header.end_to_end,
                                    avp_list=[A.make(C.AVP_RESULT_CODE, C.RESULT_SUCCESS),
                                              A.make(C.AVP_ORIGIN_HOST, "msr1.home.example"),
                                              A.make(C.AVP_ORIGIN_REALM, REALM)]))
            cea = await second.recv()
            assert cea.result_code == C.RESULT_UNABLE_TO_COMPLY
            assert await second.closed_by_server()
            second.close()
            # the first connection is still served
            await first.send(first.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON, dwr_avps()))
            assert (await first.recv()).result_code == C.RESULT_SUCCESS
            # now the first goes silent: the third connection replaces it
            third = await RawPeer.connect(server.port)
            await third.send(third.cer("msr1.home.example"))
            cea = await third.recv(timeout=5.0)
            assert cea.result_code == C.RESULT_SUCCESS
            assert await first.closed_by_server(timeout=2.0, drain=True)
            first.close()
            third.close()
            c = server.counters.snapshot()
        assert c["duplicate_connections_rejected"] == 1 and c["duplicate_connections_replaced"] == 1
    run(main())


def test_changed_origin_state_id_is_seen_as_a_restart():
    async def main():
        async with serving(make_backend()) as server:
            raw = await RawPeer.connect(server.port)
            await raw.send(raw.request(C.CMD_CAPABILITIES_EXCHANGE, C.APP_COMMON,
                                       cer_avps(extra=(A.make(C.AVP_ORIGIN_STATE_ID, 7),))))
            assert (await raw.recv()).result_code == C.RESULT_SUCCESS
            for state_id in (7, 8):
                await raw.send(raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON,
                                           dwr_avps(state_id=state_id)))
                assert (await raw.recv()).result_code == C.RESULT_SUCCESS
            raw.close()
            assert server.counters.get("peer_restarts") == 1
    run(main())


def test_answer_with_experimental_result_is_not_success():
    er = A.make(C.AVP_EXPERIMENTAL_RESULT, [A.make(C.AVP_VENDOR_ID, 10415),
                                            A.make(C.AVP_EXPERIMENTAL_RESULT_CODE, 2001)])
    msg = decode(encode(C.CMD_AA, request=False, app_id=C.APP_NASREQ, hop_by_hop=1, end_to_end=1,
                        avp_list=[A.make(C.AVP_ORIGIN_HOST, "x"), er]))
    assert msg.result_code is None and msg.experimental_result == (10415, 2001)
    ans = parse_aaa(msg, 0.0)
    assert not ans.ok and "Experimental-Result vendor 10415 code 2001" in ans.reason
