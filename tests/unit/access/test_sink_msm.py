"""A real sink asks a real MSM (embedded DIAMETER server over its SQLite store) on loopback.

Covers claims 40-46 (shared secret: routes and workgroup filters from the MSM, default +
home range, visitors), 50-56 (certificates: in the hello, fetched by DIAMETER; expired,
foreign-CA, bad signature and replay refused; the node checks the sink's certificate).
nftables is rendered, not applied here (test_policy_netns applies it).
"""
from __future__ import annotations

import json
import time

import pytest

from testbed.access import credentials as cr
from testbed.access import hello_auth as ha
from testbed.access.certdns import fetch_certificate
from testbed.access.config import parse, SinkConfig
from testbed.access.node import AccessNode, SinkRefused
from testbed.access.sink import AccessSink
from testbed.aodv.messages import parse_message
from testbed.msm.ca import CertificateAuthority
from testbed.common.enroll import issue_with_local_key, sign_local_key

from .conftest import Collector

SINK = "10.10.0.1"


def make_sink(msm, dclient, tmp_path, **over):
    dns_fetch = None
    if over.get("cert_source") == "dns":
        over["dns_server"] = "127.0.0.1"
        dns_fetch = lambda name: fetch_certificate(name, "127.0.0.1", msm.dns.port)  # noqa: E731
    cfg = {"address": SINK, "identity": "msr1.mwg.test", "nft": False, "refused_holddown_ms": 0,
           "msm": {"address": "127.0.0.1", "port": msm.diameter.port}}
    cfg.update(over)
    col = Collector()
    return AccessSink(parse(cfg, SinkConfig), col, diameter=dclient, dns_fetch=dns_fetch), col


def wait_decided(sink, node, timeout=5.0):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        st = sink.nodes.get(node)
        if st and st.verdict != "pending":
            return st
        time.sleep(0.005)
    raise AssertionError(f"no decision for {node}: {sink.status()}")


def issue(msm, fqdn, kind="mn", **kw):
    return issue_with_local_key(msm.portal, fqdn, kind, **kw)


def test_secret_member_gets_default_and_home_routes_and_filters(msm, dclient, tmp_path):
    sink, col = make_sink(msm, dclient, tmp_path)
    node = AccessNode("10.10.0.5", "mn1.mwg.test", secret="s3cret-1")
    assert sink.on_hello(node.secret_hello(), "10.10.0.5", "eth0")
    st = wait_decided(sink, "10.10.0.5")
    assert st.verdict == "member", sink.status()
    assert col.event.wait(2)
    verdict, routes = node.on_reply(col.sent[-1][0], SINK)
    assert verdict == "member"
    assert ("0.0.0.0/0", "10.10.0.254", 10) in routes
    assert ("10.10.0.0/24", "0.0.0.0", 1) in routes  # home range, lower cost (claim 43)
    assert "permit in ip from assigned to 10.20.0.9/32" in st.filters  # workgroup peer in B
    assert "ip saddr 10.10.0.5 ip daddr 10.10.0.0/24 accept" in sink.policy.last_script
    # the MSM's DIAMETER log shows the exchange
    lines = [json.loads(x) for x in open(tmp_path / "dia.jsonl")]
    auth = [x for x in lines if x.get("event") == "auth"]
    assert auth and auth[-1]["identity"] == "mn1.mwg.test" and auth[-1]["result_code"] == 2001


def test_forged_authenticator_gets_no_route(msm, dclient, tmp_path):
    sink, col = make_sink(msm, dclient, tmp_path)
    node = AccessNode("10.10.0.5", "mn1.mwg.test", secret="wrong-secret")
    sink.on_hello(node.secret_hello(), "10.10.0.5")
    st = wait_decided(sink, "10.10.0.5")
    assert st.verdict == "refused" and st.reason == "rejected_by_msm"
    assert sink.counters["refused_rejected_by_msm"] == 1 and not col.sent
    assert "counter drop" in sink.policy.last_script and " accept\n" not in sink.policy.last_script


def test_refused_node_held_down_without_msm_flood(msm, dclient, tmp_path):
    sink, col = make_sink(msm, dclient, tmp_path, refused_holddown_ms=500)
    node = AccessNode("10.10.0.5", "mn1.mwg.test", secret="wrong")
    sink.on_hello(node.secret_hello(), "10.10.0.5")
    wait_decided(sink, "10.10.0.5")
    for _ in range(5):
        sink.on_hello(node.secret_hello(), "10.10.0.5")
    assert sink.counters["hello_ignored_holddown"] == 5 and sink.counters["diameter_requests"] == 1
    time.sleep(0.55)
    node.secret = "s3cret-1"  # after the hold-down a correct hello is heard
    sink.on_hello(node.secret_hello(), "10.10.0.5")
    assert wait_decided(sink, "10.10.0.5").verdict == "member"


def test_other_users_secret_and_wrong_address_refused(msm, dclient, tmp_path):
    sink, col = make_sink(msm, dclient, tmp_path)
    # mn2's valid secret, but claiming mn1's identity
    sink.on_hello(AccessNode("10.10.0.5", "mn1.mwg.test", secret="s3cret-2").secret_hello(), "10.10.0.5")
    assert wait_decided(sink, "10.10.0.5").verdict == "refused"
    # right secret, but not mn2's home address
    sink.on_hello(AccessNode("10.10.0.7", "mn2.mwg.test", secret="s3cret-2").secret_hello(), "10.10.0.7")
    assert wait_decided(sink, "10.10.0.7").verdict == "refused"
    assert not col.sent


def test_replayed_and_stale_hello_refused_without_asking_msm(msm, dclient, tmp_path):
    sink, col = make_sink(msm, dclient, tmp_path)
    node = AccessNode("10.10.0.5", "mn1.mwg.test", secret="s3cret-1")
    h = node.secret_hello()
    sink.on_hello(h, "10.10.0.5")
    assert wait_decided(sink, "10.10.0.5").verdict == "member"
    sink.on_hello(h, "10.10.0.5")  # captured and replayed
    st = wait_decided(sink, "10.10.0.5")
    assert st.verdict == "refused" and st.reason == "replay"
    sink.on_hello(node.secret_hello(ts_ms=cr.now_ms() - 120_000), "10.10.0.5")
    assert wait_decided(sink, "10.10.0.5").reason == "stale"
    assert sink.counters["diameter_requests"] == 1


def test_visitor_gets_only_default_route_via_fa(msm, dclient, tmp_path):
    sink, col = make_sink(msm, dclient, tmp_path,
                          visitors={"enabled": True, "fa_address": "10.10.0.250"})
    node = AccessNode("10.10.0.77", "guest.other.test", secret="whatever")
    sink.on_hello(node.secret_hello(), "10.10.0.77")
    st = wait_decided(sink, "10.10.0.77")
    assert st.verdict == "visitor"
    assert col.event.wait(2)
    assert node.on_reply(col.sent[-1][0], SINK) == ("visitor", [("0.0.0.0/0", "10.10.0.250", 1)])
    s = sink.policy.last_script
    assert "ip daddr 10.10.0.250 ip protocol 4 accept" in s and "ip saddr 10.10.0.250 ip protocol 4 accept" in s


def test_malformed_and_spoofed_hellos_counted(msm, dclient, tmp_path):
    sink, _ = make_sink(msm, dclient, tmp_path)
    good = AccessNode("10.10.0.5", "mn1.mwg.test", secret="s3cret-1").secret_hello()
    assert sink.on_hello(good[:-3], "10.10.0.5")  # truncated extension
    bad_id = bytearray(good)
    bad_id[20 + 2 + 16] = 200  # id_len beyond the extension
    assert sink.on_hello(bytes(bad_id), "10.10.0.5")
    assert sink.on_hello(good, "10.10.0.9")  # hello about .5 sent by .9
    assert sink.counters["refused_malformed"] == 2
    assert sink.counters["refused_spoofed_source"] == 1


# ---------------------------------------------------------------- certificates
@pytest.fixture
def pki(msm, tmp_path):
    ca_pem = msm.ca.cert_pem.encode()
    sinkc = issue(msm, "msr1.mwg.test", kind="msr")
    d = tmp_path / "sinkpki"
    d.mkdir()
    (d / "ca.pem").write_bytes(ca_pem)
    (d / "cert.pem").write_text(sinkc["cert_pem"])
    (d / "key.pem").write_text(sinkc["key_pem"])
    return {"ca": ca_pem, "certs": {"ca_file": str(d / "ca.pem"), "cert_file": str(d / "cert.pem"),
                                    "key_file": str(d / "key.pem")}}


def cert_node(msm, pki, fqdn="mn1.mwg.test", addr="10.10.0.5", send=True, **kw):
    c = issue(msm, fqdn, **kw)
    return AccessNode(addr, fqdn, ca_pem=pki["ca"], cert_pem=c["cert_pem"].encode(),
                      key_pem=c["key_pem"].encode(), send_certificate=send)


@pytest.mark.parametrize("source", ["hello", "diameter", "dns"])
def test_certificate_hello_both_ways(msm, dclient, tmp_path, pki, source):
    sink, col = make_sink(msm, dclient, tmp_path, certificate=True, shared_secret=False,
                          certs=pki["certs"], cert_source=source)
    node = cert_node(msm, pki, send=(source == "hello"))
    h = node.cert_hello()
    assert len(h) < 1400  # one datagram, no IP fragmentation
    sink.on_hello(h, "10.10.0.5")
    st = wait_decided(sink, "10.10.0.5")
    assert st.verdict == "member", sink.status()
    assert col.event.wait(2)
    verdict, routes = node.on_reply(col.sent[-1][0], SINK)  # the node checks the sink's certificate
    assert verdict == "member" and ("0.0.0.0/0", "10.10.0.254", 10) in routes
    if source == "diameter":
        assert sink.counters["cert_fetch_diameter"] == 1
        assert msm.diameter.counters.snapshot()["certificates_returned"] == 1
    if source == "dns":
        assert sink.counters["cert_fetch_dns"] == 1 and msm.dns.counters()["cert_answered"] == 1


def test_dns_certificate_record_matches_and_unknown_is_nxdomain(msm, pki):
    c = issue(msm, "mn2.mwg.test")
    der = fetch_certificate("mn2.mwg.test", "127.0.0.1", msm.dns.port)
    assert der == cr.der(cr.load_cert(c["cert_pem"]))
    assert fetch_certificate("nobody.mwg.test", "127.0.0.1", msm.dns.port) is None
    # an expired test certificate never replaces the one the sink fetches
    issue(msm, "mn2.mwg.test", validity="expired")
    assert fetch_certificate("mn2.mwg.test", "127.0.0.1", msm.dns.port) == der


def test_expired_foreign_ca_and_bad_signature_refused(msm, dclient, tmp_path, pki):
    sink, col = make_sink(msm, dclient, tmp_path, certificate=True, shared_secret=False,
                          certs=pki["certs"])
    sink.on_hello(cert_node(msm, pki, validity="expired").cert_hello(), "10.10.0.5")
    assert wait_decided(sink, "10.10.0.5").reason == "expired"
    rogue = CertificateAuthority(str(tmp_path / "rogue"), "Mobile Workgroup MSM CA", "ec")
    r = sign_local_key(rogue, "mn2.mwg.test", "mn", [], ["mn2.mwg.test"])  # same CA name, other key
    forged = AccessNode("10.10.0.6", "mn2.mwg.test", ca_pem=pki["ca"], cert_pem=r.cert_pem.encode(),
                        key_pem=r.key_pem.encode())
    sink.on_hello(forged.cert_hello(), "10.10.0.6")
    assert wait_decided(sink, "10.10.0.6").reason == "wrong_ca"
    # valid certificate, hello tampered after signing (lifetime changed)
    h = bytearray(cert_node(msm, pki, fqdn="mn2.mwg.test", addr="10.10.0.6").cert_hello())
    h[19] ^= 1
    sink.on_hello(bytes(h), "10.10.0.6")
    assert wait_decided(sink, "10.10.0.6").reason == "bad_signature"
    # someone else's valid certificate used for another identity
    n = cert_node(msm, pki, fqdn="mn2.mwg.test", addr="10.10.0.6")
    n.identity = "mn1.mwg.test"
    n.addr = "10.10.0.5"
    sink.on_hello(n.cert_hello(), "10.10.0.5")
    assert wait_decided(sink, "10.10.0.5").reason == "name_mismatch"
    assert not col.sent
    for k in ("expired", "wrong_ca", "bad_signature", "name_mismatch"):
        assert sink.counters[f"refused_{k}"] == 1


def test_node_refuses_sink_with_foreign_certificate(msm, dclient, tmp_path, pki):
    rogue = CertificateAuthority(str(tmp_path / "rogue"), "Mobile Workgroup MSM CA", "ec")
    r = sign_local_key(rogue, "msr1.mwg.test", "msr", [], ["msr1.mwg.test"])
    (tmp_path / "rc.pem").write_text(r.cert_pem)
    (tmp_path / "rk.pem").write_text(r.key_pem)
    certs = dict(pki["certs"], cert_file=str(tmp_path / "rc.pem"), key_file=str(tmp_path / "rk.pem"))
    sink, col = make_sink(msm, dclient, tmp_path, certificate=True, shared_secret=False, certs=certs)
    node = cert_node(msm, pki)
    sink.on_hello(node.cert_hello(), "10.10.0.5")
    assert col.event.wait(3)
    with pytest.raises(SinkRefused) as exc:
        node.on_reply(col.sent[-1][0], SINK)
    assert exc.value.reason == "wrong_ca"
    # and an answer to someone else's hello (nonce not ours) is refused too
    node.nonce = b"12345678"
    with pytest.raises(SinkRefused):
        node.on_reply(col.sent[-1][0], SINK)
