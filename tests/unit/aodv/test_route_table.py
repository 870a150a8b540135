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
    t.invalidate(host, time.monotonic(), 3.0)
    assert t.lookup("198.51.100.7").next_hop == "10.0.0.3"
    assert t.lookup("198.51.100.7", only_valid=False) is host


def test_via_and_expired():
    t = RouteTable()
    a = t.put(r(dst="10.0.0.7", nh="10.0.0.2"))
    t.put(r(dst="10.0.0.8", nh="10.0.0.3"))
    t.add_precursor(a, "10.0.0.11")
    assert [x.dst for x in t.via("10.0.0.2")] == ["10.0.0.7"]
    a.expires = time.monotonic() - 1  # a test may age a route by hand
    assert t.expired(time.monotonic()) == [a]
    d = a.as_dict(time.monotonic())
    assert d["precursors"] == ["10.0.0.11"] and d["lifetime_remaining_s"] < 0


class RecordingKernel:
    """KernelRoutes' two calls the table makes, recorded (the real one: test_kernel_netns)."""

    def __init__(self):
        self.calls = []

    def install(self, route):
        self.calls.append(("install", route.dst, route.next_hop))
        return True

    def remove(self, dst, prefix_len=32):
        self.calls.append(("remove", dst, prefix_len))


def test_update_mirrors_only_changes_into_the_kernel():
    t = RouteTable()
    t.kernel = k = RecordingKernel()
    r, changed = t.update("10.0.0.9", "10.0.0.2", "e0", 2, 5, True, 3.0, now=100.0)
    assert changed and r.expires == 103.0 and k.calls == [("install", "10.0.0.9", "10.0.0.2")]
    # same path, shorter lifetime: the longer one stays, the kernel is not asked again
    r2, changed = t.update("10.0.0.9", "10.0.0.2", "e0", 2, 6, True, 1.0, now=101.0)
    assert r2 is r and not changed and r.expires == 103.0 and r.seq == 6 and len(k.calls) == 1
    # no valid seqno: the known one stays (RFC 3561 6.5); a new next hop is mirrored
    t.update("10.0.0.9", "10.0.0.3", "e0", 1, 0, False, 1.0, now=101.0)
    assert r.seq == 6 and r.valid_seq and k.calls[-1] == ("install", "10.0.0.9", "10.0.0.3")
    assert t.counters["routes_installed"] == 2


def test_invalidate_bumps_seq_keeps_route_for_delete_period_and_unmirrors():
    t = RouteTable()
    t.kernel = k = RecordingKernel()
    r, _ = t.update("10.0.0.9", "10.0.0.2", "e0", 2, 0xFFFFFFFF, True, 3.0, now=100.0)
    assert t.invalidate(r, now=101.0, delete_period_s=15.0)
    assert not r.valid and r.seq == 1 and r.expires == 116.0  # RFC 6.11; wraps past 0 (6.1)
    assert k.calls[-1] == ("remove", "10.0.0.9", 32)
    assert not t.invalidate(r, now=102.0, delete_period_s=15.0)   # once only
    r2, changed = t.update("10.0.0.9", "10.0.0.2", "e0", 2, 0, False, 3.0, now=103.0)
    assert changed and r2.valid and k.calls[-1][0] == "install"   # valid again: re-mirrored


def test_extend_never_shortens_and_expire_invalidates_then_deletes():
    t = RouteTable()
    r, _ = t.update("10.0.0.9", "10.0.0.2", "e0", 2, 5, True, 3.0, now=100.0)
    t.extend(r, 102.0)
    assert r.expires == 103.0
    t.extend(r, 104.0)
    assert r.expires == 104.0
    assert t.expire(103.0, 15.0) == []
    assert t.expire(104.0, 15.0) == [r] and not r.valid and r.seq == 5  # no bump on expiry
    assert t.counters["routes_expired"] == 1 and t.get("10.0.0.9") is r
    t.expire(119.0, 15.0)
    assert t.get("10.0.0.9") is None
