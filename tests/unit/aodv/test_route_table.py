"""Route table update rules (RFC 3561 6.2), longest-prefix lookup, precursors, expiry."""
import time

from testbed.aodv.route_table import Route, RouteState, RouteTable, should_update


def r(dst="10.0.0.9", nh="10.0.0.2", hops=3, seq=10, valid_seq=True, **kw):
    return Route(dst=dst, next_hop=nh, iface="e0", hop_count=hops, seq=seq,
                 valid_seq=valid_seq, expires=time.monotonic() + 5, **kw)


def test_update_rules():
    cur = r()
    assert should_update(None, 1, True, 9)
    assert should_update(cur, 11, True, 9)          # (i) fresher seqno wins, even if longer
    assert not should_update(cur, 9, True, 1)       # older seqno never wins
    assert should_update(cur, 10, True, 2)          # (ii) same seqno, fewer hops
    assert not should_update(cur, 10, True, 3)      # same seqno, same hops: keep
    cur.state = RouteState.INVALID
    assert should_update(cur, 10, True, 5)          # same seqno but ours is invalid
    assert should_update(r(valid_seq=False), 1, True, 7)  # (iii) our seqno unknown


def test_update_rules_across_rollover():
    assert should_update(r(seq=0xFFFFFFFF), 1, True, 4)
    assert not should_update(r(seq=1), 0xFFFFFFFF, True, 1)


def test_info_without_seqno_only_fills_gaps_or_shortens():
    assert not should_update(r(hops=1, seq=4), 0, False, 2)
    assert should_update(r(hops=3, seq=4), 0, False, 1)


def test_longest_prefix_lookup_and_validity():
    t = RouteTable()
    t.put(r(dst="198.51.100.0", prefix_len=24, nh="10.0.0.3"))
    t.put(r(dst="198.51.0.0", prefix_len=16, nh="10.0.0.4"))
    assert t.lookup("198.51.100.7").next_hop == "10.0.0.3"
    assert t.lookup("198.51.7.7").next_hop == "10.0.0.4"
    assert t.lookup("203.0.113.1") is None
    host = t.put(r(dst="198.51.100.7", nh="10.0.0.5"))
    assert t.lookup("198.51.100.7") is host
    host.state = RouteState.INVALID
    assert t.lookup("198.51.100.7").next_hop == "10.0.0.3"
    assert t.lookup("198.51.100.7", only_valid=False) is host


def test_via_and_expired():
    t = RouteTable()
    a = t.put(r(dst="10.0.0.7", nh="10.0.0.2"))
    t.put(r(dst="10.0.0.8", nh="10.0.0.3"))
    a.precursors.add("10.0.0.11")
    assert [x.dst for x in t.via("10.0.0.2")] == ["10.0.0.7"]
    a.expires = time.monotonic() - 1
    assert t.expired(time.monotonic()) == [a]
    d = a.as_dict(time.monotonic())
    assert d["precursors"] == ["10.0.0.11"] and d["lifetime_remaining_s"] < 0
