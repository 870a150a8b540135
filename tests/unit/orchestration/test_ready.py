"""Readiness conditions (testbed.common.ready): what counts as ready, and the timeout
message that names what did not come up."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from testbed.common.ready import unmet, wait_ready


def test_unmet_reasons() -> None:
    assert unmet(None) == "no status file yet"
    assert unmet("{half") == "status file is not JSON yet"
    assert unmet("[1]") == "status file is not a JSON object"
    assert unmet("{}") is None
    assert unmet('{"mode": "fa"}', "mode", "home") == "mode is 'fa', wanted 'home'"
    assert unmet('{"mode": "home"}', "mode", "home") is None
    assert unmet('{"a": {"b": [0, {"c": true}]}}', "a.b.1.c", "true") is None
    assert unmet('{"a": {"b": 0}}', "a.b") == "a.b is 0"
    assert unmet('{"a": 1}', "x.y") == "x.y is absent"
    assert unmet('{"n": 3}', "n", 3) is None


def test_wait_ready_sees_a_file_that_appears_later(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    threading.Timer(0.3, lambda: f.write_text(json.dumps({"mode": "home"}))).start()
    assert wait_ready(str(f), "mode", "home", timeout_s=5, interval_s=0.05) is None


def test_command_line_times_out_naming_what_and_why(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"mode": "fa"}))
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "testbed.common.ready", "--file", str(f), "--key", "mode", "--equals", "home",
                        "--timeout", "0.5", "--what", "Mobile IP at home", "--", "echo", "started"],
                       capture_output=True, text=True)
    assert r.returncode == 3 and r.stdout == "" and time.monotonic() - t < 10
    assert f"not ready after 0.5 s: Mobile IP at home ({f}: mode is 'fa', wanted 'home')" in r.stderr
    f.write_text(json.dumps({"mode": "home"}))
    r = subprocess.run([sys.executable, "-m", "testbed.common.ready", "--file", str(f), "--key", "mode", "--equals", "home",
                        "--timeout", "2", "--", "echo", "started"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "started\n"
