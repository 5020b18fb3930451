"""The embedded store: ``store.base.Store`` on one SQLite file (no other service needed to start a node).

One connection serves every thread, the event loop's and the executors', and a
re-entrant lock serialises its use: sqlite3 lets a connection be shared, but
not a transaction, and read-modify-write sequences (an enrolment update, a
transcript's next sequence number) must not interleave. Each method is one
statement under the lock, or one ``BEGIN IMMEDIATE`` transaction holding it.
Queries are small and local (well under a millisecond with WAL), so holding
the lock for them is cheap.

The aggregates themselves are ``store.sql``'s, shared with PostgreSQL; this
module is the engine under them. The schema is the one ``signaling.store``
created: existing databases open unchanged, and new tables are only ever added.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from store.sql import Aggregates

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL,
    api_token_hash TEXT UNIQUE NOT NULL, language TEXT NOT NULL DEFAULT 'en', created REAL NOT NULL,
    role TEXT NOT NULL DEFAULT 'agent', state TEXT NOT NULL DEFAULT 'active', display_name TEXT,
    skills TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS web_sessions (
    token_hash TEXT PRIMARY KEY, agent_id INTEGER NOT NULL REFERENCES agents(id), csrf TEXT NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS links (
    id TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, agent_id INTEGER NOT NULL REFERENCES agents(id),
    customer_ref TEXT, phone TEXT, language TEXT NOT NULL, reason TEXT NOT NULL, phrase TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, state TEXT NOT NULL,
    opened REAL, connected REAL, ended REAL, end_reason TEXT,
    channel TEXT NOT NULL DEFAULT 'link', external_id TEXT, kind TEXT NOT NULL DEFAULT 'video', detail TEXT);
CREATE INDEX IF NOT EXISTS links_agent ON links(agent_id, created);
CREATE INDEX IF NOT EXISTS links_state ON links(state);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, link_id TEXT NOT NULL REFERENCES links(id), agent_id INTEGER NOT NULL,
    taken REAL NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL, sealed BLOB);
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
CREATE TABLE IF NOT EXISTS journey_steps (
    link_id TEXT NOT NULL REFERENCES links(id), seq INTEGER NOT NULL, at REAL NOT NULL, step TEXT NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (link_id, seq));
CREATE TABLE IF NOT EXISTS callbacks (
    id TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, phone TEXT NOT NULL, phone_key TEXT NOT NULL,
    customer_id TEXT, subject TEXT NOT NULL, language TEXT NOT NULL, window_start REAL NOT NULL,
    window_end REAL NOT NULL, secret BLOB NOT NULL, state TEXT NOT NULL, agent_id INTEGER REFERENCES agents(id),
    queue TEXT NOT NULL, reason TEXT, created REAL NOT NULL, updated REAL NOT NULL, attempts INTEGER NOT NULL,
    origin TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS callbacks_open ON callbacks(state, window_start);
CREATE INDEX IF NOT EXISTS callbacks_phone ON callbacks(phone_key, created);
CREATE TABLE IF NOT EXISTS payments (
    link_id TEXT PRIMARY KEY REFERENCES links(id), provider TEXT NOT NULL, ref TEXT, amount INTEGER NOT NULL,
    currency TEXT NOT NULL, state TEXT NOT NULL, updated REAL NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS payments_ref ON payments(provider, ref);
CREATE TABLE IF NOT EXISTS customer_events (
    id INTEGER PRIMARY KEY, subject TEXT NOT NULL, type TEXT NOT NULL, detail TEXT NOT NULL, source TEXT NOT NULL,
    at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS customer_events_subject ON customer_events(subject, at);
"""


class _Db:
    """The one connection, the lock that serialises it, and the store's clock (``store.sql.Db`` on SQLite)."""

    # A transaction holds the lock and SQLite's write lock (BEGIN IMMEDIATE): nothing else can write while it
    # runs, so reads need no row locks and named locks are already held.
    for_update = ""
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: Path | str, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        # Autocommit (isolation_level=None): transactions are explicit, in ``transaction``.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring a database made by an earlier VoxGate up to ``SCHEMA`` (columns added since)."""
        added = {
            "links": (
                ("channel", "TEXT NOT NULL DEFAULT 'link'"),
                ("external_id", "TEXT"),
                ("kind", "TEXT NOT NULL DEFAULT 'video'"),
                ("detail", "TEXT"),
            ),
            # Agents made before roles keep what they could do: the first-run admin stays the admin.
            "agents": (
                ("role", "TEXT NOT NULL DEFAULT 'agent'"),
                ("state", "TEXT NOT NULL DEFAULT 'active'"),
                ("display_name", "TEXT"),
                ("skills", "TEXT NOT NULL DEFAULT ''"),
            ),
            "snapshots": (("sealed", "BLOB"),),  # stills kept in files before (their files are still read)
        }
        for table, new in added.items():
            columns = {r["name"] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            for column, decl in new:
                if column not in columns:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                    if (table, column) == ("agents", "role"):
                        self._conn.execute("UPDATE agents SET role = 'admin' WHERE name = 'admin'")

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """One data-changing statement; its row count, read under the lock (another thread's statement would
        change what the connection reports)."""
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        # Fetched under the lock: stepping a cursor is using the connection. Every row is fetched, so a statement
        # (an INSERT ... RETURNING) is finished, and its implicit transaction committed, before the lock is let go.
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return rows[0] if rows else None

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
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
        with self._lock:
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

    def lock(self, name: str) -> None:
        """``store.sql.Db.lock``: a transaction here already excludes every other writer."""

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteStore(Aggregates):
    """``store.base.Store`` on one SQLite file, safe to call from any thread."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self._db = _Db(path, clock)
        super().__init__(self._db)

    def ping(self) -> None:
        """``SELECT 1`` under the lock: raises (``sqlite3.ProgrammingError`` once closed) when the file is unusable."""
        self._db.value("SELECT 1")

    def close(self) -> None:
        self._db.close()
