"""Reading the agents' status files from a running lab, and waiting for a condition.

Every agent of the testbed writes its state as JSON under /run/testbed/ (testbed.common
and the agents' ``status_file``); scenarios, benches and the check kinds read them through
these helpers instead of each their own ``cat`` + ``json.loads`` + polling loop.
"""
from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, TypeVar

T = TypeVar("T")
STATUS_DIR = "/run/testbed"


class Execs(Protocol):
    """What the helpers need of a lab: orchestration.lab.Lab.exec."""

    def exec(self, node: str, cmd: Any, timeout: float | None = None, check: bool = False) -> Any:
        """Run ``cmd`` (a string for sh -c, or an argv list) in ``node``, giving up after
        ``timeout`` seconds (None: no limit); returns a result with ``ok``, ``stdout`` and
        ``stderr``. With ``check`` a failing command raises (Lab.exec: LabError), as does
        a node the lab has not."""


def status_path(agent_or_path: str) -> str:
    """``sg`` -> /run/testbed/sg.json; a path (with a '/') is returned as it is."""
    return agent_or_path if "/" in agent_or_path else f"{STATUS_DIR}/{agent_or_path}.json"


def read_json(lab: Execs, node: str, path: str, timeout: float = 30) -> Any:
    """The JSON document in ``path`` on ``node``, or None when the file is missing, empty or
    not JSON (an agent not started yet, or rewriting it). Exec failures propagate."""
    r = lab.exec(node, f"cat {shlex.quote(path)}", timeout=timeout)
    if not r.ok or not r.stdout.strip():
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def read_status(lab: Execs, node: str, agent_or_path: str) -> dict:
    """A node's agent status (``agent_or_path``: ``sg``, ``mip-mn`` or a full path) as a dict;
    ``{}`` when there is none yet, so ``read_status(...).get(...)`` chains work."""
    doc = read_json(lab, node, status_path(agent_or_path))
    return doc if isinstance(doc, dict) else {}


def read_statuses(lab: Execs, nodes: list[str], agent_or_path: str) -> dict[str, dict]:
    """Every node's status at once (one exec per node, up to 8 in parallel: a 10-node lab is
    read in about the time of one read)."""
    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as ex:
        return dict(zip(nodes, ex.map(lambda n: read_status(lab, n, agent_or_path), nodes)))


def wait_until(pred: Callable[[], T], timeout_s: float, interval_s: float = 0.3) -> T:
    """Call ``pred`` every ``interval_s`` until it returns something true or ``timeout_s``
    is over; returns its last value (true: it came; false/None: it did not). ``pred`` is
    always called at least once, and once more at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval_s)


def parallel(fn: Callable[[str], T], nodes: list[str]) -> list[T]:
    """``fn`` applied to every node, up to 8 at once; results in the order of ``nodes``."""
    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as ex:
        return list(ex.map(fn, nodes))
