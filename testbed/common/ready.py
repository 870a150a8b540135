"""Readiness: wait until an agent's status file says it is up, then run a command.

A start order of agents replaces the shell loops (``until grep -q ... ; do sleep; done``)
that lab files used to carry. A condition is a status file (JSON, written atomically by
every agent, see ``jsonfile.write_json_atomic``), optionally a dotted key inside it that
must exist (``mode``, ``tunnels.B.state``) and optionally the value it must have.

    python3 -m testbed.common.ready --file /run/testbed/mip-mn.json --key mode --equals home \\
        --timeout 60 --what "Mobile IP at home" -- python3 -m testbed.mn --config /etc/testbed/mn.yaml

exits 3 with ``not ready after 60 s: Mobile IP at home (/run/testbed/mip-mn.json: mode is
'fa', wanted 'home')`` when the condition does not come true in time, else execs the command.
The host side (orchestration.lab) uses :func:`unmet` on a file it read from another node.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

_MISSING = object()


def lookup(doc: Any, key: str) -> Any:
    """The value at dotted ``key`` in nested dicts (list items by index), or a sentinel."""
    cur = doc
    for part in key.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def unmet(text: str | None, key: str | None = None, equals: Any = None) -> str | None:
    """Why a status file's ``text`` does not (yet) satisfy the condition; None when it does.

    ``text`` None means the file does not exist. Without ``key``, a file holding a JSON
    object is enough. With ``key`` and no ``equals``, the value must exist and be truthy;
    with ``equals``, it must equal it (compared as text, so ``equals: "1"`` matches 1).
    """
    if text is None:
        return "no status file yet"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return "status file is not JSON yet"
    if not isinstance(doc, dict):
        return "status file is not a JSON object"
    if key is None:
        return None
    val = lookup(doc, key)
    if val is _MISSING:
        return f"{key} is absent"
    if equals is None:
        return None if val else f"{key} is {val!r}"
    shown = json.dumps(val) if isinstance(val, bool) else str(val)
    if shown == str(equals):
        return None
    return f"{key} is {val!r}, wanted {equals!r}"


def wait_ready(path: str, key: str | None, equals: Any, timeout_s: float, interval_s: float = 0.2) -> str | None:
    """Poll ``path`` until :func:`unmet` says nothing; return the last reason on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                text: str | None = f.read()
        except OSError:
            text = None
        why = unmet(text, key, equals)
        if why is None or time.monotonic() >= deadline:
            return why
        time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.common.ready", description=__doc__.split("\n")[0])
    ap.add_argument("--file", required=True, help="status file (JSON)")
    ap.add_argument("--key", help="dotted key that must exist (and be true, or equal --equals)")
    ap.add_argument("--equals", help="value the key must have")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds before giving up (exit 3)")
    ap.add_argument("--what", default="", help="what is waited for, named in the timeout message")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- command to exec once ready")
    a = ap.parse_args(argv)
    why = wait_ready(a.file, a.key, a.equals, a.timeout)
    if why is not None:
        print(f"not ready after {a.timeout:g} s: {a.what or a.file} ({a.file}: {why})", file=sys.stderr)
        return 3
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if cmd:
        os.execvp(cmd[0], cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
