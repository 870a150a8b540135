"""The embedding paths: server on its own thread (the MSM is threaded), client
results handed into a selector loop (the AODV agent's loop is not asyncio)."""

from __future__ import annotations

import selectors
import threading
import time

import pytest

from diameter_testkit import FAKE_PEM, NODE, REALM, SECRET, make_backend
from testbed.diameter.client import BlockingDiameterClient, CompletionQueue, DiameterUnavailable
from testbed.diameter.peer import LocalIdentity
from testbed.diameter.server import DiameterServer
from testbed.diameter.static_backend import compute_authenticator

pytestmark = pytest.mark.timeout(60)


def _spin(sel: selectors.BaseSelector, until, timeout: float) -> int:
    """A tiny selector loop like the AODV agent's; returns how often it woke."""
    turns = 0
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        for key, _ in sel.select(0.01):
            key.data()
        turns += 1
    return turns


def test_threaded_server_and_nonblocking_client_in_a_selector_loop(tmp_path):
    server = DiameterServer(LocalIdentity("msm.home.example", REALM), make_backend(),
                            host="127.0.0.1", port=0, status_path=str(tmp_path / "st.json"))
    server.start_in_thread()
    client = BlockingDiameterClient(LocalIdentity("msr1.home.example", REALM), "127.0.0.1",
                                    server.port, destination_realm=REALM, tc=0.2)
    cq = CompletionQueue()
    sel = selectors.DefaultSelector()
    sel.register(cq, selectors.EVENT_READ, cq.run_pending)
    try:
        assert client.start(wait_open=5.0)
        results: list = []

        def on_done(answer, error):
            results.append((answer, error, threading.get_ident()))

        client.submit("authenticate", NODE, compute_authenticator(SECRET, b"h"),
                      authenticated_data=b"h", want_certificate=True, on_done=on_done, via=cq)
        client.submit("authenticate", NODE, b"forged", on_done=on_done, via=cq)
        client.submit("fetch_certificate", NODE, on_done=on_done, via=cq)
        assert results == []  # answers reach us only through the loop, never inside submit
        turns = _spin(sel, lambda: len(results) == 3, 5.0)
        assert len(results) == 3 and turns >= 1
        assert all(tid == threading.get_ident() for _, _, tid in results)
        by_kind = {type(a).__name__ + str(getattr(a, "ok", "")): a for a, _, _ in results}
        assert by_kind["AAAnswerTrue"].certificate_pem == FAKE_PEM
        assert by_kind["AAAnswerFalse"].result_code == 4001
        assert by_kind["str"] == FAKE_PEM
        assert server.counters.get("aa_success") == 2 and server.counters.get("aa_rejected") == 1
    finally:
        client.stop()
        server.stop_thread()
    assert server.counters.get("tx_DPA") == 1  # the client said goodbye properly
    # MSM gone: the error reaches the loop as DiameterUnavailable, nothing blocks.
    lonely = BlockingDiameterClient(LocalIdentity("msr1.home.example", REALM), "127.0.0.1",
                                    server.port, destination_realm=REALM, tc=0.2,
                                    request_timeout=0.3)
    try:
        lonely.start()
        errors: list = []
        lonely.submit("authenticate", NODE, b"x", on_done=lambda a, e: errors.append(e), via=cq)
        _spin(sel, lambda: bool(errors), 3.0)
        assert isinstance(errors[0], DiameterUnavailable)
    finally:
        lonely.stop()
        sel.close()
        cq.close()
