"""DNS of the workgroup system (claim 21), asked by real clients: dig and dnspython."""
from __future__ import annotations

import shutil
import socket
import subprocess

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from .harness import populate_example


def dig(msm, *args: str) -> str:
    if shutil.which("dig") is None:
        pytest.fail("dig is missing on this host: apt-get install dnsutils (host setup must provide it)")
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(msm.dns_port), "+time=2", "+tries=1", *args],
                         capture_output=True, text=True, timeout=10)
    return out.stdout


def resolver(msm) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = msm.dns_port
    r.lifetime = 3
    return r


def test_dig_resolves_user_fqdns_sgs_and_msm_over_udp_and_tcp(msm):
    populate_example(msm.client)
    assert dig(msm, "+short", "b.mwg.test").split() == ["10.0.0.7"]
    assert dig(msm, "+short", "+tcp", "b.mwg.test").split() == ["10.0.0.7"]
    assert dig(msm, "+short", "a.mwg.test").split() == ["10.0.0.5"]
    assert dig(msm, "+short", "c.mwg.test").split() == ["10.0.0.5"]
    assert dig(msm, "+short", "sg-c.mwg.test").split() == ["203.0.113.3"]
    assert dig(msm, "+short", "msm.mwg.test").split() == ["198.51.100.10"]
    full = dig(msm, "nobody.mwg.test")
    assert "status: NXDOMAIN" in full and " aa" in full.split("flags:")[1].split(";")[0]
    assert "status: NXDOMAIN" in dig(msm, "www.example.com")
    assert "status: NOERROR" in dig(msm, "b.mwg.test", "AAAA")
    assert "SOA" in dig(msm, "mwg.test", "SOA")


def test_dnspython_answers_are_authoritative_and_not_recursive(msm):
    populate_example(msm.client)
    answer = resolver(msm).resolve("d.mwg.test", "A")
    assert [r.address for r in answer] == ["10.0.0.9"]
    assert answer.response.flags & dns.flags.AA and not answer.response.flags & dns.flags.RA
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver(msm).resolve("e.mwg.test", "A")
    q = dns.message.make_query("sg-a.mwg.test", "A")
    resp = dns.query.tcp(q, "127.0.0.1", port=msm.dns_port, timeout=3)
    assert resp.rcode() == dns.rcode.NOERROR
    assert [r.address for r in resp.answer[0]] == ["203.0.113.1"]


def test_answers_follow_the_store_at_once(msm):
    c = msm.client
    assert "status: NXDOMAIN" in dig(msm, "new.mwg.test")
    c.add_mvpn("A", "10.0.0.0/24", "203.0.113.1")
    c.add_user("new.mwg.test", "A", "10.0.0.42")
    assert dig(msm, "+short", "new.mwg.test").split() == ["10.0.0.42"]
    c.request("DELETE", "/api/users/new.mwg.test")
    assert "status: NXDOMAIN" in dig(msm, "new.mwg.test")


def test_malformed_packets_are_counted_and_dropped(msm):
    populate_example(msm.client)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"\x00", b"garbage that is not dns", b"\x12\x34" + b"\xff" * 40):
            s.sendto(junk, ("127.0.0.1", msm.dns_port))
    with socket.create_connection(("127.0.0.1", msm.dns_port), timeout=3) as t:
        t.sendall(b"\x00\x05hello")
    assert dig(msm, "+short", "b.mwg.test").split() == ["10.0.0.7"]
    counters = msm.client.request("GET", "/api/status")["dns"]
    assert counters.get("malformed", 0) >= 3
    assert counters.get("answered", 0) >= 1
