"""In CI a skipped test fails with its reason (tests/conftest.py); elsewhere it stays a skip."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()

DEMO = '''
import pytest
def test_tool_absent():
    pytest.skip("tshark not installed")
@pytest.mark.skipif(True, reason="needs root")
def test_needs_root():
    pass
def test_runs():
    pass
'''


def run_demo(tmp_path: Path, env_ci: str | None) -> subprocess.CompletedProcess[str]:
    shutil.copy(HERE.parents[2] / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_demo.py").write_text(DEMO)
    env = {"PATH": "/usr/bin:/bin"} | ({"CI": env_ci} if env_ci is not None else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_a_skip_fails_in_ci_with_its_reason(tmp_path: Path) -> None:
    r = run_demo(tmp_path, "true")
    assert r.returncode == 1, r.stdout
    assert "skipped in CI (CI=true)" in r.stdout and "tshark not installed" in r.stdout and "needs root" in r.stdout
    assert "1 passed" in r.stdout


def test_a_skip_stays_a_skip_off_ci(tmp_path: Path) -> None:
    r = run_demo(tmp_path, None)
    assert r.returncode == 0 and "2 skipped" in r.stdout and "1 passed" in r.stdout, r.stdout
