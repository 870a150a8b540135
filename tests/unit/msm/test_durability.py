"""State that survives faults (issue 9): a change the portal acknowledged survives SIGKILL of
the MSM process at once after the answer; versions stay monotonic; the seed is not re-applied.

Why this can fail: the portal answers only after SQLite's COMMIT returned (WAL, synchronous=FULL).
A design that answers first and writes later (a write-behind cache, a background flush) or one
that re-applies the seed at start (the issue's finding: a removed member came back) fails here.
"""
from __future__ import annotations

import sqlite3

import pytest

from testbed.common.portal_client import MsmError
from testbed.msm.store import Store

from .harness import MsmProcess

SEED = {
    "mvpns": [{"name": "A", "realm": "10.0.0.0/24", "sg_public": "203.0.113.1"},
              {"name": "B", "realm": "10.0.0.0/24", "sg_public": "203.0.113.2"}],
    "users": [{"fqdn": f"u{i}.mwg.test", "mvpn": "AB"[i % 2], "private_address": f"10.0.0.{10 + i}"}
              for i in range(6)],
    "workgroups": [{"name": "W", "members": [f"u{i}.mwg.test" for i in range(6)]}],
    "tokens": [{"identity": "u0.mwg.test", "kind": "mn", "token": "tttttt.0123456789abcdef"}],
}


def test_store_runs_wal_with_full_sync(tmp_path):
    s = Store(str(tmp_path / "m.db"))
    try:
        assert s._one("PRAGMA journal_mode")[0] == "wal"
        assert s._one("PRAGMA synchronous")[0] == 2  # FULL
    finally:
        s.close()


def test_acknowledged_changes_survive_sigkill(tmp_path):
    msm = MsmProcess(tmp_path, {"seed": SEED})
    msm.start()
    try:
        c = msm.client
        seen = [c.version()]
        # each step: one acknowledged change, SIGKILL right after the answer, restart, check
        steps = [
            ("remove u1 from W", lambda: c.remove_member("W", "u1.mwg.test"),
             lambda: "u1.mwg.test" not in [m["fqdn"] for m in c.workgroup("W")["members"]]),
            ("delete u2 (revokes)", lambda: c.delete_user("u2.mwg.test"),
             lambda: "u2.mwg.test" not in [u["fqdn"] for u in c.users()]),
            ("add workgroup V", lambda: c.add_workgroup("V"),
             lambda: c.workgroup("V")["members"] == []),
            ("add u3 to V", lambda: c.add_member("V", "u3.mwg.test"),
             lambda: [m["fqdn"] for m in c.workgroup("V")["members"]] == ["u3.mwg.test"]),
        ]
        for name, change, check in steps:
            change()
            acked = c.version()
            msm.kill()
            msm.start()
            assert check(), name
            assert c.version() >= acked >= seen[-1], name
            seen.append(c.version())
        # an enrolment (token spent + certificate recorded) survives too
        u0 = msm.caller("u0.mwg.test", "mn")
        msm.kill()
        msm.start()
        assert u0.user("u0.mwg.test")["fqdn"] == "u0.mwg.test"  # its certificate is still known
        # a token used just before the crash stays used
        from testbed.common.enroll import make_csr
        from testbed.msm.ca import new_key
        msm.anonymous().enroll("tttttt.0123456789abcdef", make_csr(new_key("ec")))
        msm.kill()
        msm.start()
        with pytest.raises(MsmError) as exc:
            msm.anonymous().enroll("tttttt.0123456789abcdef", make_csr(new_key("ec")))
        assert exc.value.reason == "token_used"
        # versions never went backwards, and the seed never came back
        assert seen == sorted(seen)
        assert "u1.mwg.test" not in [m["fqdn"] for m in c.workgroup("W")["members"]]
    finally:
        if msm.proc is not None:
            msm.stop()


def test_sigkill_during_a_burst_of_changes_loses_no_acknowledged_one(tmp_path):
    """Changes from a writer thread, SIGKILL at an arbitrary moment: every change that was
    acknowledged before the kill is there after the restart."""
    import threading
    import time

    msm = MsmProcess(tmp_path, {"seed": SEED})
    msm.start()
    try:
        c = msm.client
        acked: list[str] = []
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                name = f"g{i}"
                try:
                    c.add_workgroup(name)
                except MsmError:
                    return  # the MSM is gone
                acked.append(name)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(1.5)
        msm.kill()
        stop.set()
        t.join(15)
        assert len(acked) > 5
        msm.start()
        have = {w["name"] for w in c.request("GET", "/api/workgroups")}
        missing = [n for n in acked if n not in have]
        assert not missing
    finally:
        if msm.proc is not None:
            msm.stop()


def test_a_store_with_objects_is_never_seeded(tmp_path):
    """A store that already holds objects (e.g. made by an older MSM, without the `seeded`
    mark) keeps them: the seed only ever goes into an empty store, as one transaction."""
    db = tmp_path / "vol" / "msm.db"
    db.parent.mkdir(parents=True)
    s = Store(str(db))
    s.add_mvpn({"name": "Z", "realm": "10.9.0.0/24", "sg_public": "203.0.113.99"})  # made by hand, no seed mark
    s.close()
    msm = MsmProcess(tmp_path, {"seed": SEED})
    msm.start()
    try:
        assert [m["name"] for m in msm.client.mvpns()] == ["Z"]  # the seed did not overwrite it
    finally:
        msm.stop()
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM meta WHERE key='seeded'").fetchone()[0] == 1
    con.close()
