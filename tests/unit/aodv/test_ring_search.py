"""Weighted candidate selection (claims 63-66)."""
from testbed.aodv.ring_search import select_candidates

N = ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
W = {"10.0.0.2": 5, "10.0.0.3": 1, "10.0.0.4": 1, "10.0.0.5": 9}


def test_lowest_sum_with_ties():
    got = select_candidates(N, W, 1, 10, exclude=set(), fanout=1)
    assert got == [("10.0.0.3", 11), ("10.0.0.4", 11)]   # tie with the chosen one goes too


def test_fanout_and_exclusion():
    got = select_candidates(N, W, 1, 0, exclude={"10.0.0.3"}, fanout=2)
    assert got == [("10.0.0.4", 1), ("10.0.0.2", 5)]


def test_default_weight_for_unlisted_neighbours():
    got = select_candidates(["10.0.0.8", "10.0.0.2"], W, 2, 0, set(), 1)
    assert got == [("10.0.0.8", 2)]


def test_destination_neighbour_short_cut():
    got = select_candidates(N, W, 1, 3, set(), 1, destination="10.0.0.5")
    assert got == [("10.0.0.5", 12)]


def test_nothing_left():
    assert select_candidates(N, W, 1, 0, set(N), 1) == []
