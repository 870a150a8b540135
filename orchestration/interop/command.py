"""`testbed interop --peer <suite>`: one release's rows of the matrix in a lab of its own
(the scenario's topology cut down to that suite), results under results/interop/<suite>/."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from orchestration.images import PEER_SUITES

from .labspec import topology


def run_row(peer: str, lab: str | None = None, keep: bool = False,
            say: Callable[[str], None] = print) -> tuple[dict, Path]:
    """Run the interop scenario for one peer suite: (report, results folder). ValueError for
    an unknown suite."""
    from orchestration.scenario import RESULTS_DIR, run_scenario
    if peer not in PEER_SUITES:
        raise ValueError(f"--peer {peer!r}: choose one of {', '.join(PEER_SUITES)}")
    results = RESULTS_DIR / "interop" / peer
    report = run_scenario("interop", lab_name=lab or f"iop{peer[:2]}", keep=keep, say=say,
                          topology=topology([peer], name=f"iop{peer[:2]}"), results_dir=results)
    return report, results


def summary(results: Path) -> str:
    """The Markdown table (with the log excerpts of failing cells) and where the JSON is."""
    md = results / "matrix.md"
    table = md.read_text() if md.is_file() else "(no matrix: the run stopped before it; see report.json)\n"
    return table + f"\nJSON: {results / 'matrix.json'}\n"


def cells(results: Path) -> list[dict]:
    """The cells of ``<results>/matrix.json`` as dicts (Cell.to_json), or [] when the run left
    no matrix.json. ValueError (json) for a malformed file, KeyError when it has no "cells".
    """
    p = results / "matrix.json"
    return json.loads(p.read_text())["cells"] if p.is_file() else []
