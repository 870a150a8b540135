"""Regression tests of the newcomer trial of the portal: clients that go away mid-request,
deeply nested JSON, connection floods, and the modes of the db holding token secrets."""
from __future__ import annotations

import os
import stat

from testbed.msm.store import Store



def test_db_and_its_directory_are_private(tmp_path):
    """msm.db holds token secrets: the db, -wal and -shm 0600, its directory 0700 (they were
    0644 in a 0755 directory), whatever the umask."""
    vol = tmp_path / "vol"
    vol.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        store = Store(str(vol / "msm.db"))
        store.add_mvpn({"name": "A", "realm": "10.0.0.0/24", "sg_public": "203.0.113.1"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(vol.stat().st_mode) == 0o700
    for name in ("msm.db", "msm.db-wal", "msm.db-shm"):
        assert stat.S_IMODE((vol / name).stat().st_mode) == 0o600, name
