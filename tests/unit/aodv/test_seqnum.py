"""RFC 3561 6.1: sequence numbers compared as signed 32-bit differences (rollover-safe)."""
from testbed.aodv import seqnum


def test_plain_order():
    assert seqnum.newer(5, 4) and not seqnum.newer(4, 5) and not seqnum.newer(4, 4)
    assert seqnum.newer_or_equal(4, 4)


def test_rollover():
    assert seqnum.newer(2, 0xFFFFFFF0)          # wrapped past the top: still newer
    assert not seqnum.newer(0xFFFFFFF0, 2)
    assert seqnum.diff(1, 0xFFFFFFFF) == 2
    assert seqnum.fresher(0xFFFFFFFF, 3) == 3


def test_half_range_boundary():
    assert seqnum.diff(0x80000000, 0) == -(1 << 31)  # exactly half apart: counted as older
    assert seqnum.newer(0x7FFFFFFF, 0)


def test_increment_skips_unknown_zero():
    assert seqnum.increment(7) == 8
    assert seqnum.increment(0xFFFFFFFF) == 1
