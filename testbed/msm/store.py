"""SQLite store of M-VPNs, users, workgroups and members, with a change version.

Why SQLite on a volume: the portal's data must survive an MSM restart, and one file
is enough for a testbed. Why a single global version: SGs and MNs only need to know
*that* something changed to re-fetch their (small) view; one counter that every
mutation raises, persisted with the data, gives long-poll clients a cheap "since V"
test that stays monotonic across restarts.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from . import validate as v
from .errors import ApiError, bad, conflict, not_found, refused

log = logging.getLogger("msm.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mvpns (
    name TEXT PRIMARY KEY,
    realm TEXT NOT NULL,
    sg_public TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS users (
    fqdn TEXT PRIMARY KEY,
    mvpn TEXT NOT NULL REFERENCES mvpns(name),
    private_address TEXT NOT NULL,
    UNIQUE (mvpn, private_address)
);
CREATE TABLE IF NOT EXISTS workgroups (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS members (
    workgroup TEXT NOT NULL REFERENCES workgroups(name) ON DELETE CASCADE,
    fqdn TEXT NOT NULL REFERENCES users(fqdn) ON DELETE CASCADE,
    PRIMARY KEY (workgroup, fqdn)
);
CREATE TABLE IF NOT EXISTS signons (
    fqdn TEXT NOT NULL,
    workgroup TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (fqdn, workgroup)
);
CREATE TABLE IF NOT EXISTS node_certs (fqdn TEXT PRIMARY KEY, pem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certs (
    serial TEXT PRIMARY KEY,
    cn TEXT NOT NULL,
    kind TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    san TEXT NOT NULL,
    identity TEXT,
    revoked_at REAL,
    test INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    used_at REAL,
    cert_serial TEXT
);
"""

#: columns added by issue 9 to a certs table made by an older MSM
_CERT_COLUMNS = {"identity": "TEXT", "revoked_at": "REAL", "test": "INTEGER NOT NULL DEFAULT 0"}


def _addr_key(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


class Store:
    """All portal state. Thread-safe: one connection guarded by one lock.

    Every mutation runs in one transaction that also raises the version, then wakes
    the long-poll waiters (`wait_for_change`).
    """

    def __init__(self, path: str) -> None:
        # The db holds token secrets: the directory 0700, the db 0600 before sqlite opens it
        # (sqlite makes its -wal/-shm with the db's mode; existing ones are fixed here too).
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
        try:
            os.chmod(parent, 0o700)
        except PermissionError:  # a directory of another owner (a shared volume): keep its mode
            pass
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for name in (path, path + "-wal", path + "-shm"):
            if os.path.exists(name):
                os.chmod(name, 0o600)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        # Issue 9: an acknowledged change must survive SIGKILL (and power loss): write-ahead
        # log, fsync of the log at every COMMIT before the portal answers.
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        self._db.execute("PRAGMA synchronous = FULL")
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"{path}: cannot switch to WAL journal (got {mode})")
        self._db.executescript(SCHEMA)
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(certs)")}
        for col, decl in _CERT_COLUMNS.items():
            if col not in have:
                self._db.execute(f"ALTER TABLE certs ADD COLUMN {col} {decl}")
        self._db.execute("CREATE INDEX IF NOT EXISTS certs_identity ON certs(identity, kind)")
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tx_depth = 0
        row = self._db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta(key, value) VALUES ('version', '0')")
            self._version = 0
        else:
            self._version = int(row["value"])
        log.info("store %s opened at version %d", path, self._version)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ version
    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group mutations into ONE durable transaction (all or nothing, even under SIGKILL).

        Re-entrant; waiters are woken once, at the outermost COMMIT. Used for the seed and for
        an enrolment (token consumed + certificate recorded together).
        """
        with self._lock:
            if self._tx_depth:
                self._tx_depth += 1
                try:
                    yield
                finally:
                    self._tx_depth -= 1
                return
            before = self._version
            self._db.execute("BEGIN IMMEDIATE")
            self._tx_depth = 1
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._version = before
                raise
            finally:
                self._tx_depth = 0
            if self._version != before:
                self._changed.notify_all()

    def _mutate(self, statements: Iterable[tuple[str, tuple]], bump: bool = True) -> int:
        """Run statements (and the version bump) in one committed transaction; wake waiters."""
        with self.transaction():
            for sql, args in statements:
                self._db.execute(sql, args)
            if bump:
                self._version += 1
                self._db.execute("UPDATE meta SET value=? WHERE key='version'", (str(self._version),))
            return self._version

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until version > since or timeout; return the current version."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while self._version <= since:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._version

    # -------------------------------------------------------------------- reads
    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def mvpns(self) -> list[dict]:
        return [dict(r) for r in self._all("SELECT name, realm, sg_public FROM mvpns ORDER BY name")]

    def mvpn(self, name: str) -> dict:
        row = self._one("SELECT name, realm, sg_public FROM mvpns WHERE name=?", (name,))
        if row is None:
            raise not_found("mvpn", f"unknown M-VPN {name!r}")
        return dict(row)

    def users(self) -> list[dict]:
        rows = self._all(
            "SELECT u.fqdn, u.mvpn, u.private_address, m.sg_public FROM users u "
            "JOIN mvpns m ON m.name = u.mvpn ORDER BY u.fqdn"
        )
        return [dict(r) for r in rows]

    def user(self, fqdn: str) -> dict:
        row = self._one(
            "SELECT u.fqdn, u.mvpn, u.private_address, m.sg_public FROM users u "
            "JOIN mvpns m ON m.name = u.mvpn WHERE u.fqdn=?",
            (fqdn,),
        )
        if row is None:
            raise not_found("fqdn", f"unknown user {fqdn!r}")
        return dict(row)

    def find_user(self, fqdn: str) -> dict | None:
        try:
            return self.user(fqdn)
        except ApiError:
            return None

    def workgroup_names(self) -> list[str]:
        return [r["name"] for r in self._all("SELECT name FROM workgroups ORDER BY name")]

    def members(self, workgroup: str) -> list[dict]:
        """Members of `workgroup` with what a peer needs: FQDN, private address, SG public."""
        with self._lock:
            if self._one("SELECT 1 FROM workgroups WHERE name=?", (workgroup,)) is None:
                raise not_found("workgroup", f"unknown workgroup {workgroup!r}")
            rows = self._all(
                "SELECT u.fqdn, u.mvpn, u.private_address, m.sg_public FROM members w "
                "JOIN users u ON u.fqdn = w.fqdn JOIN mvpns m ON m.name = u.mvpn "
                "WHERE w.workgroup=? ORDER BY u.fqdn",
                (workgroup,),
            )
        return [dict(r) for r in rows]

    def workgroup(self, name: str) -> dict:
        with self._lock:
            return {"name": name, "version": self._version, "members": self.members(name)}

    def workgroups(self) -> list[dict]:
        with self._lock:
            return [self.workgroup(n) for n in self.workgroup_names()]

    def counts(self) -> dict:
        with self._lock:
            return {
                t: self._one(f"SELECT COUNT(*) AS n FROM {t}")["n"]
                for t in ("mvpns", "users", "workgroups", "members", "certs", "tokens")
            }

    # ------------------------------------------------------------------ writes
    def add_mvpn(self, body: dict) -> dict:
        name = v.name(v.require(body, "name"), "name")
        net = v.realm(v.require(body, "realm"), "realm")
        sg = v.ipv4(v.require(body, "sg_public"), "sg_public")
        with self._lock:
            if self._one("SELECT 1 FROM mvpns WHERE name=?", (name,)):
                raise conflict("name", f"M-VPN {name!r} already exists")
            other = self._one("SELECT name FROM mvpns WHERE sg_public=?", (str(sg),))
            if other:
                raise conflict("sg_public", f"{sg} is already the SG address of M-VPN {other['name']!r}")
            self._mutate([("INSERT INTO mvpns(name, realm, sg_public) VALUES (?,?,?)", (name, str(net), str(sg)))])
        log.info("M-VPN %s realm %s SG %s added", name, net, sg)
        return {"name": name, "realm": str(net), "sg_public": str(sg)}

    def add_user(self, body: dict) -> dict:
        fqdn = v.fqdn(v.require(body, "fqdn"))
        mvpn_name = v.name(v.require(body, "mvpn"), "mvpn")
        addr = v.ipv4(v.require(body, "private_address"), "private_address")
        with self._lock:
            mv = self.mvpn(mvpn_name)
            v.host_in_realm(addr, ipaddress.IPv4Network(mv["realm"]), "private_address", mvpn_name)
            if self._one("SELECT 1 FROM users WHERE fqdn=?", (fqdn,)):
                raise conflict("fqdn", f"user {fqdn!r} already exists")
            other = self._one("SELECT fqdn FROM users WHERE mvpn=? AND private_address=?", (mvpn_name, str(addr)))
            if other:
                raise conflict("private_address", f"{addr} is already used by {other['fqdn']!r} in M-VPN {mvpn_name}")
            self._mutate([("INSERT INTO users(fqdn, mvpn, private_address) VALUES (?,?,?)", (fqdn, mvpn_name, str(addr)))])
        log.info("user %s (%s in M-VPN %s) added", fqdn, addr, mvpn_name)
        return self.user(fqdn)

    def delete_user(self, fqdn: str) -> int:
        fqdn = v.fqdn(fqdn)
        with self._lock:
            self.user(fqdn)
            # Issue 9: a deleted user's certificates are revoked in the same transaction (the
            # CRL and the portal refuse them from this version on).
            version = self._mutate([
                ("DELETE FROM members WHERE fqdn=?", (fqdn,)),
                ("DELETE FROM signons WHERE fqdn=?", (fqdn,)),
                ("DELETE FROM users WHERE fqdn=?", (fqdn,)),
                ("DELETE FROM node_certs WHERE fqdn=?", (fqdn,)),
                ("UPDATE certs SET revoked_at=? WHERE identity=? AND kind='mn' AND revoked_at IS NULL", (time.time(), fqdn)),
                ("DELETE FROM tokens WHERE identity=? AND kind='mn' AND used_at IS NULL", (fqdn,)),
            ])
        log.info("user %s deleted; its certificates revoked", fqdn)
        return version

    def delete_mvpn(self, name: str) -> int:
        with self._lock:
            self.mvpn(name)
            n = self._one("SELECT COUNT(*) AS n FROM users WHERE mvpn=?", (name,))["n"]
            if n:
                raise conflict("mvpn", f"M-VPN {name!r} still has {n} user(s)")
            version = self._mutate([
                ("DELETE FROM mvpns WHERE name=?", (name,)),
                ("UPDATE certs SET revoked_at=? WHERE identity=? AND kind='sg' AND revoked_at IS NULL",
                 (time.time(), name)),
                ("DELETE FROM tokens WHERE identity=? AND kind='sg' AND used_at IS NULL", (name,)),
            ])
        log.info("M-VPN %s deleted; its SG certificates revoked", name)
        return version

    def add_workgroup(self, body: dict) -> dict:
        name = v.name(v.require(body, "name"), "name")
        with self._lock:
            if self._one("SELECT 1 FROM workgroups WHERE name=?", (name,)):
                raise conflict("name", f"workgroup {name!r} already exists")
            self._mutate([("INSERT INTO workgroups(name) VALUES (?)", (name,))])
        log.info("workgroup %s added", name)
        return self.workgroup(name)

    def delete_workgroup(self, name: str) -> int:
        with self._lock:
            self.members(name)
            return self._mutate([
                ("DELETE FROM members WHERE workgroup=?", (name,)),
                ("DELETE FROM signons WHERE workgroup=?", (name,)),
                ("DELETE FROM workgroups WHERE name=?", (name,)),
            ])

    def add_member(self, workgroup: str, body: dict) -> dict:
        fqdn = v.fqdn(v.require(body, "fqdn"))
        with self._lock:
            self.members(workgroup)
            self.user(fqdn)
            if self._one("SELECT 1 FROM members WHERE workgroup=? AND fqdn=?", (workgroup, fqdn)):
                raise conflict("fqdn", f"{fqdn!r} is already a member of workgroup {workgroup!r}")
            self._mutate([("INSERT INTO members(workgroup, fqdn) VALUES (?,?)", (workgroup, fqdn))])
        log.info("member %s added to workgroup %s", fqdn, workgroup)
        return self.workgroup(workgroup)

    def remove_member(self, workgroup: str, fqdn: str) -> dict:
        fqdn = v.fqdn(fqdn)
        with self._lock:
            self.members(workgroup)
            if not self._one("SELECT 1 FROM members WHERE workgroup=? AND fqdn=?", (workgroup, fqdn)):
                raise not_found("fqdn", f"{fqdn!r} is not a member of workgroup {workgroup!r}")
            self._mutate([
                ("DELETE FROM members WHERE workgroup=? AND fqdn=?", (workgroup, fqdn)),
                ("DELETE FROM signons WHERE workgroup=? AND fqdn=?", (workgroup, fqdn)),
            ])
        log.info("member %s removed from workgroup %s", fqdn, workgroup)
        return self.workgroup(workgroup)

    # ------------------------------------------------------------- derived views
    def signon(self, body: dict) -> dict:
        """Claims 5 and 13: a member signing on gets every other member and its SG."""
        fqdn = v.fqdn(v.require(body, "fqdn"))
        wg = v.name(v.require(body, "workgroup"), "workgroup")
        with self._lock:
            me = self.user(fqdn)
            members = self.members(wg)
            if not any(m["fqdn"] == fqdn for m in members):
                raise refused(403, "not_member", f"{fqdn!r} is not a member of workgroup {wg!r}", "fqdn")
            # A sign-on is recorded for the page, but it changes nobody's view: no version bump.
            self._db.execute(
                "INSERT OR REPLACE INTO signons(fqdn, workgroup, at) VALUES (?,?,?)", (fqdn, wg, time.time())
            )
            others = [m for m in members if m["fqdn"] != fqdn]
            return {"version": self._version, "workgroup": wg, "self": me, "members": others}

    def signons(self) -> list[dict]:
        return [dict(r) for r in self._all("SELECT fqdn, workgroup, at FROM signons ORDER BY fqdn, workgroup")]

    def filter_rows(self, mvpn: str) -> dict:
        """Realm-indexed workgroup filter rows for the ingress SG of `mvpn` (claims 2, 6).

        A row is keyed by (initiator's SG public address, initiator's private address):
        the SG public address is the outer source of the IP-IP tunnel and tells realms
        apart where private addresses collide. Its targets are the private addresses in
        `mvpn` that share at least one workgroup with the initiator. Members of `mvpn`
        itself are not initiators here: their traffic never crosses the IP-IP tunnel.
        """
        with self._lock:
            self.mvpn(mvpn)
            rows = self._all(
                "SELECT ui.fqdn AS i_fqdn, ui.private_address AS i_addr, ui.mvpn AS i_mvpn, "
                "mi.sg_public AS i_sg, ut.private_address AS t_addr, wi.workgroup AS wg "
                "FROM members wt JOIN users ut ON ut.fqdn = wt.fqdn "
                "JOIN members wi ON wi.workgroup = wt.workgroup "
                "JOIN users ui ON ui.fqdn = wi.fqdn JOIN mvpns mi ON mi.name = ui.mvpn "
                "WHERE ut.mvpn = ? AND ui.mvpn != ?",
                (mvpn, mvpn),
            )
            version = self._version
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            key = (r["i_sg"], r["i_addr"])
            row = merged.setdefault(key, {
                "peer_sg_public": r["i_sg"],
                "initiator_private": r["i_addr"],
                "initiator_fqdn": r["i_fqdn"],
                "initiator_mvpn": r["i_mvpn"],
                "targets": set(),
                "workgroups": set(),
            })
            row["targets"].add(r["t_addr"])
            row["workgroups"].add(r["wg"])
        out = []
        for key in sorted(merged, key=lambda k: (_addr_key(k[0]), _addr_key(k[1]))):
            row = merged[key]
            row["targets"] = sorted(row["targets"], key=_addr_key)
            row["workgroups"] = sorted(row["workgroups"])
            out.append(row)
        return {"mvpn": mvpn, "version": version, "rows": out}

    # -------------------------------------------------------------------- certs
    def record_cert(self, serial: int, cn: str, kind: str, not_before: str, not_after: str, san: list[str],
                    identity: str | None = None, test: bool = False) -> None:
        """Remember an issued certificate; its serial is the portal identity (`identity`, default
        `cn`; an SG's is its M-VPN name) of its holder, unless `test`: test-only certificates
        never log in."""
        self._mutate([(
            "INSERT OR REPLACE INTO certs(serial, cn, kind, not_before, not_after, san, identity, revoked_at, test) "
            "VALUES (?,?,?,?,?,?,?,NULL,?)",
            (format(serial, "x"), cn, kind, not_before, not_after, ",".join(san), identity or cn, int(test)),
        )], bump=False)

    def cert(self, serial: int) -> dict | None:
        """The record of certificate `serial`: {serial, cn, kind, revoked_at, test, ...} or None."""
        row = self._one("SELECT * FROM certs WHERE serial=?", (format(serial, "x"),))
        return dict(row) if row else None

    def revoke_cert(self, serial_hex: str) -> int:
        """Revoke one certificate (operator); bumps the version so SGs re-fetch the CRL."""
        with self._lock:
            row = self._one("SELECT cn, identity, kind, revoked_at FROM certs WHERE serial=?", (serial_hex,))
            if row is None:
                raise not_found("serial", f"no certificate with serial {serial_hex}")
            if row["revoked_at"] is not None:
                raise conflict("serial", f"certificate {serial_hex} is already revoked")
            version = self._mutate([
                ("UPDATE certs SET revoked_at=? WHERE serial=?", (time.time(), serial_hex)),
                ("DELETE FROM node_certs WHERE fqdn=? AND ? IN ('mn', 'msr')", (row["identity"], row["kind"])),
            ])
        log.info("certificate %s (%s %s) revoked", serial_hex, row["kind"], row["cn"])
        return version

    def revoked(self) -> list[tuple[int, float]]:
        """(serial, revoked_at unix s) of every revoked certificate, for the CRL."""
        return [(int(r["serial"], 16), r["revoked_at"])
                for r in self._all("SELECT serial, revoked_at FROM certs WHERE revoked_at IS NOT NULL ORDER BY serial")]

    def set_node_cert(self, fqdn: str, pem: str) -> None:
        """The certificate a sink fetches for `fqdn` by DIAMETER, DNS or the portal (claims 55-56)."""
        self._mutate([("INSERT OR REPLACE INTO node_certs(fqdn, pem) VALUES (?,?)", (fqdn, pem))], bump=False)

    def node_cert(self, fqdn: str) -> str | None:
        row = self._one("SELECT pem FROM node_certs WHERE fqdn=?", (fqdn,))
        return row["pem"] if row else None

    def certs(self) -> list[dict]:
        return [dict(r) for r in self._all("SELECT * FROM certs ORDER BY cn, serial")]

    # ------------------------------------------------------------------- tokens
    def add_token(self, token_id: str, secret: str, identity: str, kind: str, ttl_s: float) -> dict:
        """Store a one-time enrolment token bound to (identity, kind), valid `ttl_s` seconds."""
        now = time.time()
        with self._lock:
            if self._one("SELECT 1 FROM tokens WHERE id=?", (token_id,)):
                raise conflict("token", f"token id {token_id!r} already exists")
            self._mutate([("INSERT INTO tokens(id, secret, identity, kind, created, expires) VALUES (?,?,?,?,?,?)",
                           (token_id, secret, identity, kind, now, now + ttl_s))], bump=False)
        return {"id": token_id, "identity": identity, "kind": kind, "expires": now + ttl_s}

    def token(self, token_id: str) -> dict | None:
        row = self._one("SELECT * FROM tokens WHERE id=?", (token_id,))
        return dict(row) if row else None

    def tokens(self) -> list[dict]:
        """Every token without its secret (operator listing)."""
        return [dict(r) for r in self._all(
            "SELECT id, identity, kind, created, expires, used_at, cert_serial FROM tokens ORDER BY created")]

    def use_token(self, token_id: str, serial_hex: str) -> None:
        """Mark a token used by certificate `serial_hex`; raises 403 token_used if it already was
        (checked and set under the store lock, so two concurrent enrolments cannot both win)."""
        with self._lock:
            row = self._one("SELECT used_at FROM tokens WHERE id=?", (token_id,))
            if row is None or row["used_at"] is not None:
                raise refused(403, "token_used", f"token {token_id} was already used", "token")
            self._mutate([("UPDATE tokens SET used_at=?, cert_serial=? WHERE id=?",
                           (time.time(), serial_hex, token_id))], bump=False)

    # --------------------------------------------------------------------- seed
    def is_seeded(self) -> bool:
        return self._one("SELECT 1 FROM meta WHERE key='seeded'") is not None

    def apply_seed(self, seed: dict, add_token=None) -> bool:
        """Load M-VPNs, users, workgroups (and tokens, through `add_token(entry)`) from config,
        ONCE, into an empty store, in one transaction; returns whether it was applied.

        Issue 9: a restart must never undo a change made at the portal, so the seed is applied
        only while the meta key `seeded` is absent and the store holds no objects; afterwards
        the portal's state is the truth. Raises ApiError 400 field "seed" for a bad entry.
        """
        with self._lock:
            if self.is_seeded():
                log.info("seed already applied once; the store's state is kept")
                return False
            empty = not any(self._one(f"SELECT 1 FROM {t} LIMIT 1") for t in ("mvpns", "users", "workgroups"))
            with self.transaction():
                if empty:
                    self._apply_seed_entries(seed, add_token)
                self._db.execute("INSERT INTO meta(key, value) VALUES ('seeded', ?)", (str(time.time()),))
        log.info("seed %s at version %d", "applied" if empty else "skipped (store not empty)", self._version)
        return empty

    def _apply_seed_entries(self, seed: dict, add_token) -> None:
        def _checked(fn, *args):
            try:
                fn(*args)
            except ApiError as exc:
                raise bad("seed", exc.to_json()["error"]) from None

        for m in seed.get("mvpns", []):
            _checked(self.add_mvpn, m)
        for u in seed.get("users", []):
            _checked(self.add_user, u)
        for w in seed.get("workgroups", []):
            _checked(self.add_workgroup, {"name": w.get("name")})
            for f in w.get("members", []):
                _checked(self.add_member, w.get("name"), {"fqdn": f})
        for t in seed.get("tokens", []):
            if add_token is not None:
                _checked(add_token, t)

