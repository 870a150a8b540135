"""Checks as data (issue 10 §4): the check kinds, their runner, and the helpers scenarios
share (status files, waiting, streams, A/B comparisons).

Modules, one job each: ``model`` (the kinds as pydantic models: command, status, pcap,
counter, reach, continuity), ``jsonpath`` (paths into status JSON), ``compare`` (the
operators), ``status`` (reading status files, wait_until), ``counter`` (status, nft and
SNMP counters; pcap counts are orchestration.evidence.count), ``reach`` (ping/TCP probes),
``stream`` (numbered UDP streams: loss and gaps), ``session`` (the runner),
``claims`` (the claim coverage matrix of ``testbed claims``).
"""
from __future__ import annotations

from .model import (AnyCheck, CheckBase, CommandCheck, ContinuityCheck, CounterCheck, PcapCheck, ReachCheck,
                    StatusCheck)
from .session import CheckResult, CheckSession, judge, run_check
from .status import read_json, read_status, read_statuses, wait_until

__all__ = ["AnyCheck", "CheckBase", "CommandCheck", "StatusCheck", "PcapCheck", "CounterCheck", "ReachCheck",
           "ContinuityCheck", "CheckResult", "CheckSession", "judge", "run_check", "read_json", "read_status",
           "read_statuses", "wait_until"]
