"""Agent configuration (JSON or YAML file), validated with pydantic.

Why pydantic: a scenario's typo must stop the agent at start with a message naming the
field, not surface minutes later as a strange route. Every RFC 3561 constant (section 10)
is a field with the RFC's default, so scenarios can shrink timers without code changes.
"""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .messages import MAX_LIFETIME_MS, MAX_U32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timers(_Strict):
    """RFC 3561 section 10 constants (times in milliseconds)."""

    active_route_timeout_ms: int = Field(3000, gt=0)
    allowed_hello_loss: int = Field(2, ge=1)
    hello_interval_ms: int = Field(1000, gt=0)
    net_diameter: int = Field(35, ge=1, le=255)
    node_traversal_time_ms: int = Field(40, gt=0)
    rreq_retries: int = Field(2, ge=0)
    rreq_ratelimit: int = Field(10, ge=1)
    rerr_ratelimit: int = Field(10, ge=1)
    ttl_start: int = Field(1, ge=1, le=255)
    ttl_increment: int = Field(2, ge=1)
    ttl_threshold: int = Field(7, ge=1, le=255)
    timeout_buffer: int = Field(2, ge=0)
    delete_period_k: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _fit_the_wire(self):
        """Lifetimes we send must fit RREP's 32-bit ms field (RFC 3561 5.2): MY_ROUTE_TIMEOUT
        (2 x ACTIVE_ROUTE_TIMEOUT, 6.6.1) and the hello lifetime (6.9)."""
        if 2 * self.active_route_timeout_ms > MAX_LIFETIME_MS:
            raise ValueError(f"active_route_timeout_ms must be <= {MAX_LIFETIME_MS // 2}: "
                             "twice it is sent in RREP's 32-bit Lifetime (ms)")
        if self.allowed_hello_loss * self.hello_interval_ms > MAX_LIFETIME_MS:
            raise ValueError("allowed_hello_loss * hello_interval_ms must be <= "
                             f"{MAX_LIFETIME_MS}: it is sent in the hello's 32-bit Lifetime (ms)")
        return self

    # Derived values (seconds), named as in the RFC.
    @property
    def active_route_timeout(self) -> float:
        return self.active_route_timeout_ms / 1000

    @property
    def hello_interval(self) -> float:
        return self.hello_interval_ms / 1000

    @property
    def node_traversal_time(self) -> float:
        return self.node_traversal_time_ms / 1000

    @property
    def net_traversal_time(self) -> float:
        return 2 * self.node_traversal_time * self.net_diameter

    @property
    def path_discovery_time(self) -> float:
        return 2 * self.net_traversal_time

    @property
    def my_route_timeout(self) -> float:
        return 2 * self.active_route_timeout

    @property
    def delete_period(self) -> float:
        return self.delete_period_k * max(self.active_route_timeout, self.hello_interval)

    def hello_lifetime_ms(self) -> int:
        """Lifetime of our hellos, ALLOWED_HELLO_LOSS * HELLO_INTERVAL (RFC 3561 6.9), in ms;
        _fit_the_wire keeps it within the 32-bit field."""
        return self.allowed_hello_loss * self.hello_interval_ms

    def ring_traversal_time(self, ttl: int) -> float:
        return 2 * self.node_traversal_time * (ttl + self.timeout_buffer)


class HandoverConfig(_Strict):
    """Claims 26-39: sink handover with a proactive routing update for active peers."""

    enabled: bool = False
    #: claim 37: after a successful handover the MN re-discovers routes to active peers
    #: "at its leisure" - this long after the handover ACK (immediately on failure).
    optimize_delay_ms: int = Field(1000, ge=0)
    optimize: bool = True
    #: an old sink that loses its MN holds back the RERR this long, buffering the MN's
    #: packets, so that the new sink's binding update can redirect them (claim 34).
    old_sink_hold_ms: int = Field(1500, ge=0)
    #: first TTL of the new sink's RREQ for its MN when it has no route to the old sink
    #: (handovers are latency-critical: skip the smallest rings)
    locate_ttl: int = Field(7, ge=1, le=255)
    #: MN: a sink not heard for this long is gone once another MSR is heard
    sink_silence_ms: int = Field(1100, gt=0)
    #: a peer counts as active if datagrams to/from it were seen this recently.
    active_peer_window_ms: int = Field(3000, gt=0)
    #: MN: keep the catch-all routes to the buffer TUN only while a sink serves us. Off
    #: (default) = always. On, an MN that also runs Mobile IP (claim 14: AODV inside the
    #: home domain, Mobile IP between domains) stops capturing the managed prefixes when it
    #: leaves its sinks, so Mobile IP's routes (FA, co-located CoA tunnel) carry them.
    catchall_only_with_sink: bool = False
    #: ... withdrawn only after this long without a sink (a move between two sinks keeps
    #: buffering); what the buffer then holds is re-sent along the remaining routes.
    catchall_grace_ms: int = Field(300, ge=0)
    #: MN: a Unix datagram socket (path) on which the node's Mobile IP agent says "left"
    #: when it has registered away from the home domain (issue 14): the catch-alls go at
    #: once, without the grace time, and what the buffer holds follows Mobile IP's routes.
    #: None = no such notice (the grace time alone decides).
    leave_socket: Optional[str] = None


class WeightedSearchConfig(_Strict):
    """Claims 63-66: weight-controlled expanding ring search."""

    enabled: bool = False
    #: administrative weight of the hop from this router to a neighbour (by address)
    weights: dict[str, int] = Field(default_factory=dict)
    default_weight: int = Field(1, ge=0, le=MAX_U32)
    #: how many lowest-sum neighbours get the (unicast) RREQ; ties with the last one too
    fanout: int = Field(1, ge=1)
    #: if the weighted rings all fail, one last plain broadcast search (keeps reachability)
    fallback_broadcast: bool = True

    @model_validator(mode="after")
    def _check_weights(self):
        for k, v in self.weights.items():
            ipaddress.IPv4Address(k)
            if not 0 <= v <= MAX_U32:
                raise ValueError(f"weights[{k}] must be in 0..{MAX_U32} (32-bit WEIGHT field)")
        return self


class GratuitousConfig(_Strict):
    """Claims 67-70: gratuitous RREP from the route-reply source for long sessions."""

    enabled: bool = False
    #: send when the requester's route has fewer than this many ms left (claim 68)
    threshold_ms: int = Field(4000, gt=0)
    #: "datagrams are received along the path": seen within this window
    active_window_ms: int = Field(1000, gt=0)


class AgentConfig(_Strict):
    address: ipaddress.IPv4Address
    role: Literal["msr", "mn"] = "msr"
    #: AODV interfaces; empty = every interface with an IPv4 address except lo and the TUN
    interfaces: list[str] = Field(default_factory=list)
    #: destinations handled by AODV: packets to these without a route go to the TUN buffer
    managed_prefixes: list[ipaddress.IPv4Network] = Field(default_factory=list)
    #: prefixes this node answers RREQs for as their gateway (RREP with prefix size)
    announced_prefixes: list[ipaddress.IPv4Network] = Field(default_factory=list)
    status_file: str = "/run/testbed/aodv.json"
    status_interval_ms: int = Field(500, gt=0, le=1000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    tun_name: str = Field("aodv0", max_length=15)
    #: routing protocol number marking the kernel routes this agent owns
    kernel_proto: int = Field(180, ge=5, le=255)
    catchall_metric: int = Field(4000, ge=0)
    buffer_max_per_dest: int = Field(256, ge=1)
    buffer_max_total: int = Field(2048, ge=1)
    #: Bounds on state that any node on the link can make us keep (issue 11 section 4):
    #: routes (each RREQ/RREP/hello names new addresses), neighbours heard by hello,
    #: remembered (originator, RREQ ID) pairs (RFC 6.3, PATH_DISCOVERY_TIME), and
    #: precursors per route (RFC 6.2), addresses of datagrams seen crossing the node.
    #: Over a bound: dropped and counted, or (RREQ IDs)
    #: the oldest forgotten. Invalid routes are given up first to make room.
    max_routes: int = Field(4096, ge=16)
    max_neighbours: int = Field(256, ge=1)
    max_seen_rreq: int = Field(4096, ge=16)
    max_precursors: int = Field(64, ge=1)
    #: addresses the traffic monitor remembers per table (traffic.py)
    max_tracked_addresses: int = Field(4096, ge=16)
    #: RFC 6.2: forwarding a datagram extends the route lifetime. Off = routes expire at the
    #: lifetime their RREP gave (the premise of the long-session claims 67-70).
    refresh_on_use: bool = True
    #: requester side: re-discover an active route when it has fewer than this many ms
    #: left (0 = never). Claim 69 compares it with gratuitous.threshold_ms.
    route_refresh_threshold_ms: int = Field(0, ge=0)
    #: treat an interface that disappears or goes down as a link break (RFC 6.11)
    link_layer_detection: bool = True
    hello_enabled: bool = True
    #: answer RREQs with the D flag clear from intermediate routers (RFC 6.6.2)
    intermediate_reply: bool = True
    set_sysctls: bool = True
    timers: Timers = Field(default_factory=Timers)
    handover: HandoverConfig = Field(default_factory=HandoverConfig)
    weighted_search: WeightedSearchConfig = Field(default_factory=WeightedSearchConfig)
    gratuitous: GratuitousConfig = Field(default_factory=GratuitousConfig)

    @model_validator(mode="after")
    def _claim_69(self):
        if self.gratuitous.enabled and self.route_refresh_threshold_ms and \
                self.gratuitous.threshold_ms <= self.route_refresh_threshold_ms:
            raise ValueError(
                "gratuitous.threshold_ms must be larger than route_refresh_threshold_ms "
                "(claim 69: the reply source acts before the requester would re-discover)")
        return self


class ConfigError(ValueError):
    pass


def parse_config(data: dict) -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            msgs.append(f"{loc}: {err['msg']}")
        raise ConfigError("invalid AODV config: " + "; ".join(msgs)) from None


def load_config(path: str | Path) -> AgentConfig:
    """Read a JSON or YAML config file (YAML is a superset, so one parser suffices)."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return parse_config(data)
