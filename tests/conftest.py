"""Shared by every test: in CI (``CI=true``, set by .ci/run and by CI services) a skipped
test is a failed one. A test skips when something it needs is absent on the machine (root,
a tool, a kernel feature); on a developer's machine that is a notice, in CI it would hide a
feature that was never tested, so it fails loudly with the skip's reason."""
from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_reason(rep: pytest.TestReport | pytest.CollectReport) -> str:
    lr = rep.longrepr
    return lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


def _fail_skip(rep: pytest.TestReport | pytest.CollectReport) -> None:
    if rep.skipped and in_ci() and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped in CI (CI=true): every test must run there; {_skip_reason(rep)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    _fail_skip(outcome.get_result())
