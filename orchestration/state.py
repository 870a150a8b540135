"""Where the labs that are up keep their state: one JSON file per lab under ``STATE_DIR``.

Lab (writes it), cleanup (reads and removes it) and the CLI (lists it) all depend on
this module and on nothing of each other for it, so ``lab`` and ``cleanup`` do not
import one another for paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Folder of the state files; ``TESTBED_STATE_DIR`` moves it (tests, a second testbed).
STATE_DIR = Path(os.environ.get("TESTBED_STATE_DIR", "/run/testbed/labs"))


def state_path(lab: str) -> Path:
    """The state file of lab ``lab`` (whether or not it exists)."""
    return STATE_DIR / f"{lab}.json"


def labs_up() -> list[str]:
    """Names of the labs with a state file, sorted; empty when the folder is missing."""
    return sorted(p.stem for p in STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []


def write_state(lab: str, state: dict) -> None:
    """Replace the state file of ``lab`` atomically (write a .tmp, rename over).

    Raises OSError when the folder cannot be made or written."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = state_path(lab).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(state_path(lab))
