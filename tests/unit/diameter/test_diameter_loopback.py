"""Our client and raw peers against our server, over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from diameter_testkit import (DEFAULT_FILTERS, DEFAULT_ROUTES, FAKE_PEM, NODE, REALM, SECRET,
                              RawPeer, client_of, make_backend, run, serving)
from testbed.diameter import avps as A
from testbed.diameter import constants as C
from testbed.diameter.client import DiameterClient, DiameterUnavailable
from testbed.diameter.nasreq import build_aar
from testbed.diameter.peer import LocalIdentity
from testbed.diameter.server import AuthResult
from testbed.diameter.static_backend import compute_authenticator

pytestmark = pytest.mark.timeout(60)


def test_attach_success_returns_routes_filters_certificate(tmp_path):
    async def main():
        xlog = tmp_path / "msm-diameter.jsonl"
        async with serving(make_backend(), exchange_log_path=str(xlog)) as server:
            async with client_of(server) as client:
                hello = b"AODV-RREP bytes the node signed"
                ans = await client.authenticate(NODE, compute_authenticator(SECRET, hello),
                                                authenticated_data=hello, node_address="10.1.0.5",
                                                want_certificate=True)
                assert ans.ok and ans.result_code == C.RESULT_SUCCESS
                assert [r.to_avp_text() for r in ans.routes] == DEFAULT_ROUTES
                assert [f.to_avp_text() for f in ans.filters] == DEFAULT_FILTERS
                assert ans.certificate_pem == FAKE_PEM
                assert 0 < ans.latency_s < 2.0
                home, default = ans.home_and_default()
                assert home.metric < default.metric
            counters = server.counters.snapshot()
        assert counters["aa_success"] == 1 and counters["rx_CER"] == 1 and counters["tx_CEA"] == 1
        records = [json.loads(line) for line in xlog.read_text().splitlines()]
        auth = [r for r in records if r["event"] == "auth"]
        assert len(auth) == 1 and auth[0]["identity"] == NODE and auth[0]["result_code"] == 2001
        assert auth[0]["sink"] == "msr1.home.example" and auth[0]["certificate_returned"]
        cmds = [(r["dir"], r["cmd"]) for r in records if r["event"] == "message"]
        assert ("rx", "CER") in cmds and ("tx", "CEA") in cmds and ("rx", "AAR") in cmds
        assert ("tx", "AAA") in cmds and ("rx", "DPR") in cmds and ("tx", "DPA") in cmds
    run(main())


def test_bad_authenticator_and_unknown_user_are_rejected():
    async def main():
        async with serving(make_backend()) as server:
            async with client_of(server) as client:
                hello = b"hello"
                forged = compute_authenticator("guessed secret", hello)
                bad = await client.authenticate(NODE, forged, authenticated_data=hello)
                assert not bad.ok and bad.result_code == C.RESULT_AUTHENTICATION_REJECTED
                assert bad.routes == [] and bad.filters == [] and bad.reason == "bad authenticator"
                unknown = await client.authenticate("visitor.other.example",
                                                    compute_authenticator(SECRET, hello),
                                                    authenticated_data=hello)
                assert not unknown.ok and unknown.result_code == C.RESULT_AUTHENTICATION_REJECTED
                assert unknown.reason == "unknown user"
                # the identity itself is the signed data when the sink sends none
                good = await client.authenticate(NODE, compute_authenticator(SECRET, NODE.encode()))
                assert good.ok
            c = server.counters.snapshot()
        assert c["aa_rejected"] == 2 and c["aa_success"] == 1
    run(main())


def test_certificate_fetch_authorize_only():
    async def main():
        async with serving(make_backend()) as server:
            async with client_of(server) as client:
                assert await client.fetch_certificate(NODE) == FAKE_PEM
                assert await client.fetch_certificate("nobody.home.example") is None
                ans = await client.authorize(NODE, node_address="10.1.0.5")
                assert ans.ok and len(ans.routes) == 2
                refused = await client.authorize("mn2.home.example")
                assert not refused.ok and refused.routes == []
            c = server.counters.snapshot()
        assert c["certificate_requests"] == 4 and c["certificates_returned"] == 2
    run(main())


def test_realm_not_served_and_backend_failure():
    class Broken:
        def authenticate(self, identity, authenticator, context):
            if identity == "bad-rules":
                return AuthResult(True, routes=["not a route"])
            raise RuntimeError("store down")

        def lookup_certificate(self, identity):
            return None

    async def main():
        async with serving(Broken()) as server:
            wrong = DiameterClient(LocalIdentity("msr9.other.example", "other.example"), "127.0.0.1",
                                   server.port, destination_realm="other.example", tc=0.2)
            await wrong.start()
            assert await wrong.wait_open(3)
            ans = await wrong.authenticate(NODE, b"x")
            assert ans.result_code == C.RESULT_REALM_NOT_SERVED and not ans.ok
            await wrong.stop()
            async with client_of(server) as client:
                ans = await client.authenticate(NODE, b"x")
                assert ans.result_code == C.RESULT_UNABLE_TO_COMPLY
                ans = await client.authenticate("bad-rules", b"x")
                assert ans.result_code == C.RESULT_UNABLE_TO_COMPLY and ans.routes == []
                assert client.is_open  # the connection survives a backend failure
            c = server.counters.snapshot()
        assert c["internal_errors"] == 1 and c["aa_backend_bad_rules"] == 1
    run(main())


def test_garbage_before_cer_is_counted_and_server_keeps_serving():
    async def main():
        async with serving(make_backend()) as server:
            raw = await RawPeer.connect(server.port)
            await raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 40)
            assert await raw.closed_by_server()
            raw.close()
            raw = await RawPeer.connect(server.port)
            await raw.send(b"\x01\x00\x00")  # 3 bytes then hang up
            raw.close()
            await asyncio.sleep(0.1)
            async with client_of(server) as client:
                ans = await client.authenticate(NODE, compute_authenticator(SECRET, NODE.encode()))
                assert ans.ok
            c = server.counters.snapshot()
        assert c["malformed"] >= 1 and c["malformed_framing"] == 1
        assert c["connections_accepted"] == 3
    run(main())


def test_malformed_and_unknown_requests_after_open():
    async def main():
        async with serving(make_backend()) as server:
            raw = await RawPeer.connect(server.port)
            cea = await raw.open()
            assert A.as_address(cea.find(C.AVP_HOST_IP_ADDRESS)) == "127.0.0.1"
            assert cea.integer(C.AVP_AUTH_APPLICATION_ID) == C.APP_NASREQ
            assert cea.text(C.AVP_ORIGIN_HOST) == "msm.home.example"
            # unknown command -> 3001 with the E bit, connection stays
            await raw.send(raw.request(9999, C.APP_COMMON, [A.make(C.AVP_ORIGIN_HOST, "raw.home.example"),
                                                            A.make(C.AVP_ORIGIN_REALM, REALM)]))
            ans = await raw.recv()
            assert ans.result_code == C.RESULT_COMMAND_UNSUPPORTED
            assert ans.header.flags & C.FLAG_ERROR and ans.header.hop_by_hop == raw.hbh
            # application we never advertised -> 3007
            await raw.send(raw.request(C.CMD_AA, 16777251, []))
            assert (await raw.recv()).result_code == C.RESULT_APPLICATION_UNSUPPORTED
            # AVP whose length runs past the message -> 5014 with Failed-AVP
            good = raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON,
                               [A.make(C.AVP_ORIGIN_HOST, "raw.home.example")])
            bad = good[:25] + (500).to_bytes(3, "big") + good[28:]
            await raw.send(bad)
            ans = await raw.recv()
            assert ans.result_code == C.RESULT_INVALID_AVP_LENGTH and ans.find(C.AVP_FAILED_AVP)
            # unknown AVP with the M bit -> 5001
            odd = A.make(65000, "x", mandatory=True)
            await raw.send(raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON, [odd]))
            assert (await raw.recv()).result_code == C.RESULT_AVP_UNSUPPORTED
            # AAR without mandatory AVPs -> 5005
            await raw.send(raw.request(C.CMD_AA, C.APP_NASREQ, [A.make(C.AVP_USER_NAME, NODE)], proxiable=True))
            assert (await raw.recv()).result_code == C.RESULT_MISSING_AVP
            # still open: a DWR is answered
            await raw.send(raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON,
                                       [A.make(C.AVP_ORIGIN_HOST, "raw.home.example"),
                                        A.make(C.AVP_ORIGIN_REALM, REALM)]))
            assert (await raw.recv()).result_code == C.RESULT_SUCCESS
            # a message with a broken length word: answer 5015 and close
            await raw.send(b"\x01\x00\x00\x13" + b"\x80\x00\x01\x18" + b"\0" * 12)
            ans = await raw.recv()
            assert ans is not None and ans.result_code == C.RESULT_INVALID_MESSAGE_LENGTH
            assert await raw.closed_by_server()
            raw.close()
            c = server.counters.snapshot()
        assert c["unknown_command"] == 1 and c["unsupported_application"] == 1
        assert c["malformed"] >= 3 and c["avp_unsupported"] == 1
    run(main())


def test_request_before_cer_and_cer_without_common_app():
    async def main():
        async with serving(make_backend()) as server:
            raw = await RawPeer.connect(server.port)
            await raw.send(raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON,
                                       [A.make(C.AVP_ORIGIN_HOST, "x"), A.make(C.AVP_ORIGIN_REALM, REALM)]))
            ans = await raw.recv()
            assert ans.result_code == C.RESULT_UNKNOWN_PEER
            assert await raw.closed_by_server()
            raw.close()
            raw = await RawPeer.connect(server.port)
            await raw.send(raw.cer(apps=(16777251,)))
            ans = await raw.recv()
            assert ans.result_code == C.RESULT_NO_COMMON_APPLICATION
            assert await raw.closed_by_server()
            raw.close()
            raw = await RawPeer.connect(server.port)
            await raw.send(raw.request(C.CMD_CAPABILITIES_EXCHANGE, C.APP_COMMON,
                                       [A.make(C.AVP_ORIGIN_HOST, "x")]))
            ans = await raw.recv()
            assert ans.result_code == C.RESULT_MISSING_AVP and ans.find(C.AVP_FAILED_AVP)
            raw.close()
            # a peer advertising only Relay is accepted (freeDiameter does this)
            raw = await RawPeer.connect(server.port)
            await raw.send(raw.cer(apps=(C.APP_RELAY,)))
            assert (await raw.recv()).result_code == C.RESULT_SUCCESS
            raw.close()
            assert server.counters.get("requests_before_cer") == 1
    run(main())


def test_watchdog_exchange_and_dead_peer_detection():
    async def main():
        async with serving(make_backend(), tw=0.5) as server:
            async with client_of(server, tw=30.0) as client:
                await asyncio.sleep(1.6)
                assert server.counters.get("tx_DWR") >= 2 and server.counters.get("rx_DWA") >= 2
                assert client.counters.get("tx_DWA") >= 2 and client.is_open
            # A peer that opens and then never answers DWR is declared dead.
            raw = await RawPeer.connect(server.port)
            await raw.open()
            t0 = time.monotonic()
            dwr = await raw.recv()
            assert dwr.code == C.CMD_DEVICE_WATCHDOG and dwr.is_request
            assert await raw.closed_by_server(timeout=3.0)
            assert time.monotonic() - t0 < 2.5
            raw.close()
            assert server.counters.get("watchdog_failures") == 1
    run(main())


def test_retransmitted_request_answered_from_cache():
    async def main():
        calls = []
        backend = make_backend()
        original = backend.authenticate

        def counting(identity, authenticator, context):
            calls.append(identity)
            return original(identity, authenticator, context)
        backend.authenticate = counting
        async with serving(backend) as server:
            raw = await RawPeer.connect(server.port)
            await raw.open("msr7.home.example")
            _, avp_list = build_aar(origin_host="msr7.home.example", origin_realm=REALM,
                                    destination_realm=REALM, identity=NODE,
                                    auth_request_type=C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE,
                                    authenticator=compute_authenticator(SECRET, NODE.encode()))
            first = raw.request(C.CMD_AA, C.APP_NASREQ, avp_list, proxiable=True)
            await raw.send(first)
            a1 = await raw.recv()
            again = bytearray(first)
            again[4] |= C.FLAG_RETRANSMIT
            await raw.send(bytes(again))
            a2 = await raw.recv()
            assert a1.result_code == a2.result_code == C.RESULT_SUCCESS
            assert a1.raw == a2.raw and len(calls) == 1
            raw.close()
    run(main())


def test_client_reports_unavailable_server_and_reconnects():
    async def main():
        backend = make_backend()
        async with serving(backend) as server:
            port = server.port
        client = DiameterClient(LocalIdentity("msr1.home.example", REALM), "127.0.0.1", port,
                                destination_realm=REALM, tc=0.2, request_timeout=0.5)
        await client.start()
        with pytest.raises(DiameterUnavailable):
            await client.authenticate(NODE, b"x")
        async with serving(backend, port=port) as server:  # MSM comes back on the same port
            assert await client.wait_open(3.0)
            ans = await client.authenticate(NODE, compute_authenticator(SECRET, NODE.encode()))
            assert ans.ok
            await client.stop()
        assert client.counters.get("connect_failures") >= 1
    run(main())


def test_mutated_messages_never_break_the_server():
    """Randomly corrupted CER/AAR/DWR bytes (fixed seed): every one is answered or
    dropped and counted; the server stays up and no handler crashes."""
    import random

    async def main():
        rng = random.Random(5)
        async with serving(make_backend()) as server:
            _, aar = build_aar(origin_host="raw.home.example", origin_realm=REALM,
                               destination_realm=REALM, identity=NODE,
                               auth_request_type=C.AUTH_REQUEST_AUTHORIZE_AUTHENTICATE,
                               authenticator=b"a" * 32, authenticated_data=b"hello",
                               node_address="10.1.0.5", want_certificate=True)
            raw = await RawPeer.connect(server.port)
            await raw.open()
            templates = [raw.request(C.CMD_AA, C.APP_NASREQ, aar, proxiable=True), raw.cer(),
                         raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON,
                                     [A.make(C.AVP_ORIGIN_HOST, "raw.home.example"),
                                      A.make(C.AVP_ORIGIN_REALM, REALM)])]
            sent, unanswered = 0, []
            for i in range(150):
                b = bytearray(templates[i % 3])
                for _ in range(rng.randint(1, 3)):
                    b[rng.randrange(4, len(b))] = rng.randrange(256)  # keep the length word
                if raw.writer.is_closing() or raw.reader.at_eof():
                    raw.close()
                    raw = await RawPeer.connect(server.port)
                    await raw.open()
                await raw.send(bytes(b))
                sent += 1
                if b[4] & C.FLAG_REQUEST:
                    try:
                        await raw.recv(timeout=2.0)  # None = closed: also a valid reaction
                    except asyncio.TimeoutError:
                        unanswered.append(bytes(b).hex())
                    except ConnectionError:
                        pass
            raw.close()
            async with client_of(server) as client:  # still serving
                ans = await client.authenticate(NODE, compute_authenticator(SECRET, NODE.encode()))
                assert ans.ok
            c = server.counters.snapshot()
        assert sent == 150 and c.get("internal_errors", 0) == 0, c
        assert not unanswered, unanswered[:3]
        assert c.get("malformed", 0) > 10, c
    run(main())


def test_silent_connection_is_closed_after_cer_timeout():
    async def main():
        async with serving(make_backend(), cer_timeout=0.3) as server:
            raw = await RawPeer.connect(server.port)
            t0 = time.monotonic()
            assert await raw.closed_by_server(timeout=3.0)
            assert 0.25 < time.monotonic() - t0 < 2.0
            raw.close()
            assert server.counters.get("cer_timeouts") == 1
    run(main())


def test_client_sees_cea_failure_and_ids_match():
    async def main():
        async with serving(make_backend()) as server:
            eap_only = DiameterClient(LocalIdentity("msr5.home.example", REALM,
                                                    auth_application_ids=(5,)),
                                      "127.0.0.1", server.port, destination_realm=REALM, tc=0.2)
            await eap_only.start()
            assert not await eap_only.wait_open(0.5)
            assert "5010" in (eap_only.last_error or "")
            await eap_only.stop()
            assert server.counters.get("cer_rejected") >= 1
            # hop-by-hop and end-to-end ids of answers match their requests
            raw = await RawPeer.connect(server.port)
            await raw.open()
            ids = []
            for _ in range(3):
                req = raw.request(C.CMD_DEVICE_WATCHDOG, C.APP_COMMON,
                                  [A.make(C.AVP_ORIGIN_HOST, "raw.home.example"),
                                   A.make(C.AVP_ORIGIN_REALM, REALM)])
                await raw.send(req)
                ans = await raw.recv()
                assert (ans.header.hop_by_hop, ans.header.end_to_end) == (raw.hbh, raw.hbh)
                assert not ans.is_request and ans.code == C.CMD_DEVICE_WATCHDOG
                ids.append(ans.header.hop_by_hop)
            assert len(set(ids)) == 3
            raw.close()
    run(main())


def test_authenticate_only_returns_no_policy():
    async def main():
        async with serving(make_backend()) as server:
            raw = await RawPeer.connect(server.port)
            await raw.open("msr8.home.example")
            _, avp_list = build_aar(origin_host="msr8.home.example", origin_realm=REALM,
                                    destination_realm=REALM, identity=NODE,
                                    auth_request_type=C.AUTH_REQUEST_AUTHENTICATE_ONLY,
                                    authenticator=compute_authenticator(SECRET, NODE.encode()))
            await raw.send(raw.request(C.CMD_AA, C.APP_NASREQ, avp_list, proxiable=True))
            ans = await raw.recv()
            assert ans.result_code == C.RESULT_SUCCESS
            assert ans.find(C.AVP_FRAMED_ROUTE) is None and ans.find(C.AVP_NAS_FILTER_RULE) is None
            assert ans.integer(C.AVP_AUTH_REQUEST_TYPE) == C.AUTH_REQUEST_AUTHENTICATE_ONLY
            assert ans.text(C.AVP_SESSION_ID) == A.as_text(avp_list[0])
            assert ans.header.flags & C.FLAG_PROXIABLE
            raw.close()
    run(main())
