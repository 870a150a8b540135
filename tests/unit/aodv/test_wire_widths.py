"""Wire-field widths (RFC 3561 5.1/5.2) and table bounds, on the pure parts (no network)."""
from __future__ import annotations

import pytest

from testbed.aodv.config import ConfigError, parse_config
from testbed.aodv.messages import RREP, lifetime_ms, saturating_add
from testbed.aodv.ring_search import select_candidates
from testbed.aodv.route_table import Route, RouteState, RouteTable


def test_lifetimes_are_clamped_to_the_32_bit_ms_field():
    assert lifetime_ms(1.5) == 1500
    assert lifetime_ms(-0.2) == 0  # a route that ran out meanwhile: 0, not a struct error
    assert lifetime_ms(5e6) == 2**32 - 1  # 58 days do not fit; the most the field says
    assert len(bytes(RREP(lifetime=lifetime_ms(5e6)))) == 20


@pytest.mark.parametrize("timers, field", [
    ({"active_route_timeout_ms": 2**31}, "active_route_timeout_ms"),
    ({"hello_interval_ms": 2**31, "allowed_hello_loss": 2}, "hello_interval_ms"),
])
def test_config_refuses_timers_whose_lifetimes_do_not_fit(timers, field):
    with pytest.raises(ConfigError, match=field):
        parse_config({"address": "10.0.0.1", "timers": timers})
    ok = {k: v // 2 for k, v in timers.items() if k != "allowed_hello_loss"}
    parse_config({"address": "10.0.0.1", "timers": ok})


def test_weights_fit_the_weight_field_and_sums_saturate():
    with pytest.raises(ConfigError, match="weights"):
        parse_config({"address": "10.0.0.1",
                      "weighted_search": {"weights": {"10.0.0.2": 2**32}}})
    assert saturating_add(2**32 - 1, 5) == 2**32 - 1
    got = select_candidates(["10.0.0.2", "10.0.0.3"], {"10.0.0.3": 7}, 5, 2**32 - 3,
                            set(), 2)
    assert got == [("10.0.0.2", 2**32 - 1), ("10.0.0.3", 2**32 - 1)]


def test_route_table_makes_room_from_invalid_routes_only():
    t = RouteTable()
    for i in range(4):
        t.put(Route(dst=f"10.0.0.{i}", next_hop="10.0.0.9", iface="e", hop_count=1,
                    expires=float(i), state=RouteState.INVALID if i < 2 else RouteState.VALID))
    assert t.make_room(["10.0.0.1", "10.0.0.3"], 4)  # known keys need no room
    assert t.make_room(["10.0.1.1"], 4) and t.get("10.0.0.0") is None  # earliest invalid
    assert t.make_room(["10.0.1.1", "10.0.1.2"], 4) and len(t) == 2
    assert not t.make_room(["10.0.1.3", "10.0.1.4", "10.0.1.5"], 4)  # valid ones stay
    assert {r.dst for r in t} == {"10.0.0.2", "10.0.0.3"}


def test_precursors_are_bounded():
    t = RouteTable(max_precursors=3)
    r = t.put(Route(dst="10.0.0.1", next_hop="10.0.0.2", iface="e", hop_count=1))
    assert all(t.add_precursor(r, f"10.0.1.{i}") for i in range(3))
    assert not t.add_precursor(r, "10.0.1.9") and t.add_precursor(r, "10.0.1.0")
    assert len(r.precursors) == 3 and t.counters["precursors_refused"] == 1
