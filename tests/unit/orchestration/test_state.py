"""The lab state files: written atomically, listed, found by cleanup (no Docker)."""

import json

from orchestration import cleanup, state


def test_write_list_and_path(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_DIR", tmp_path / "labs")
    assert state.labs_up() == []                      # folder missing: no labs, no error
    state.write_state("beta", {"name": "beta", "pid": 1})
    state.write_state("alpha", {"name": "alpha", "pid": 2})
    assert state.labs_up() == ["alpha", "beta"]
    assert json.loads(state.state_path("alpha").read_text())["pid"] == 2
    assert not list((tmp_path / "labs").glob("*.tmp"))  # the rename left no temporary behind


def test_cleanup_sees_labs_by_state_file(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "STATE_DIR", tmp_path)
    state.write_state("gone", {"pid": 0})

    class NoEngine:
        def list_nodes(self, lab=None):
            return []

    monkeypatch.setattr(cleanup.nsmod, "labs_with_entries", lambda: set())
    assert cleanup.known_labs(NoEngine()) == {"gone"}
    state.state_path("gone").unlink()
    assert cleanup.known_labs(NoEngine()) == set()
