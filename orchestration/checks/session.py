"""Running checks of every kind against a running lab (one runner for scenario.yaml and
lab files).

The stateless kinds (command, status, reach) are decided when they run, tried again every
``interval_s`` until they pass or their ``retry`` seconds are over. The others need the run
around them, so an engine drives a CheckSession:

    session = CheckSession(lab, checks, workdir)
    session.start()                    # after bring-up: captures, streams, counters at 'start'
    session.mark("before", step.name)  # around each named step / schedule entry
    ...; session.mark("after", step.name)
    result = session.run(check)        # at the check's time
    session.close()                    # stops what start() began

A check that cannot be run (node gone, tshark refuses the filter, exec timeout) fails
with the reason in its detail; the other checks still run.
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .compare import compare, show
from .counter import nft_counter, snmp_counter, status_counter
from .jsonpath import MISSING, lookup, parent_exists
from .model import (CheckBase, CommandCheck, ContinuityCheck, CounterCheck, PcapCheck, ReachCheck, StatusCheck,
                    parse_point)
from ..evidence import count as count_frames
from .reach import probe, resolve
from .status import read_json
from . import stream as stream_mod
from .stream import install_stream, session as stream_session, start_stream, stop_stream, stream_result


@dataclass
class CheckResult:
    """The outcome of one check: its name, pass/fail, why, and the claims it exercises."""

    name: str
    passed: bool
    detail: str = ""
    claims: list[int] = field(default_factory=list)


def judge(c: CommandCheck, exit_code: int, stdout: str, stderr: str) -> tuple[bool, str]:
    """Decide one attempt of a command check from the command's exit status and output.

    Returns (passed, detail); the detail names what was missing or present."""
    ok = (exit_code == 0) == (c.expect == "ok")
    detail = f"exit {exit_code}"
    if ok and c.reason and not re.search(c.reason, stdout + "\n" + stderr):
        ok, detail = False, f"{detail}; failed, but not because /{c.reason}/"
    if ok and c.match and not re.search(c.match, stdout):
        ok, detail = False, f"{detail}; output lacks /{c.match}/"
    if ok and c.no_match and re.search(c.no_match, stdout):
        ok, detail = False, f"{detail}; output has /{c.no_match}/"
    if not ok:
        tail = (stdout + stderr).strip().splitlines()[-3:]
        detail += ("; " + " | ".join(tail)) if tail else ""
    return ok, detail


def retrying(c: CheckBase, attempt: Callable[[], tuple[bool, str]], interval_s: float = 0.5) -> CheckResult:
    """``attempt`` again every ``interval_s`` until it passes or ``c.retry`` s are over; an
    exception is a failed attempt whose detail names it."""
    deadline = time.monotonic() + c.retry
    while True:
        try:
            ok, detail = attempt()
        except Exception as e:  # noqa: BLE001 - any failure to run is this check's failure
            ok, detail = False, f"could not run: {type(e).__name__}: {e}"
        if ok or time.monotonic() >= deadline:
            return CheckResult(c.name, ok, detail, list(c.claims))
        time.sleep(interval_s)


class CheckSession:
    """The checks of one run and what they need of it (captures, streams, counter samples).

    ``lab``: an orchestration.lab.Lab (exec, spawn, put_file, capture, topology);
    ``workdir``: where pcaps go (``pcaps/check-<link>.pcap``); ``captures``: links the
    engine already captures, key -> pcap path (reused instead of a second tcpdump);
    ``addresses``: node -> address for reach/continuity targets named by node (a lab
    file's derived addresses), before the topology's link addresses."""

    def __init__(self, lab: Any, checks: list[CheckBase], workdir: Path | None = None,
                 captures: dict[str, Path] | None = None, interval_s: float = 0.5,
                 addresses: dict[str, str] | None = None) -> None:
        self.lab, self.checks, self.interval_s = lab, list(checks), interval_s
        self.addresses = dict(addresses or {})
        self.workdir = Path(workdir) if workdir else Path(getattr(lab, "workdir", "."))
        self.pcaps: dict[str, Path] = dict(captures or {})
        self._procs: dict[str, Any] = {}
        self.samples: dict[tuple[int, str], int | None] = {}
        self.streams: dict[int, dict[str, str]] = {}
        self.errors: dict[str, str] = {}  # what start() could not begin: pcap link or stream<i> -> why
        self.started = False

    # --- the run around the checks ------------------------------------------------------
    def start(self) -> None:
        """After bring-up, before steps and schedule: start a capture per pcap link not yet
        captured, a stream per continuity check, and read the counters taken at 'start'."""
        self.started = True
        for c in self.checks:
            if isinstance(c, PcapCheck) and c.pcap not in self.pcaps and c.pcap not in self.errors:
                path = self.workdir / "pcaps" / f"check-{c.pcap.replace(':', '_')}.pcap"
                try:
                    self._procs[c.pcap] = self.lab.capture(c.pcap, path)
                    self.pcaps[c.pcap] = path
                except Exception as e:  # noqa: BLE001 - the pcap checks of this link fail with it
                    self.errors[c.pcap] = f"capture of {c.pcap} did not start: {type(e).__name__}: {e}"
        for i, c in enumerate(self.checks):
            if isinstance(c, ContinuityCheck):
                try:
                    self._start_stream(i, c)
                except Exception as e:  # noqa: BLE001 - this continuity check fails with it
                    self.errors[f"stream{i}"] = f"stream did not start: {type(e).__name__}: {e}"
        self._sample("start", None)

    def mark(self, where: str, name: str | None) -> None:
        """A named step or schedule entry is about to run (``before``) or has run (``after``)."""
        if name:
            self._sample(where, name)

    def close(self) -> None:
        """Stop the captures and streams this session started (idempotent)."""
        stop = getattr(self.lab, "stop_capture", None)
        for key, p in list(self._procs.items()):
            if stop is not None:
                stop(p)
            self._procs.pop(key, None)
        for i, s in list(self.streams.items()):
            try:
                stop_stream(self.lab, s["src"], s["dst"], s["stop"], drain_s=0)
            except Exception:  # noqa: BLE001 - the lab may already be gone
                pass
            self.streams.pop(i, None)

    def _sample(self, where: str, name: str | None) -> None:
        for i, c in enumerate(self.checks):
            if isinstance(c, CounterCheck):
                for p in c.points():
                    if parse_point(p) == (where, name):
                        self.samples[(i, p)] = self._read_counter(c)

    def _read_counter(self, c: CounterCheck) -> int | None:
        try:
            if c.path is not None:
                return status_counter(self.lab, c.counter, c.status_file(), c.path)
            if c.nft is not None:
                return nft_counter(self.lab, c.counter, c.nft, c.field)
            assert c.snmp is not None
            return snmp_counter(self.lab, c.counter, c.snmp)
        except Exception:  # noqa: BLE001 - unreadable now is "not there" at this point
            return None

    def _start_stream(self, i: int, c: ContinuityCheck) -> None:
        dst = self._resolve(c.to)
        tag = f"cont{i}"
        stop = f"{stream_mod.RUN_DIR}/tb-{tag}.stop"
        dst_node = c.to.partition("@")[0]
        install_stream(self.lab, [c.continuity, dst_node])
        start_stream(self.lab, c.continuity, dst_node, dst, c.port, c.rate, 600, tag, stop_file=stop)
        self.streams[i] = {"src": c.continuity, "dst": dst_node, "tag": tag, "stop": stop, "address": dst}

    # --- the checks ----------------------------------------------------------------------
    def run(self, c: CheckBase) -> CheckResult:
        """Run one check now (with its retries); never raises."""
        try:
            return self._run(c)
        except Exception as e:  # noqa: BLE001 - a broken check is a failed check
            return CheckResult(c.name, False, f"could not run: {type(e).__name__}: {e}", list(c.claims))

    def _run(self, c: CheckBase) -> CheckResult:
        if isinstance(c, CommandCheck):
            def attempt() -> tuple[bool, str]:
                r = self.lab.exec(c.node, c.run, timeout=c.timeout)
                return judge(c, r.exit_code, r.stdout, r.stderr)
            return retrying(c, attempt, self.interval_s)
        if isinstance(c, StatusCheck):
            return retrying(c, lambda: self._status(c), self.interval_s)
        if isinstance(c, ReachCheck):
            return retrying(c, lambda: self._reach(c), self.interval_s)
        if isinstance(c, PcapCheck):
            return retrying(c, lambda: self._pcap(c), self.interval_s)
        if isinstance(c, CounterCheck):
            return retrying(c, lambda: self._counter(c), self.interval_s)
        if isinstance(c, ContinuityCheck):
            return CheckResult(c.name, *self._continuity(c), list(c.claims))
        raise TypeError(f"no runner for {type(c).__name__}")

    def _resolve(self, target: str) -> str:
        if target in self.addresses:
            return self.addresses[target]
        return resolve(getattr(self.lab, "topology", None), target)

    def _index(self, c: CheckBase) -> int:
        return next((i for i, x in enumerate(self.checks) if x is c), -1)

    def _status(self, c: StatusCheck) -> tuple[bool, str]:
        doc = read_json(self.lab, c.status, c.status_file(), timeout=c.timeout)
        if doc is None:
            return False, f"{c.status}:{c.status_file()}: no status file (or not JSON) yet"
        value = lookup(doc, c.path)
        if value is MISSING and c.op in ("absent", "!=") and not parent_exists(doc, c.path):
            return False, (f"{c.status}:{c.status_file()} {c.path}: the path's container is not there "
                           "either (a misspelt key?); absence is judged only inside an existing object")
        ok, detail = compare(value, c.op, c.value)
        return ok, f"{c.status}:{c.status_file()} {c.path}: {detail}"

    def _reach(self, c: ReachCheck) -> tuple[bool, str]:
        pairs = [(s, t, self._resolve(t)) for s in c.reach for t in c.to]
        with ThreadPoolExecutor(max_workers=min(8, len(pairs))) as ex:
            got = list(ex.map(lambda p: probe(self.lab, p[0], p[2], c.how, c.port, c.count, c.timeout), pairs))
        bad = [f"{s}->{t} ({a}): {res}, {why}" for (s, t, a), (res, why) in zip(pairs, got) if res != c.expect]
        if bad:
            return False, f"expected {c.expect} ({c.how}): " + "; ".join(bad)
        return True, f"{len(pairs)} pair(s) {c.expect} ({c.how}): " + "; ".join(
            f"{s}->{t} {why}" for (s, t, _), (_, why) in zip(pairs, got))

    def _pcap(self, c: PcapCheck) -> tuple[bool, str]:
        path = self.pcaps.get(c.pcap)
        if c.pcap in self.errors:
            return False, self.errors[c.pcap]
        if path is None:
            return False, f"no capture of {c.pcap} (the session was not started before the run)"
        time.sleep(0.2)  # tcpdump -U writes each packet at once; let the last ones land
        if not Path(path).is_file():
            return False, f"no capture file {path}"
        n = count_frames(path, c.filter)  # EvidenceError (bad filter, no tshark): this attempt fails with it
        ok, detail = compare(n, c.op, c.count)
        return ok, f"{c.pcap}: {n} frame(s) match {c.filter!r}; {detail.replace('found ', '', 1)}"

    def _counter(self, c: CounterCheck) -> tuple[bool, str]:
        i = self._index(c)
        values = {}
        for p in c.points():
            if parse_point(p)[0] == "end":
                values[p] = self._read_counter(c)
            elif (i, p) in self.samples:
                values[p] = self.samples[(i, p)]
            else:
                return False, f"point {p!r} was not reached in this run (no step or schedule entry of that name ran)"
        a, b = values[c.from_], values[c.to]
        what = c.nft or c.snmp or f"{c.status_file()} {c.path}"
        if b is None:
            return False, f"{c.counter}: {what}: not found at {c.to!r} (at {c.from_!r}: {show(a if a is not None else MISSING)})"
        note = "" if a is not None else f" (absent at {c.from_!r}: counted from 0)"
        d = b - (a or 0)
        ok, detail = compare(d, c.op, c.delta)
        return ok, f"{c.counter}: {what}: {a or 0} -> {b}, delta {d}{note}; {detail.split(', ', 1)[-1]}"

    def _continuity(self, c: ContinuityCheck) -> tuple[bool, str]:
        i = self._index(c)
        s = self.streams.pop(i, None)
        if f"stream{i}" in self.errors:
            return False, self.errors[f"stream{i}"]
        if s is None:
            return False, "no stream ran for this check (the session was not started before the run)"
        stop_stream(self.lab, s["src"], s["dst"], s["stop"])
        sent, recs = stream_result(self.lab, s["src"], s["dst"], s["tag"])
        r = stream_session(sent, recs)
        if r["received"] == 0:
            return False, f"{c.continuity}->{c.to} ({s['address']}): none of {r['sent']} datagrams arrived"
        ok = r["max_gap_ms"] <= c.max_gap_ms and r["lost"] <= c.max_lost
        return ok, (f"{c.continuity}->{c.to} ({s['address']}, UDP {c.port}, {c.rate:g}/s): longest gap "
                    f"{r['max_gap_ms']:g} ms (max {c.max_gap_ms:g}), lost {r['lost']} of {r['sent']} (max {c.max_lost}), "
                    f"first arrival {r['first_arrival_s']} s")


def run_check(lab: Any, c: CheckBase, interval_s: float = 0.5) -> CheckResult:
    """One stateless check (command, status, reach) on a running lab, with its retries.
    The kinds that need the run around them (pcap, counter, continuity) need a CheckSession."""
    return CheckSession(lab, [c], interval_s=interval_s).run(c)
