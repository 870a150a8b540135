"""The MSM's embedded DIAMETER server (claims 41-45, 56): config, store-backed answers,
and the agent process serving a real DIAMETER client."""
from __future__ import annotations

import json
import time

import pytest

from testbed.diameter import BlockingDiameterClient, LocalIdentity
from testbed.diameter.static_backend import compute_authenticator
from testbed.msm.ca import CertificateAuthority
from testbed.msm.config import ConfigError, parse_config
from testbed.msm.diameter_backend import StoreBackend
from testbed.msm.store import Store

from .harness import MsmProcess, free_port


@pytest.mark.parametrize("data,field", [
    ({"diameter": {"gateways": {"A": "nope"}}}, "diameter.gateways"),
    ({"diameter": {"port": 70000}}, "diameter.port"),
    ({"diameter": {"secret": {}}}, "diameter.secret"),
])
def test_bad_diameter_fields_are_named(data, field):
    with pytest.raises(ConfigError, match=field):
        parse_config(data)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "m.db"))
    s.apply_seed({
        "mvpns": [{"name": "A", "realm": "10.1.0.0/16", "sg_public": "203.0.113.1"},
                  {"name": "B", "realm": "10.1.0.0/16", "sg_public": "203.0.113.2"}],
        "users": [{"fqdn": "a.mwg.test", "mvpn": "A", "private_address": "10.1.0.5"},
                  {"fqdn": "b.mwg.test", "mvpn": "B", "private_address": "10.1.0.9"},
                  {"fqdn": "c.mwg.test", "mvpn": "A", "private_address": "10.1.0.6"}],
        "workgroups": [{"name": "W", "members": ["a.mwg.test", "b.mwg.test"]}],
    })
    yield s
    s.close()


def test_policy_routes_and_workgroup_filters(store):
    be = StoreBackend(store, {"a.mwg.test": "s"}, {})
    data = b"hello bytes"
    r = be.authenticate("A.mwg.test.", compute_authenticator("s", data),
                        {"mode": "authenticate", "authenticated_data": data, "node_address": "10.1.0.5"})
    assert r.ok
    # default via the realm's first host (no gateway configured), home range cheaper
    assert r.routes == ["0.0.0.0/0 10.1.0.1 10", "10.1.0.0/16 0.0.0.0 1"]
    assert "permit in ip from assigned to 10.1.0.9" in r.filters  # b: other M-VPN, same workgroup
    c = be.policy(store.user("c.mwg.test"))[1]
    assert not any("10.1.0.9" in f for f in c)  # c shares no workgroup with b


@pytest.mark.parametrize("ident,auth,ctx,reason", [
    ("x.mwg.test", b"", {"mode": "authenticate"}, "unknown user"),
    ("a.mwg.test", b"bad", {"mode": "authenticate", "authenticated_data": b"d"}, "bad authenticator"),
    ("c.mwg.test", b"x", {"mode": "authenticate"}, "user has no shared secret"),
    ("a.mwg.test", None, {"mode": "authorize_only", "node_address": "10.1.0.9"}, "not a.mwg.test's home address"),
])
def test_refusals(store, ident, auth, ctx, reason):
    r = StoreBackend(store, {"a.mwg.test": "s"}, {}).authenticate(ident, auth, ctx)
    assert not r.ok and reason in r.reason and not r.routes


def test_certificate_lookup_follows_issued_certs(store, tmp_path):
    be = StoreBackend(store, {}, {})
    assert be.lookup_certificate("a.mwg.test") is None
    ca = CertificateAuthority(str(tmp_path / "ca"), key_type="ec")
    pem = ca.issue_local("a", "a.mwg.test", "mn", [], ["a.mwg.test"])[0].cert_pem
    store.set_node_cert("a.mwg.test", pem)
    assert be.lookup_certificate("a.mwg.test.") == pem


def test_agent_process_serves_diameter(tmp_path):
    port = free_port()
    msm = MsmProcess(tmp_path, {
        "seed": {"mvpns": [{"name": "A", "realm": "10.1.0.0/16", "sg_public": "203.0.113.1"}],
                 "users": [{"fqdn": "a.mwg.test", "mvpn": "A", "private_address": "10.1.0.5"}]},
        "diameter": {"enabled": True, "address": "127.0.0.1", "port": port,
                     "exchange_log": str(tmp_path / "x.jsonl"), "secrets": {"a.mwg.test": "s"},
                     "gateways": {"A": "10.1.0.254"}}})
    msm.start()
    # The portal answers before the DIAMETER thread listens: wait for the MSM to say it serves.
    deadline = time.time() + 15
    while time.time() < deadline and not (msm.status_file.exists()
                                          and json.loads(msm.status_file.read_text() or "{}").get("diameter")):
        time.sleep(0.1)
    c = BlockingDiameterClient(LocalIdentity("msr.mwg.test", "mwg.test"), "127.0.0.1", port,
                               destination_realm="mwg.test")
    try:
        assert c.start(wait_open=10)
        ans = c.authenticate("a.mwg.test", compute_authenticator("s", b"a.mwg.test"))
        assert ans.ok and ans.home_and_default()[1].gateway == "10.1.0.254"
        assert not c.authenticate("a.mwg.test", b"forged").ok
        deadline = time.time() + 5
        while time.time() < deadline:
            st = json.loads(msm.status_file.read_text()).get("diameter") or {}
            if st.get("counters", {}).get("aa_rejected") == 1:
                break
            time.sleep(0.1)
        assert st["counters"]["aa_success"] == 1 and st["counters"]["aa_rejected"] == 1
    finally:
        c.stop()
        msm.stop()
