"""The embedded store: ``store.base.Store`` on one SQLite file (no other service needed to start a node).

One connection serves every thread, the event loop's and the executors', and a
re-entrant lock serialises its use: sqlite3 lets a connection be shared, but
not a transaction, and read-modify-write sequences (an enrolment update, a
transcript's next sequence number) must not interleave. Each method is one
statement under the lock, or one ``BEGIN IMMEDIATE`` transaction holding it.
Queries are small and local (well under a millisecond with WAL), so holding
the lock for them is cheap.

The schema is the one ``signaling.store`` created: existing databases open
unchanged, and new tables are only ever added.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from store.base import (
    FINAL_STATES,
    Agent,
    Consent,
    Customer,
    EnrolmentChange,
    EnrolmentRecord,
    Link,
    Snapshot,
    VoicePrintRecord,
    new_call_id,
    phone_key,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL,
    api_token_hash TEXT UNIQUE NOT NULL, language TEXT NOT NULL DEFAULT 'en', created REAL NOT NULL,
    role TEXT NOT NULL DEFAULT 'agent', state TEXT NOT NULL DEFAULT 'active', display_name TEXT);
CREATE TABLE IF NOT EXISTS web_sessions (
    token_hash TEXT PRIMARY KEY, agent_id INTEGER NOT NULL REFERENCES agents(id), csrf TEXT NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS links (
    id TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, agent_id INTEGER NOT NULL REFERENCES agents(id),
    customer_ref TEXT, phone TEXT, language TEXT NOT NULL, reason TEXT NOT NULL, phrase TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, state TEXT NOT NULL,
    opened REAL, connected REAL, ended REAL, end_reason TEXT,
    channel TEXT NOT NULL DEFAULT 'link', external_id TEXT);
CREATE INDEX IF NOT EXISTS links_agent ON links(agent_id, created);
CREATE INDEX IF NOT EXISTS links_state ON links(state);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, link_id TEXT NOT NULL REFERENCES links(id), agent_id INTEGER NOT NULL,
    taken REAL NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS voiceprints (
    customer_id TEXT PRIMARY KEY, sealed BLOB, speech_seconds REAL NOT NULL DEFAULT 0,
    consent_by TEXT, consent_at REAL, consent_wording TEXT, opted_out INTEGER NOT NULL DEFAULT 0,
    watchlist INTEGER NOT NULL DEFAULT 0, watch_reason TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS enrolments (
    customer_id TEXT PRIMARY KEY, sealed BLOB, speech_seconds REAL NOT NULL DEFAULT 0,
    consent_by TEXT NOT NULL, consent_at REAL NOT NULL, consent_wording TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT, pin_hash TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS customer_phones (
    phone TEXT NOT NULL, customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    PRIMARY KEY (phone, customer_id));
CREATE TABLE IF NOT EXISTS idv (
    link_id TEXT PRIMARY KEY REFERENCES links(id), customer_id TEXT, record TEXT NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idv_customer ON idv(customer_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS audit_target ON audit(target);
CREATE TABLE IF NOT EXISTS transcript_records (
    link_id TEXT NOT NULL, seq INTEGER NOT NULL, sealed BLOB NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (link_id, seq));
"""


class _Db:
    """The one connection, the lock that serialises it, and the store's clock."""

    def __init__(self, path: Path | str, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        # Autocommit (isolation_level=None): transactions are explicit, in ``transaction``.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        with self.lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring a database made by an earlier VoxGate up to ``SCHEMA`` (columns added since)."""
        added = {
            "links": (("channel", "TEXT NOT NULL DEFAULT 'link'"), ("external_id", "TEXT")),
            # Agents made before roles keep what they could do: the first-run admin stays the admin.
            "agents": (
                ("role", "TEXT NOT NULL DEFAULT 'agent'"),
                ("state", "TEXT NOT NULL DEFAULT 'active'"),
                ("display_name", "TEXT"),
            ),
        }
        for table, new in added.items():
            columns = {r["name"] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            for column, decl in new:
                if column not in columns:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                    if (table, column) == ("agents", "role"):
                        self._conn.execute("UPDATE agents SET role = 'admin' WHERE name = 'admin'")

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """One data-changing statement; read ``rowcount``/``lastrowid`` from the result (no rows to fetch)."""
        with self.lock:
            return self._conn.execute(sql, args)

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        # Fetched under the lock: stepping a cursor is using the connection.
        with self.lock:
            return self._conn.execute(sql, args).fetchone()

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._conn.execute(sql, args).fetchall()

    def value(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.one(sql, args)
        return row[0] if row else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock through ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error).

        Nested use joins the outer transaction: while this thread holds the lock, an open transaction is its own.
        """
        with self.lock:
            if self._conn.in_transaction:
                yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # a failed COMMIT too: never leave one open for the next caller
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            self._conn.close()


class _Agents:
    def __init__(self, db: _Db) -> None:
        self._db = db

    def add(
        self,
        name: str,
        password_hash: str,
        api_token_hash: str,
        language: str = "en",
        role: str = "agent",
        display_name: str | None = None,
    ) -> Agent:
        try:
            cur = self._db.run(
                "INSERT INTO agents (name, password_hash, api_token_hash, language, created, role, display_name)"
                " VALUES (?,?,?,?,?,?,?)",
                (name, password_hash, api_token_hash, language, self._db.clock(), role, display_name),
            )
        except sqlite3.IntegrityError:
            raise ValueError(f"an agent named {name!r} exists already") from None
        return Agent(cur.lastrowid, name, language, role, display_name)  # type: ignore[arg-type]

    def count(self) -> int:
        return self._db.value("SELECT COUNT(*) FROM agents")

    def get(self, agent_id: int) -> Agent | None:
        row = self._db.one("SELECT * FROM agents WHERE id = ?", (agent_id,))
        return _agent(row) if row else None

    def login(self, name: str) -> tuple[Agent, str] | None:
        row = self._db.one("SELECT * FROM agents WHERE name = ? AND state = 'active'", (name,))
        return (_agent(row), row["password_hash"]) if row else None

    def by_name(self, name: str) -> Agent | None:
        row = self._db.one("SELECT * FROM agents WHERE name = ? AND state = 'active'", (name,))
        return _agent(row) if row else None

    def by_api_token(self, token_hash: str) -> Agent | None:
        row = self._db.one("SELECT * FROM agents WHERE api_token_hash = ? AND state = 'active'", (token_hash,))
        return _agent(row) if row else None

    def set_secrets(self, name: str, password_hash: str, api_token_hash: str) -> bool:
        with self._db.transaction():
            cur = self._db.run(
                "UPDATE agents SET password_hash = ?, api_token_hash = ? WHERE name = ? AND state != 'removed'",
                (password_hash, api_token_hash, name),
            )
            self._drop_sessions(name)
        return cur.rowcount == 1

    def set_state(self, name: str, state: str) -> bool:
        if state not in ("active", "disabled", "removed"):
            raise ValueError(f"no agent state {state!r}")
        with self._db.transaction():
            cur = self._db.run("UPDATE agents SET state = ? WHERE name = ? AND state != 'removed'", (state, name))
            if state == "removed":  # nothing left to sign in with: the hashes match no password or token
                self._db.run(
                    "UPDATE agents SET password_hash = '!', api_token_hash = 'removed:' || id WHERE name = ?", (name,)
                )
            if state != "active":
                self._drop_sessions(name)
        return cur.rowcount == 1

    def set_display_name(self, name: str, display_name: str | None) -> bool:
        cur = self._db.run(
            "UPDATE agents SET display_name = ? WHERE name = ? AND state != 'removed'", (display_name, name)
        )
        return cur.rowcount == 1

    def set_role(self, name: str, role: str) -> bool:
        cur = self._db.run("UPDATE agents SET role = ? WHERE name = ? AND state != 'removed'", (role, name))
        return cur.rowcount == 1

    def state(self, name: str) -> str | None:
        return self._db.value("SELECT state FROM agents WHERE name = ?", (name,))

    def set_language(self, agent_id: int, language: str) -> None:
        self._db.run("UPDATE agents SET language = ? WHERE id = ?", (language, agent_id))

    def add_web_session(self, token_hash: str, agent_id: int, csrf: str, ttl: float) -> None:
        """Each sign-in prunes the expired sessions, so the table does not grow with every browser ever seen."""
        now = self._db.clock()
        with self._db.transaction():
            self._db.run("DELETE FROM web_sessions WHERE expires < ?", (now,))
            self._db.run("INSERT INTO web_sessions VALUES (?,?,?,?)", (token_hash, agent_id, csrf, now + ttl))

    def web_session(self, token_hash: str) -> tuple[Agent, str] | None:
        row = self._db.one(
            "SELECT a.*, s.csrf FROM web_sessions s JOIN agents a ON a.id = s.agent_id "
            "WHERE s.token_hash = ? AND s.expires > ? AND a.state = 'active'",
            (token_hash, self._db.clock()),
        )
        return (_agent(row), row["csrf"]) if row else None

    def drop_web_session(self, token_hash: str) -> None:
        self._db.run("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))

    def _drop_sessions(self, name: str) -> None:
        self._db.run("DELETE FROM web_sessions WHERE agent_id IN (SELECT id FROM agents WHERE name = ?)", (name,))


class _Links:
    def __init__(self, db: _Db) -> None:
        self._db = db

    def add(
        self,
        token_hash: str,
        agent_id: int,
        *,
        customer_ref: str | None,
        phone: str | None,
        language: str,
        reason: str,
        phrase: str,
        ttl: float,
    ) -> Link:
        link_id = new_call_id()
        now = self._db.clock()
        self._db.run(
            "INSERT INTO links (id, token_hash, agent_id, customer_ref, phone, language, reason, phrase, created,"
            " expires, state) VALUES (?,?,?,?,?,?,?,?,?,?, 'created')",
            (link_id, token_hash, agent_id, customer_ref, phone, language, reason, phrase, now, now + ttl),
        )
        return self.get(link_id)  # type: ignore[return-value]  # read back as stored (a ttl <= 0 reads expired)

    def add_call(
        self,
        agent_id: int,
        *,
        channel: str,
        phone: str | None,
        language: str,
        external_id: str | None = None,
        customer_ref: str | None = None,
        call_id: str | None = None,
    ) -> Link:
        call_id = call_id or new_call_id()
        now = self._db.clock()
        self._db.run(
            "INSERT INTO links (id, token_hash, agent_id, customer_ref, phone, language, reason, phrase, created,"
            " expires, state, connected, channel, external_id) VALUES (?,?,?,?,?,?,'','',?,?, 'connected',?,?,?)",
            # No token: nobody can open a call that did not start from a link (the hash is of nothing sent).
            (
                call_id,
                f"{channel}:{call_id}",
                agent_id,
                customer_ref,
                phone,
                language,
                now,
                now,
                now,
                channel,
                external_id,
            ),
        )
        return self.get(call_id)  # type: ignore[return-value]

    def get(self, link_id: str) -> Link | None:
        return self._one("SELECT * FROM links WHERE id = ?", (link_id,))

    def by_token(self, token_hash: str) -> Link | None:
        return self._one("SELECT * FROM links WHERE token_hash = ?", (token_hash,))

    def of_agent(self, agent_id: int, limit: int = 50, before: float | None = None) -> list[Link]:
        return self._all(
            "SELECT * FROM links WHERE agent_id = ? AND created < ? ORDER BY created DESC LIMIT ?",
            (agent_id, float("inf") if before is None else before, limit),
        )

    def count_live(self, agent_id: int | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM links WHERE state = 'connected'", ()
        if agent_id is not None:
            sql, args = sql + " AND agent_id = ?", (agent_id,)
        return self._db.value(sql, args)

    def count_by_state(self) -> dict[str, int]:
        with self._db.transaction():
            self._expire()
            return dict(self._db.all("SELECT state, COUNT(*) FROM links GROUP BY state"))

    def interrupt_live(self, reason: str) -> list[Link]:
        with self._db.transaction():
            rows = self._db.all("SELECT id FROM links WHERE state = 'connected'")
            self._db.run(
                "UPDATE links SET state = 'interrupted', ended = ?, end_reason = ? WHERE state = 'connected'",
                (self._db.clock(), reason),
            )
            return [link for (link_id,) in rows if (link := self.get(link_id)) is not None]

    def served(self, agent_id: int, customer_id: str) -> bool:
        return bool(
            self._db.value(
                "SELECT EXISTS (SELECT 1 FROM links WHERE agent_id = ? AND customer_ref = ? COLLATE NOCASE)"
                " OR EXISTS (SELECT 1 FROM idv JOIN links ON links.id = idv.link_id WHERE links.agent_id = ?"
                " AND idv.customer_id = ? COLLATE NOCASE)",
                (agent_id, customer_id, agent_id, customer_id),
            )
        )

    def mark_opened(self, link_id: str) -> bool:
        now = self._db.clock()
        cur = self._db.run(
            "UPDATE links SET state = 'opened', opened = ? WHERE id = ? AND state = 'created' AND expires > ?",
            (now, link_id, now),
        )
        return cur.rowcount == 1

    def consume(self, link_id: str) -> bool:
        """Atomically take a link for a call: only one caller ever wins, and only before expiry.

        The check and the change are one statement, and its row count is read under the lock (another thread's
        statement would change what the connection reports)."""
        now = self._db.clock()
        cur = self._db.run(
            "UPDATE links SET state = 'connected', connected = ? WHERE id = ? AND state IN ('created', 'opened')"
            " AND expires > ?",
            (now, link_id, now),
        )
        return cur.rowcount == 1

    def finish(self, link_id: str, state: str, reason: str) -> bool:
        """Move a link to a final state (ended/revoked) unless it is in one already."""
        cur = self._db.run(
            f"UPDATE links SET state = ?, ended = ?, end_reason = ? WHERE id = ? AND state NOT IN {FINAL_STATES}",
            (state, self._db.clock(), reason, link_id),
        )
        return cur.rowcount == 1

    def expired_since(self, since: float) -> list[Link]:
        return self._all("SELECT * FROM links WHERE state = 'expired' AND ended >= ?", (since,))

    def add_snapshot(self, link_id: str, agent_id: int, width: int, height: int, size: int) -> Snapshot:
        snap = Snapshot(uuid.uuid4().hex[:16], link_id, agent_id, self._db.clock(), width, height, size)
        self._db.run(
            "INSERT INTO snapshots VALUES (?,?,?,?,?,?,?)",
            (snap.id, link_id, agent_id, snap.taken, width, height, size),
        )
        return snap

    def snapshots(self, link_id: str) -> list[Snapshot]:
        rows = self._db.all("SELECT * FROM snapshots WHERE link_id = ? ORDER BY taken", (link_id,))
        return [Snapshot(**dict(r)) for r in rows]

    def snapshot(self, snap_id: str) -> Snapshot | None:
        row = self._db.one("SELECT * FROM snapshots WHERE id = ?", (snap_id,))
        return Snapshot(**dict(row)) if row else None

    # Reads expire first: a link nobody connected through before its expiry reads as 'expired' from then on,
    # with no timer to run (a live call is not cut).

    def _expire(self) -> None:
        self._db.run(
            "UPDATE links SET state = 'expired', ended = expires, end_reason = 'expired' "
            "WHERE state IN ('created', 'opened') AND expires <= ?",
            (self._db.clock(),),
        )

    def _one(self, sql: str, args: tuple[Any, ...]) -> Link | None:
        with self._db.transaction():
            self._expire()
            row = self._db.one(sql, args)
        return _link(row) if row else None

    def _all(self, sql: str, args: tuple[Any, ...]) -> list[Link]:
        with self._db.transaction():
            self._expire()
            rows = self._db.all(sql, args)
        return [_link(r) for r in rows]


class _Audit:
    def __init__(self, db: _Db) -> None:
        self._db = db

    def add(self, actor: str, action: str, target: str | None = None, detail: str | None = None) -> None:
        self._db.run(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (self._db.clock(), actor, action, target, detail),
        )

    def log(self, target: str | None = None, actor: str | None = None, limit: int = 1000) -> list[dict]:
        where = [(column, value) for column, value in (("target", target), ("actor", actor)) if value]
        sql = "SELECT id, at, actor, action, target, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column, _ in where)
        rows = self._db.all(sql + " ORDER BY id DESC LIMIT ?", (*(value for _, value in where), limit))
        return [{k: r[k] for k in r.keys() if k != "id"} for r in reversed(rows)]


class _Customers:
    def __init__(self, db: _Db) -> None:
        self._db = db

    def put(self, customer: Customer, pin_hash: str | None = None) -> None:
        """Add or replace a customer and their numbers at once (a lookup never sees them half-written);
        a PIN hash of None keeps the one stored."""
        with self._db.transaction():
            self._db.run(
                "INSERT INTO customers (id, name, pin_hash, updated) VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                " name = excluded.name, pin_hash = COALESCE(excluded.pin_hash, customers.pin_hash),"
                " updated = excluded.updated",
                (customer.id, customer.name, pin_hash, self._db.clock()),
            )
            self._db.run("DELETE FROM customer_phones WHERE customer_id = ?", (customer.id,))
            for key in filter(None, map(phone_key, customer.phones)):
                self._db.run(
                    "INSERT OR IGNORE INTO customer_phones (phone, customer_id) VALUES (?, ?)", (key, customer.id)
                )

    def get(self, customer_id: str) -> Customer | None:
        """Case-insensitive on the id: customer numbers are typed by people ("c-100" finds C-100)."""
        with self._db.transaction():
            row = self._db.one("SELECT id, name FROM customers WHERE id = ? COLLATE NOCASE", (customer_id,))
            if row is None:
                return None
            phones = self._db.all("SELECT phone FROM customer_phones WHERE customer_id = ?", (row["id"],))
        return Customer(row["id"], row["name"], tuple(p[0] for p in phones))

    def by_phone(self, number: str) -> list[Customer]:
        with self._db.transaction():
            rows = self._db.all("SELECT customer_id FROM customer_phones WHERE phone = ?", (phone_key(number),))
            return [c for (cid,) in rows if (c := self.get(cid)) is not None]

    def pin_hash(self, customer_id: str) -> str | None:
        return self._db.value("SELECT pin_hash FROM customers WHERE id = ?", (customer_id,))

    def count(self) -> int:
        return self._db.value("SELECT COUNT(*) FROM customers")


class _VoicePrints:
    """Prints and enrolments arrive sealed by the caller: the store never sees an embedding in the clear."""

    def __init__(self, db: _Db) -> None:
        self._db = db

    def get(self, customer_id: str) -> VoicePrintRecord | None:
        row = self._db.one("SELECT * FROM voiceprints WHERE customer_id = ?", (customer_id,))
        return _voiceprint(row) if row else None

    def put(self, record: VoicePrintRecord) -> None:
        """Store a print (replacing any), consent time set to now; clears an opt-out."""
        now = self._db.clock()
        by, at, wording = (record.consent.by, now, record.consent.wording) if record.consent else (None, None, None)
        self._db.run(
            "INSERT INTO voiceprints (customer_id, sealed, speech_seconds, consent_by, consent_at, consent_wording,"
            " opted_out, watchlist, watch_reason, updated) VALUES (?,?,?,?,?,?,0,?,?,?)"
            " ON CONFLICT(customer_id) DO UPDATE SET sealed = excluded.sealed,"
            " speech_seconds = excluded.speech_seconds, consent_by = excluded.consent_by,"
            " consent_at = excluded.consent_at, consent_wording = excluded.consent_wording, opted_out = 0,"
            " watchlist = excluded.watchlist, watch_reason = excluded.watch_reason, updated = excluded.updated",
            (record.customer_id, record.sealed, record.speech_seconds, by, at, wording)
            + (int(record.watchlist), record.watch_reason, now),
        )

    def opt_out(self, customer_id: str) -> None:
        """Keep the refusal (so the customer is not asked again), drop the print and what derived from it."""
        now = self._db.clock()
        with self._db.transaction():
            self.drop_enrolment(customer_id)
            self._scrub_scores(customer_id)
            self._db.run(
                "INSERT INTO voiceprints (customer_id, sealed, opted_out, updated) VALUES (?, NULL, 1, ?)"
                " ON CONFLICT(customer_id) DO UPDATE SET sealed = NULL, speech_seconds = 0, opted_out = 1,"
                " updated = excluded.updated",
                (customer_id, now),
            )

    def delete(self, customer_id: str) -> bool:
        """The print, any enrolment in progress and every score derived from them: gone."""
        with self._db.transaction():
            self.drop_enrolment(customer_id)
            self._scrub_scores(customer_id)
            return self._db.run("DELETE FROM voiceprints WHERE customer_id = ?", (customer_id,)).rowcount == 1

    def set_watchlist(self, customer_id: str, reason: str) -> bool:
        cur = self._db.run(
            "UPDATE voiceprints SET watchlist = 1, watch_reason = ?, updated = ? WHERE customer_id = ?"
            " AND sealed IS NOT NULL",
            (reason, self._db.clock(), customer_id),
        )
        return cur.rowcount == 1

    def watchlist(self) -> list[VoicePrintRecord]:
        rows = self._db.all("SELECT * FROM voiceprints WHERE watchlist = 1 AND sealed IS NOT NULL")
        return [_voiceprint(r) for r in rows]

    def start_enrolment(self, customer_id: str, consent: Consent) -> None:
        """A new enrolment (replacing one in progress); the current print stays until it completes.

        The store's clock stamps the consent, as ``put`` does the print's: ``consent.at`` is not used."""
        self._db.run(
            "INSERT OR REPLACE INTO enrolments (customer_id, sealed, speech_seconds, consent_by, consent_at,"
            " consent_wording) VALUES (?, NULL, 0, ?, ?, ?)",
            (customer_id, consent.by, self._db.clock(), consent.wording),
        )

    def enrolment(self, customer_id: str) -> EnrolmentRecord | None:
        row = self._db.one("SELECT * FROM enrolments WHERE customer_id = ?", (customer_id,))
        return _enrolment(row) if row else None

    def update_enrolment(
        self, customer_id: str, change: Callable[[EnrolmentRecord], EnrolmentChange]
    ) -> EnrolmentChange | None:
        """Read the enrolment, compute ``change`` from it and apply it, in one transaction: concurrent updates
        never lose each other's speech. None when there is no enrolment.

        ``change`` runs holding the store's lock: every other store call waits for it, so it should only merge
        and seal (embed the speech before calling). It may call the store itself (the lock is re-entrant)."""
        with self._db.transaction():
            enrolment = self.enrolment(customer_id)
            if enrolment is None:
                return None
            result = change(enrolment)
            if not result.finish:
                self._db.run(
                    "UPDATE enrolments SET sealed = ?, speech_seconds = ? WHERE customer_id = ?",
                    (result.sealed, result.speech_seconds, customer_id),
                )
                return result
            self.drop_enrolment(customer_id)
            if result.voiceprint is not None:
                self.put(result.voiceprint)
            return result

    def drop_enrolment(self, customer_id: str) -> None:
        self._db.run("DELETE FROM enrolments WHERE customer_id = ?", (customer_id,))

    def _scrub_scores(self, customer_id: str) -> None:
        """Voice scores derived from a print go with it; the ID&V outcome (and by which factor) is kept."""
        for row in self._db.all("SELECT link_id, record FROM idv WHERE customer_id = ?", (customer_id,)):
            data = json.loads(row["record"])
            if data.get("voice"):
                data["voice"] = {"decision": data["voice"].get("decision"), "score": None, "scrubbed": True}
                self._db.run("UPDATE idv SET record = ? WHERE link_id = ?", (json.dumps(data), row["link_id"]))


class _IdvRecords:
    def __init__(self, db: _Db) -> None:
        self._db = db

    def save(self, link_id: str, customer_id: str | None, record: dict) -> None:
        self._db.run(
            "INSERT OR REPLACE INTO idv (link_id, customer_id, record, updated) VALUES (?,?,?,?)",
            (link_id, customer_id, json.dumps(record), self._db.clock()),
        )

    def get(self, link_id: str) -> dict | None:
        row = self._db.one("SELECT record FROM idv WHERE link_id = ?", (link_id,))
        return json.loads(row[0]) if row else None


class _Transcripts:
    def __init__(self, db: _Db) -> None:
        self._db = db

    def append(self, link_id: str, sealed: bytes) -> int:
        """The next sequence number is read and taken in one transaction: concurrent appends never share one."""
        with self._db.transaction():
            seq: int = self._db.value(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM transcript_records WHERE link_id = ?", (link_id,)
            )
            self._db.run(
                "INSERT INTO transcript_records (link_id, seq, sealed, at) VALUES (?,?,?,?)",
                (link_id, seq, sealed, self._db.clock()),
            )
        return seq

    def records(self, link_id: str) -> Iterator[tuple[int, bytes]]:
        # Fetched at once, under the lock: a lazy cursor would step the shared connection from the caller's thread.
        rows = self._db.all("SELECT seq, sealed FROM transcript_records WHERE link_id = ? ORDER BY seq", (link_id,))
        return iter([(r["seq"], r["sealed"]) for r in rows])


class SqliteStore:
    """``store.base.Store`` on one SQLite file, safe to call from any thread."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._db = _Db(path, clock)
        self.agents = _Agents(self._db)
        self.links = _Links(self._db)
        self.audit = _Audit(self._db)
        self.customers = _Customers(self._db)
        self.voiceprints = _VoicePrints(self._db)
        self.idv = _IdvRecords(self._db)
        self.transcripts = _Transcripts(self._db)

    def ping(self) -> None:
        """``SELECT 1`` under the lock: raises (``sqlite3.ProgrammingError`` once closed) when the file is unusable."""
        self._db.value("SELECT 1")

    def close(self) -> None:
        self._db.close()


def _agent(row: sqlite3.Row) -> Agent:
    return Agent(row["id"], row["name"], row["language"], row["role"], row["display_name"])


def _link(row: sqlite3.Row) -> Link:
    return Link(**{k: row[k] for k in row.keys() if k != "token_hash"})


def _voiceprint(row: sqlite3.Row) -> VoicePrintRecord:
    # An opt-out by a customer who never enrolled leaves a row with no consent on record.
    consent = Consent(row["consent_by"], row["consent_at"], row["consent_wording"])
    return VoicePrintRecord(
        customer_id=row["customer_id"],
        sealed=row["sealed"],
        speech_seconds=row["speech_seconds"],
        consent=consent if consent.by is not None else None,
        opted_out=bool(row["opted_out"]),
        watchlist=bool(row["watchlist"]),
        watch_reason=row["watch_reason"],
    )


def _enrolment(row: sqlite3.Row) -> EnrolmentRecord:
    consent = Consent(row["consent_by"], row["consent_at"], row["consent_wording"])
    return EnrolmentRecord(row["customer_id"], row["sealed"], row["speech_seconds"], consent)
