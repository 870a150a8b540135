"""The packet buffer (buffer.py): its bounds hold for any number of destinations."""
from __future__ import annotations

from testbed.aodv.buffer import PacketBuffer


def test_refused_datagrams_leave_no_queue_behind():
    """Issue 11 section 4: with the total bound reached, datagrams to 10,000 new
    destinations (a neighbour can name any address in a managed prefix) are dropped and
    counted, and the buffer keeps no (empty) queue for them."""
    buf = PacketBuffer(max_per_dest=4, max_total=8)
    for i in range(8):
        assert buf.add(f"10.97.1.{i}", b"x")
    for i in range(10_000):
        assert not buf.add(f"10.98.{i // 250}.{i % 250}", b"x")
    assert len(buf.queues) == 8 and buf.total == 8 and buf.dropped == 10_000
    # room again once a queue is flushed, and only for one datagram
    assert buf.pop("10.97.1.0") == [b"x"]
    assert [buf.add("10.97.2.1", b"y") for _ in range(5)] == [True, False, False, False, False]
    assert len(buf.queues) == 8
