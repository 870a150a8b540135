"""Checks as data: the kinds of check a scenario.yaml or a lab file can list (issue 10 §4).

One line of evaluation each, after strongSwan's ``evaltest.dat``. The key that names the
kind holds its subject:

    - {name: a reaches b, node: a, run: ping -c3 10.0.0.7, match: ' 3 received'}      # command
    - {name: SG-B has a's row, status: sg-b, agent: sg,
       path: 'filter.rows[initiator_private=10.0.0.5].installed', value: true}        # status
    - {name: IP-IP on the Internet, pcap: inet, filter: 'ip.proto == 4', count: 3}    # pcap
    - {name: portal flows, counter: bb, nft: ip napt portal_flows, delta: 1}          # counter
    - {name: c is kept out, reach: [c], to: [b], expect: blocked}                     # reach
    - {name: h keeps a during the moves, continuity: h, to: a, max_gap_ms: 3000}      # continuity

Every kind takes ``name``, ``claims`` (claim numbers of ../shared/claims.txt it exercises),
``retry`` (seconds to keep trying until it passes), ``timeout`` and, in a lab file, ``at``.
A kind may also be named explicitly (``kind: status``). The runner is
orchestration.checks.session; /work/coord/checkkinds.md and the README list the syntax.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from .jsonpath import parse_path

CLAIMS = 70  # claims of the patent text (../shared/claims.txt, docs/claims.txt)
Op = Literal["==", "!=", ">=", "<=", ">", "<", "in", "not in", "contains", "exists", "absent"]
KINDS = ("status", "counter", "pcap", "reach", "continuity")


class CheckBase(BaseModel):
    """What every kind of check has."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    claims: list[int] = Field([], description="claims it exercises (numbers of ../shared/claims.txt, 1-70)")
    retry: float = Field(0.0, ge=0, description="seconds to try again until it passes")
    timeout: float = Field(30.0, gt=0, description="seconds one attempt may take")
    at: float | None = Field(None, description="lab files only: time on the schedule's timeline (default: after the last event)")

    @field_validator("claims")
    @classmethod
    def _claims(cls, v: list[int]) -> list[int]:
        bad = [c for c in v if not 1 <= c <= CLAIMS]
        if bad:
            raise ValueError(f"claims {bad} do not exist; claims are numbered 1-{CLAIMS} (docs/claims.txt)")
        return v

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> float | None:
        from ..domain.model import seconds  # the lab format's durations (imported here: domain imports this module)

        return None if v is None else seconds(v)


def _regex(name: str, v: str | None) -> None:
    if v is not None:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"{name}: {v!r} is not a regular expression ({e})") from None


class CommandCheck(CheckBase):
    """Run ``run`` on ``node``; pass if the exit status is as ``expect`` says and stdout
    matches ``match`` (and not ``no_match``). A check that expects failure must say why it
    fails: ``reason`` is a regex searched in stdout and stderr together (``0 received``,
    ``AUTHENTICATION_FAILED``), so that a typo in the command, which fails too, does not pass."""

    kind: Literal["command"] = "command"
    node: str
    run: str
    expect: Literal["ok", "fail"] = "ok"
    match: str | None = None
    no_match: str | None = None
    reason: str | None = Field(None, description="why an 'expect: fail' check fails: regex over stdout + stderr")

    @model_validator(mode="after")
    def _fail_says_why(self) -> "CommandCheck":
        if self.expect == "fail" and not self.reason:
            raise ValueError("a check with 'expect: fail' needs 'reason': a regex over stdout+stderr "
                             "that says why the command fails (e.g. reason: '2 packets transmitted, 0 received')")
        if self.expect == "ok" and self.reason:
            raise ValueError("'reason' is for 'expect: fail' checks; use 'match' for output of a command that succeeds")
        for k in ("match", "no_match", "reason"):
            _regex(k, getattr(self, k))
        return self


class _StatusSource(BaseModel):
    """Where a status JSON is: ``agent: sg`` (= /run/testbed/sg.json) or ``file: PATH``."""

    agent: str | None = Field(None, description="agent whose status file is read: /run/testbed/<agent>.json")
    file: str | None = Field(None, description="path of a JSON file in the node")

    def status_file(self) -> str:
        return self.file or f"/run/testbed/{self.agent}.json"


def _one_source(m: _StatusSource, what: str) -> None:
    if (m.agent is None) == (m.file is None):
        raise ValueError(f"a {what} check reads one status file: give 'agent: NAME' (/run/testbed/NAME.json) "
                         "or 'file: /path/in/node.json', not both or neither")
    if m.agent is not None and not re.match(r"^[a-z][a-z0-9-]*$", m.agent):
        raise ValueError(f"agent {m.agent!r}: give the status file's base name, e.g. sg, mn, mip-mn, aodv, msm")


def _compare_args(op: str, value: Any, field: str) -> None:
    if op in ("exists", "absent"):
        if value is not None:
            raise ValueError(f"op {op!r} takes no '{field}'")
    elif op in ("in", "not in"):
        if not isinstance(value, list):
            raise ValueError(f"op {op!r} needs '{field}' to be a list, e.g. {field}: [fa, ccoa]")
    elif value is None and op not in ("==", "!="):
        raise ValueError(f"op {op!r} needs '{field}'")


class StatusCheck(CheckBase, _StatusSource):
    """A value in a node's agent status JSON: ``status: NODE``, ``agent``/``file``, ``path``
    (``a.b[0].c``, ``rows[initiator_private=10.0.0.5]``, ``rows[*].installed``; see
    orchestration.checks.jsonpath), ``op`` and ``value``."""

    kind: Literal["status"] = "status"
    status: str = Field(description="node whose status file is read")
    path: str = Field(description="JSON path inside the status file")
    op: Op = "=="
    value: Any = None

    @model_validator(mode="after")
    def _valid(self) -> "StatusCheck":
        _one_source(self, "status")
        parse_path(self.path)
        _compare_args(self.op, self.value, "value")
        return self


class PcapCheck(CheckBase):
    """The number of frames of a capture that match a tshark display filter: ``pcap: LINK``
    (a segment, SEGMENT:NODE, A--B or NODE:IFNAME), captured from bring-up until the check
    runs; ``filter`` (Wireshark display filter), ``op`` and ``count``."""

    kind: Literal["pcap"] = "pcap"
    pcap: str = Field(description="link or segment captured for the run")
    filter: str = Field(description="tshark display filter, e.g. 'ip.proto == 4 && ip.src == 198.51.100.1'")
    op: Literal["==", "!=", ">=", "<=", ">", "<"] = ">="
    count: int = Field(ge=0)


Point = str  # start | end | before NAME | after NAME | NAME (= after NAME)


def parse_point(p: str) -> tuple[str, str | None]:
    """A point of the run as (where, step name): ('start', None), ('end', None),
    ('before', NAME) or ('after', NAME). ValueError for an empty name."""
    p = p.strip()
    if p in ("start", "end"):
        return p, None
    for w in ("before", "after"):
        if p.startswith(w + " "):
            name = p[len(w) + 1:].strip()
            if name:
                return w, name
    if not p:
        raise ValueError("an empty point; use start, end, 'before NAME' or 'after NAME'")
    return "after", p


class CounterCheck(CheckBase, _StatusSource):
    """The growth of a counter between two points of the run: ``counter: NODE`` and one
    source — a status counter (``agent``/``file`` + ``path``), a named nftables counter
    (``nft: 'ip napt portal_flows'``, ``field: packets|bytes``) or a kernel SNMP counter
    (``snmp: Icmp.InEchos``, /proc/net/snmp); ``from``/``to`` are ``start`` (bring-up
    done, before steps and schedule), ``end`` (when the check runs), ``before NAME`` or
    ``after NAME`` (a named step or schedule entry); ``op`` and ``delta``."""

    kind: Literal["counter"] = "counter"
    counter: str = Field(description="node whose counter is read")
    path: str | None = Field(None, description="JSON path of a number in the status file")
    nft: str | None = Field(None, description="named nftables counter: 'FAMILY TABLE NAME'")
    snmp: str | None = Field(None, description="kernel counter of /proc/net/snmp: 'Proto.Name', e.g. Icmp.InEchos")
    field: Literal["packets", "bytes"] = "packets"
    from_: Point = Field("start", alias="from")
    to: Point = "end"
    op: Literal["==", "!=", ">=", "<=", ">", "<"] = ">="
    delta: int

    @model_validator(mode="after")
    def _valid(self) -> "CounterCheck":
        sources = [k for k in ("path", "nft", "snmp") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError("a counter check reads one counter: 'agent'/'file' with 'path' (status), "
                             "'nft: FAMILY TABLE NAME' or 'snmp: Proto.Name'")
        if self.path is not None:
            _one_source(self, "counter")
            parse_path(self.path)
        elif self.agent or self.file:
            raise ValueError("'agent'/'file' go with 'path' (a status counter), not with nft or snmp")
        if self.nft is not None and len(self.nft.split()) != 3:
            raise ValueError(f"nft: {self.nft!r} must be 'FAMILY TABLE NAME', e.g. 'ip napt portal_flows'")
        if self.snmp is not None and not re.match(r"^[A-Za-z]+\.[A-Za-z0-9]+$", self.snmp):
            raise ValueError(f"snmp: {self.snmp!r} must be 'Proto.Name', e.g. Icmp.InEchos or Ip.ForwDatagrams")
        parse_point(self.from_)
        parse_point(self.to)
        if self.from_ == "end":
            raise ValueError("'from: end' leaves no time to count; use start, 'before NAME' or 'after NAME'")
        return self

    def points(self) -> list[str]:
        """The two points of the run this check reads its counter at: [from, to], each a Point
        string (start, end, "before NAME", "after NAME" or NAME); see parse_point.
        """
        return [self.from_, self.to]


class ReachCheck(CheckBase):
    """A reachability matrix: every node of ``reach`` (the sources) to every target of
    ``to`` (node names, or NODE@ADDRESS, or an address) either reaches or is blocked.
    ``how: ping`` (ICMP echo; blocked = echo requests left and none came back) or
    ``how: tcp`` with ``port`` (connected vs no connection)."""

    kind: Literal["reach"] = "reach"
    reach: list[str] = Field(min_length=1, description="source nodes")
    to: list[str] = Field(min_length=1, description="targets: node, NODE@ADDRESS or an IPv4 address")
    expect: Literal["reach", "blocked"] = "reach"
    how: Literal["ping", "tcp"] = "ping"
    port: int | None = Field(None, ge=1, le=65535)
    count: int = Field(3, ge=1, le=100, description="echo requests per pair (ping)")

    @field_validator("reach", "to", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _valid(self) -> "ReachCheck":
        if self.how == "tcp" and self.port is None:
            raise ValueError("how: tcp needs 'port' (the target's listening TCP port)")
        if self.how == "ping" and self.port is not None:
            raise ValueError("'port' is for how: tcp; remove it or set how: tcp")
        return self


class ContinuityCheck(CheckBase):
    """Session continuity across the schedule: a numbered UDP stream from ``continuity``
    (a node) to ``to`` (a node, NODE@ADDRESS) at ``rate`` datagrams/s runs from the start
    of the run until this check; it passes if the longest silence at the receiver is at
    most ``max_gap_ms`` and at most ``max_lost`` datagrams never arrived (claims 26-39, 14)."""

    kind: Literal["continuity"] = "continuity"
    continuity: str = Field(description="sending node")
    to: str = Field(description="receiving node (or NODE@ADDRESS)")
    port: int = Field(9400, ge=1, le=65535, description="UDP port of the stream")
    rate: float = Field(50.0, gt=0, le=1000, description="datagrams per second")
    max_gap_ms: float = Field(gt=0, description="longest silence allowed at the receiver, ms")
    max_lost: int = Field(ge=0, description="datagrams allowed never to arrive")


def _kind_of(v: Any) -> str | None:
    if isinstance(v, CheckBase):
        return "kind:" + str(getattr(v, "kind"))
    if not isinstance(v, dict):
        return None
    if "kind" in v:
        return f"kind:{v['kind']}"
    for k in KINDS:
        if k in v:
            return f"kind:{k}"
    return "kind:command" if "run" in v else None


KIND_ERROR = ("a check names its kind by one key: 'run' (command), 'status', 'pcap', 'counter', 'reach' or "
              "'continuity' (see orchestration/checks/model.py)")

# The tags appear in pydantic's error locations; orchestration.topology._loc leaves out
# every part that starts with "kind:", so an error reads checks[2].op, not checks[2].kind:status.op.
AnyCheck = Annotated[
    Union[Annotated[CommandCheck, Tag("kind:command")], Annotated[StatusCheck, Tag("kind:status")],
          Annotated[PcapCheck, Tag("kind:pcap")], Annotated[CounterCheck, Tag("kind:counter")],
          Annotated[ReachCheck, Tag("kind:reach")], Annotated[ContinuityCheck, Tag("kind:continuity")]],
    Discriminator(_kind_of, custom_error_type="check_kind", custom_error_message=KIND_ERROR),
]
TAGS = ("command",) + KINDS


def check_nodes(c: CheckBase) -> list[str]:
    """The node names a check runs on or refers to (targets given as addresses excluded)."""
    if isinstance(c, CommandCheck):
        return [c.node]
    if isinstance(c, StatusCheck):
        return [c.status]
    if isinstance(c, CounterCheck):
        return [c.counter]
    if isinstance(c, ReachCheck):
        return list(c.reach) + [t.partition("@")[0] for t in c.to if not _is_address(t)]
    if isinstance(c, ContinuityCheck):
        return [c.continuity, c.to.partition("@")[0]]
    return []


def _is_address(t: str) -> bool:
    return bool(re.match(r"^\d+\.\d+\.\d+\.\d+$", t))


def check_points(checks: list[Any]) -> list[tuple[int, str, str]]:
    """(index, where, step name) of every named point the counter checks use."""
    out = []
    for i, c in enumerate(checks):
        if isinstance(c, CounterCheck):
            for p in c.points():
                where, name = parse_point(p)
                if name is not None:
                    out.append((i, where, name))
    return out


__all__ = ["AnyCheck", "CheckBase", "CommandCheck", "StatusCheck", "PcapCheck", "CounterCheck", "ReachCheck",
           "ContinuityCheck", "Op", "CLAIMS", "TAGS", "parse_point", "check_nodes", "check_points"]
