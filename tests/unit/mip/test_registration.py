"""Home agent decisions (RFC 5944 3.8) and the FA visitor list, with injected clocks."""
from __future__ import annotations

import pytest

from testbed.mip import messages as m
from testbed.mip.bindings import BindingTable, Pending, VisitorList
from testbed.mip.registration import RegistrationProcessor
from testbed.mip.security import ClockOffset, ReplayGuard, SecurityAssociation, ntp_now, ntp_seconds

HA = "198.51.100.11"
KEY = b"mvpn-a secret"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env():
    wall, mono = Clock(T0), Clock(100.0)
    proc = RegistrationProcessor(HA, "10.0.0.0/24", {"10.0.0.5": SecurityAssociation(300, KEY)},
                                 max_lifetime=120, wall=wall, bindings=BindingTable(mono))
    return proc, wall, mono


def req(wall: Clock, *, lifetime=60, coa="203.0.113.1", flags=m.F_T, spi=300, key=KEY, home="10.0.0.5",
        ha=HA, dt=0.0) -> bytes:
    return m.build_request(flags=flags, lifetime=lifetime, home=home, ha=ha, coa=coa,
                           ident=ntp_now(wall.t + dt), spi=spi, key=key)


def reply_of(d):
    msg = m.parse_registration(d.reply)
    return msg, msg.pkt


def test_accept_caps_lifetime_and_authenticates_the_reply(env):
    proc, wall, _ = env
    d = proc.handle(req(wall, lifetime=600), "203.0.113.1")
    assert d.action == "bind" and d.code == m.ACCEPTED and d.lifetime == 120
    msg, rep = reply_of(d)
    assert rep.code == 0 and rep.lifetime == 120 and m.verify_auth(msg, KEY)
    assert proc.bindings.get("10.0.0.5").coa == "203.0.113.1"
    assert proc.counters["registrations_accepted"] == 1


@pytest.mark.parametrize("kw, code, why", [
    ({"key": b"wrong"}, m.HA_MN_AUTH_FAILED, "authenticator"),
    ({"spi": 301}, m.HA_MN_AUTH_FAILED, "SPI"),
    ({"home": "10.0.0.6"}, m.HA_MN_AUTH_FAILED, "no security association"),
    ({"ha": "198.51.100.99"}, m.HA_UNKNOWN_HA, "HA address"),
    ({"dt": -60}, m.HA_ID_MISMATCH, "identification"),
    ({"flags": m.F_T | m.F_G}, m.HA_ENCAP_UNAVAILABLE, "IP-in-IP"),
])
def test_denials_name_their_reason(env, kw, code, why):
    proc, wall, _ = env
    d = proc.handle(req(wall, **kw), "203.0.113.1")
    assert d.action == "deny" and d.code == code and why in d.reason
    assert proc.bindings.get("10.0.0.5") is None
    assert proc.counters[f"denied_{m.code_name(code)}"] == 1


def test_request_without_auth_extension_is_denied(env):
    proc, wall, _ = env
    raw = req(wall)[:24]
    d = proc.handle(raw, "x")
    assert d.code == m.HA_MN_AUTH_FAILED and "no MN-HA" in d.reason


def test_replay_is_refused_with_ha_time_and_mn_low_bits(env):
    proc, wall, _ = env
    raw = req(wall)
    assert proc.handle(raw, "x").code == m.ACCEPTED
    wall.t += 2
    d = proc.handle(raw, "x")
    assert d.code == m.HA_ID_MISMATCH
    _, rep = reply_of(d)
    orig = m.parse_registration(raw).pkt.id
    assert rep.id & 0xFFFFFFFF == orig & 0xFFFFFFFF
    assert abs(ntp_seconds(rep.id & 0xFFFFFFFF00000000) - wall.t) < 1.0
    # the MN learns the offset from the reply and then gets through
    mn = ClockOffset()
    mn.learn(rep.id)
    assert abs(ntp_seconds(mn.ident()) - wall.t) < 2.0


def test_reregistration_then_deregistration_and_return_home(env):
    proc, wall, mono = env
    assert proc.handle(req(wall), "x").action == "bind"
    wall.t += 1
    mono.t += 1
    d = proc.handle(req(wall), "x")
    assert d.action == "bind" and d.previous is not None and proc.counters["re_registrations"] == 1
    wall.t += 1
    d = proc.handle(req(wall, coa="192.0.2.50", flags=m.F_T | m.F_D), "192.0.2.50")
    assert d.previous.coa == "203.0.113.1" and proc.bindings.get("10.0.0.5").coa == "192.0.2.50"
    wall.t += 1
    d = proc.handle(req(wall, coa="10.0.0.5", lifetime=0, flags=0), "10.0.0.5")
    assert d.action == "deregister" and d.previous.coa == "192.0.2.50"
    assert proc.bindings.get("10.0.0.5") is None
    _, rep = reply_of(d)
    assert rep.code == 0 and rep.lifetime == 0


def test_lifetime_zero_with_a_care_of_address_also_deregisters(env):
    proc, wall, _ = env
    proc.handle(req(wall), "x")
    wall.t += 1
    assert proc.handle(req(wall, lifetime=0), "x").action == "deregister"


def test_binding_expires_on_the_monotonic_clock(env):
    proc, wall, mono = env
    proc.handle(req(wall, lifetime=30), "x")
    mono.t += 29.9
    assert proc.bindings.get("10.0.0.5") is not None and proc.bindings.expire() == []
    mono.t += 0.2
    assert proc.bindings.get("10.0.0.5") is None
    assert [b.home for b in proc.bindings.expire()] == ["10.0.0.5"]


def test_reverse_tunnel_policies():
    wall = Clock(T0)
    sa = {"10.0.0.5": SecurityAssociation(300, KEY)}
    mand = RegistrationProcessor(HA, "10.0.0.0/24", sa, reverse_tunnel="mandatory", wall=wall)
    assert mand.handle(req(wall, flags=0), "x").code == m.HA_REVERSE_TUNNEL_MANDATORY
    refused = RegistrationProcessor(HA, "10.0.0.0/24", sa, reverse_tunnel="refused", wall=wall)
    assert refused.handle(req(wall), "x").code == m.HA_REVERSE_TUNNEL_UNAVAILABLE
    with pytest.raises(ValueError, match="reverse_tunnel"):
        RegistrationProcessor(HA, "10.0.0.0/24", sa, reverse_tunnel="sometimes")


def test_malformed_and_replies_are_dropped_and_counted(env):
    proc, wall, _ = env
    for raw in (b"", b"\x01\x00", req(wall)[:30], b"\x03" + bytes(19)):
        d = proc.handle(raw, "x")
        assert d.action == "drop" and d.reply is None
    assert proc.counters["malformed_dropped"] == 3 and proc.counters["unexpected_dropped"] == 1


def test_replay_guard_tolerance_window():
    g = ReplayGuard(tolerance=7)
    assert g.check("h", ntp_now(T0 + 6.5), now=T0)
    assert not g.check("h", ntp_now(T0 - 7.5), now=T0)
    g.accept("h", ntp_now(T0))
    assert not g.check("h", ntp_now(T0 - 1), now=T0)
    assert g.check("h", ntp_now(T0 + 0.001), now=T0)


def test_visitor_list_keeps_same_home_address_of_two_has_apart():
    mono = Clock(10.0)
    vl = VisitorList(clock=mono)
    pa = Pending("10.0.0.5", "198.51.100.11", "eth0", "02:00:00:00:00:0a", 434, 0xAAAA_0000_0001, 60, m.F_T, 10.0)
    pc = Pending("10.0.0.5", "198.51.100.12", "eth0", "02:00:00:00:00:0c", 434, 0xBBBB_0000_0001, 60, m.F_T, 10.0)
    vl.add_pending(pa)
    vl.add_pending(pc)
    # a reply is matched on (HA, home, low 32 bits): a 133 reply changes the high bits
    assert vl.take_pending("198.51.100.12", "10.0.0.5", 0x1234_0000_0001) is pc
    assert vl.take_pending("198.51.100.12", "10.0.0.5", 0xBBBB_0000_0001) is None
    assert vl.take_pending("198.51.100.11", "10.0.0.5", 0xAAAA_0000_0001) is pa
    vl.accept(pa, 60, True)
    vl.accept(pc, 30, True)
    assert vl.get("198.51.100.11", "10.0.0.5").mac.endswith("0a")
    assert vl.get("198.51.100.12", "10.0.0.5").mac.endswith("0c")
    assert vl.by_link("eth0", "02:00:00:00:00:0c", "10.0.0.5").ha == "198.51.100.12"
    assert vl.by_link("eth0", "02:00:00:00:00:0c", "10.0.0.6") is None
    assert vl.by_link("eth1", "02:00:00:00:00:0c", "10.0.0.5") is None
    mono.t += 31
    assert [v.ha for v in vl.expire()] == ["198.51.100.12"]
    assert vl.get("198.51.100.11", "10.0.0.5") is not None
    vl.accept(pa, 0, True)  # deregistration removes the visitor
    assert vl.get("198.51.100.11", "10.0.0.5") is None
