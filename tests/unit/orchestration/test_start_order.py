"""Lab._setup's start order with a recording backend (no Docker): a status file that many
nodes wait for is polled as one wait, each node starts once its own condition holds, and a
condition that never holds fails bring-up naming it."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from orchestration.backend import ExecResult
from orchestration.lab import Lab, LabError
from orchestration.topology import parse_topology


class Recorder:
    """Answers ``cat`` of a status file once that node's agent was started ``delay_s`` ago."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.delay_s = delay_s
        self.started: dict[str, float] = {}
        self.cats: list[str] = []
        self.lock = threading.Lock()

    def put_file(self, lab, node, path, content, mode=0o644):
        pass

    def shell(self, lab, node, cmd, timeout=None):
        return ExecResult(0, "", "")

    def exec(self, lab, node, cmd, timeout=None, detach=False):
        with self.lock:
            if detach:
                self.started[node] = time.monotonic()
                return ExecResult(0, "", "")
            self.cats.append(node)
            t = self.started.get(node)
        ready = t is not None and time.monotonic() - t >= self.delay_s and node != "never"
        return ExecResult(0, '{"ok": true}', "") if ready else ExecResult(1, "", "no such file")


def _lab(tmp_path: Path, mns: int, sg_waits_on: str = "msm") -> tuple[Lab, Recorder]:
    nodes = {"msm": {"role": "msm", "start": ["msm-agent"]},
             "never": {"role": "host"},
             "sg": {"role": "sg", "start": ["sg-agent"],
                    "start_after": [{"node": sg_waits_on, "file": "/run/s.json", "timeout_s": 1}]}}
    for i in range(mns):
        nodes[f"mn{i}"] = {"role": "mn", "start": ["mn-agent"],
                           "start_after": [{"node": "sg", "file": "/run/s.json", "timeout_s": 2}]}
    rec = Recorder()
    lab = Lab(parse_topology({"name": "so", "nodes": nodes}), name="so", backend=rec, workdir=tmp_path)
    return lab, rec


def test_a_shared_condition_is_one_wait_and_nodes_start_after_it(tmp_path: Path) -> None:
    lab, rec = _lab(tmp_path, mns=40)
    lab._setup(lambda m: None)
    assert set(rec.started) == {"msm", "sg", *(f"mn{i}" for i in range(40))}
    assert rec.started["sg"] >= rec.started["msm"] + rec.delay_s
    assert all(rec.started[f"mn{i}"] >= rec.started["sg"] + rec.delay_s for i in range(40))
    # polled every 0.3 s by one waiter: a handful of reads, not one per waiting node
    assert rec.cats.count("sg") <= 3, rec.cats


def test_a_condition_that_never_holds_fails_naming_it(tmp_path: Path) -> None:
    lab, rec = _lab(tmp_path, mns=3, sg_waits_on="never")
    with pytest.raises(LabError, match="not ready after 1 s: never"):
        lab._setup(lambda m: None)
    assert "sg" not in rec.started and not any(n.startswith("mn") for n in rec.started)
