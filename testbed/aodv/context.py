"""What a component of the AODV agent may use of its node (issue 13 item 2).

Components (long sessions today; discovery and handover are to follow) hold a
`NodeContext` instead of calling back into `Agent`: the route table (the only writer of
route state), a clock, a way to send, the event log and counters, and the few node
actions a claim needs. The agent builds it once; tests can build one from plain
functions.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable

from .config import AgentConfig
from .route_table import Route, RouteTable


@dataclasses.dataclass
class NodeContext:
    """The node as its components see it.

    addr: our own IPv4 address (dotted quad). cfg: the agent's configuration (timers in
    `cfg.timers`, seconds). routes: the route table. counters: the status file's counters.
    now() -> monotonic seconds. unicast(msg, next_hop) -> bool: send an AODV message to a
    neighbour (False if it could not be sent). event(kind, **fields): log an event into the
    status file. own_seq() -> our current sequence number (RFC 3561 6.1). set_route(dst,
    next_hop, iface, hop_count, seq, valid_seq, lifetime_s, prefix_len) -> Route: install a
    valid route and let what waited for it go (RFC 6.2). discover(dst, refresh) -> None:
    start a route discovery (RFC 6.3, 6.4). discovering(dst) -> bool: one is running.
    """

    addr: str
    cfg: AgentConfig
    routes: RouteTable
    counters: collections.Counter[str]
    now: Callable[[], float]
    unicast: Callable[[Any, str], bool]
    event: Callable[..., None]
    own_seq: Callable[[], int]
    set_route: Callable[..., Route]
    discover: Callable[..., None]
    discovering: Callable[[str], bool]
