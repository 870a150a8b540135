"""Store: persistence, version, validation and the realm-indexed filter rows (in-process)."""
from __future__ import annotations

import threading
import time

import pytest

from testbed.msm.errors import ApiError
from testbed.msm.store import Store


def example(store: Store) -> None:
    for name, sg in [("A", "203.0.113.1"), ("B", "203.0.113.2"), ("C", "203.0.113.3"), ("D", "203.0.113.4")]:
        store.add_mvpn({"name": name, "realm": "10.0.0.0/24", "sg_public": sg})
    for fqdn, mvpn, addr in [("a.mwg.test", "A", "10.0.0.5"), ("b.mwg.test", "B", "10.0.0.7"),
                             ("c.mwg.test", "C", "10.0.0.5"), ("d.mwg.test", "D", "10.0.0.9")]:
        store.add_user({"fqdn": fqdn, "mvpn": mvpn, "private_address": addr})
    store.add_workgroup({"name": "W"})
    for fqdn in ("a.mwg.test", "b.mwg.test", "c.mwg.test"):
        store.add_member("W", {"fqdn": fqdn})


def test_filter_rows_of_the_issue_example(tmp_path):
    store = Store(str(tmp_path / "db"))
    example(store)
    rows = store.filter_rows("B")["rows"]
    keys = {(r["peer_sg_public"], r["initiator_private"]): r for r in rows}
    # a and c collide on 10.0.0.5; the SG public address (realm index) keeps them apart.
    assert set(keys) == {("203.0.113.1", "10.0.0.5"), ("203.0.113.3", "10.0.0.5")}
    assert keys[("203.0.113.1", "10.0.0.5")]["initiator_fqdn"] == "a.mwg.test"
    assert keys[("203.0.113.3", "10.0.0.5")]["initiator_fqdn"] == "c.mwg.test"
    assert all(r["targets"] == ["10.0.0.7"] for r in rows)
    assert not any(r["peer_sg_public"] == "203.0.113.4" for r in rows), "d is not in W"
    # SG-A (reverse path, claim 12): b and c may each reach a; c has the same address as a.
    rows_a = store.filter_rows("A")["rows"]
    assert {(r["peer_sg_public"], r["initiator_private"], tuple(r["targets"])) for r in rows_a} == {
        ("203.0.113.2", "10.0.0.7", ("10.0.0.5",)),
        ("203.0.113.3", "10.0.0.5", ("10.0.0.5",)),
    }
    assert store.filter_rows("D")["rows"] == []


def test_filter_rows_merge_workgroups_and_follow_removal(tmp_path):
    store = Store(str(tmp_path / "db"))
    example(store)
    store.add_user({"fqdn": "b2.mwg.test", "mvpn": "B", "private_address": "10.0.0.8"})
    store.add_workgroup({"name": "X"})
    store.add_member("X", {"fqdn": "a.mwg.test"})
    store.add_member("X", {"fqdn": "b2.mwg.test"})
    row_a = [r for r in store.filter_rows("B")["rows"] if r["peer_sg_public"] == "203.0.113.1"]
    assert len(row_a) == 1 and row_a[0]["targets"] == ["10.0.0.7", "10.0.0.8"]
    assert row_a[0]["workgroups"] == ["W", "X"]
    store.remove_member("W", "a.mwg.test")
    row_a = [r for r in store.filter_rows("B")["rows"] if r["peer_sg_public"] == "203.0.113.1"]
    assert row_a[0]["targets"] == ["10.0.0.8"]
    store.remove_member("X", "a.mwg.test")
    assert [r["initiator_fqdn"] for r in store.filter_rows("B")["rows"]] == ["c.mwg.test"]


def test_version_rises_with_every_change_and_survives_reopen(tmp_path):
    path = str(tmp_path / "vol" / "msm.db")
    store = Store(path)
    assert store.version == 0
    example(store)
    v = store.version
    assert v == 4 + 4 + 1 + 3
    with pytest.raises(ApiError):
        store.add_member("W", {"fqdn": "a.mwg.test"})  # refused: no version bump
    assert store.version == v
    store.signon({"fqdn": "a.mwg.test", "workgroup": "W"})  # a read: no bump
    assert store.version == v
    store.close()
    again = Store(path)
    assert again.version == v
    assert [m["fqdn"] for m in again.members("W")] == ["a.mwg.test", "b.mwg.test", "c.mwg.test"]
    again.remove_member("W", "c.mwg.test")
    assert again.version == v + 1


def test_signon_lists_every_other_member_with_its_sg(tmp_path):
    store = Store(str(tmp_path / "db"))
    example(store)
    view = store.signon({"fqdn": "A.MWG.test.", "workgroup": "W"})  # normalised
    assert view["self"] == {"fqdn": "a.mwg.test", "mvpn": "A", "private_address": "10.0.0.5",
                            "sg_public": "203.0.113.1"}
    assert view["members"] == [
        {"fqdn": "b.mwg.test", "mvpn": "B", "private_address": "10.0.0.7", "sg_public": "203.0.113.2"},
        {"fqdn": "c.mwg.test", "mvpn": "C", "private_address": "10.0.0.5", "sg_public": "203.0.113.3"},
    ]
    with pytest.raises(ApiError) as exc:
        store.signon({"fqdn": "d.mwg.test", "workgroup": "W"})
    assert exc.value.status == 403


@pytest.mark.parametrize("body,field,status", [
    ({"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "10.0.1.5"}, "private_address", 400),
    ({"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "10.0.0.0"}, "private_address", 400),
    ({"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "10.0.0.255"}, "private_address", 400),
    ({"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "10.0.0.300"}, "private_address", 400),
    ({"fqdn": "x.mwg.test", "mvpn": "A", "private_address": 5}, "private_address", 400),
    ({"fqdn": "x.mwg.test", "mvpn": "A", "private_address": "10.0.0.5"}, "private_address", 409),
    ({"fqdn": "a.mwg.test", "mvpn": "A", "private_address": "10.0.0.6"}, "fqdn", 409),
    ({"fqdn": "x.mwg.test", "mvpn": "Z", "private_address": "10.0.0.6"}, "mvpn", 404),
    ({"fqdn": "no_dots", "mvpn": "A", "private_address": "10.0.0.6"}, "fqdn", 400),
    ({"mvpn": "A", "private_address": "10.0.0.6"}, "fqdn", 400),
])
def test_user_validation_names_the_field(tmp_path, body, field, status):
    store = Store(str(tmp_path / "db"))
    example(store)
    v = store.version
    with pytest.raises(ApiError) as exc:
        store.add_user(body)
    assert (exc.value.field, exc.value.status) == (field, status)
    assert store.version == v


def test_wait_for_change_wakes_on_mutation(tmp_path):
    store = Store(str(tmp_path / "db"))
    example(store)
    v = store.version
    t0 = time.monotonic()
    assert store.wait_for_change(v, 0.2) == v
    assert 0.15 < time.monotonic() - t0 < 1.0
    got = {}

    def waiter():
        got["v"] = store.wait_for_change(v, 10)
        got["t"] = time.monotonic()

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.2)
    changed_at = time.monotonic()
    store.remove_member("W", "a.mwg.test")
    th.join(5)
    assert got["v"] == v + 1
    assert got["t"] - changed_at < 0.5


def test_concurrent_writers_get_distinct_versions(tmp_path):
    store = Store(str(tmp_path / "db"))
    store.add_mvpn({"name": "A", "realm": "10.0.0.0/24", "sg_public": "203.0.113.1"})
    errors: list[Exception] = []

    def add(i: int) -> None:
        try:
            store.add_user({"fqdn": f"u{i}.mwg.test", "mvpn": "A", "private_address": f"10.0.0.{10 + i}"})
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.version == 31 and len(store.users()) == 30
