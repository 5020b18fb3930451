"""The embedded store: one SQLite file under the data directory (no other service needed to start).

Holds agents, browser sessions, links (one link is one customer session),
snapshots, the audit log, the embedded customer directory, voice prints and
enrolments in progress (sealed by the caller: the store never sees an
embedding in the clear), and each session's ID&V result. Secrets are stored
only as hashes. Queries are
small and local (well under a millisecond with WAL), so they run on the event
loop. Time comes from an injected clock, so tests can expire links.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL,
    api_token_hash TEXT UNIQUE NOT NULL, language TEXT NOT NULL DEFAULT 'en', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS web_sessions (
    token_hash TEXT PRIMARY KEY, agent_id INTEGER NOT NULL REFERENCES agents(id), csrf TEXT NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS links (
    id TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, agent_id INTEGER NOT NULL REFERENCES agents(id),
    customer_ref TEXT, phone TEXT, language TEXT NOT NULL, reason TEXT NOT NULL, phrase TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, state TEXT NOT NULL,
    opened REAL, connected REAL, ended REAL, end_reason TEXT);
CREATE INDEX IF NOT EXISTS links_agent ON links(agent_id, created);
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
"""

OPEN_STATES = ("created", "opened")
FINAL_STATES = ("ended", "expired", "revoked")


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    language: str


@dataclass(frozen=True)
class Link:
    id: str
    agent_id: int
    customer_ref: str | None
    phone: str | None
    language: str
    reason: str
    phrase: str
    created: float
    expires: float
    state: str
    opened: float | None
    connected: float | None
    ended: float | None
    end_reason: str | None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "agent_id"}


@dataclass(frozen=True)
class Customer:
    """A directory entry: who a caller can be identified as. ``phones`` as the directory holds them (the
    embedded one stores and matches them normalised by ``phone_key``)."""

    id: str
    name: str | None = None
    phones: tuple[str, ...] = ()


def phone_key(number: str) -> str:
    """A phone number as the directory matches it: digits only, with a leading + kept (E.164 style)."""
    digits = "".join(c for c in number if c.isdigit())
    return f"+{digits}" if number.strip().startswith("+") else digits


@dataclass(frozen=True)
class Snapshot:
    id: str
    link_id: str
    agent_id: int
    taken: float
    width: int
    height: int
    bytes: int


class Store:
    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- agents ------------------------------------------------------------------------------------------------

    def add_agent(self, name: str, password_hash: str, api_token_hash: str, language: str = "en") -> Agent:
        try:
            cur = self._db.execute(
                "INSERT INTO agents (name, password_hash, api_token_hash, language, created) VALUES (?,?,?,?,?)",
                (name, password_hash, api_token_hash, language, self.clock()),
            )
        except sqlite3.IntegrityError:
            raise ValueError(f"an agent named {name!r} exists already") from None
        return Agent(cur.lastrowid, name, language)

    def agent_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM agents").fetchone()[0]

    def agent_login(self, name: str) -> tuple[Agent, str] | None:
        row = self._db.execute("SELECT * FROM agents WHERE name = ?", (name,)).fetchone()
        return (Agent(row["id"], row["name"], row["language"]), row["password_hash"]) if row else None

    def agent_name(self, agent_id: int) -> str:
        return self._db.execute("SELECT name FROM agents WHERE id = ?", (agent_id,)).fetchone()[0]

    def agent_language(self, agent_id: int) -> str:
        return self._db.execute("SELECT language FROM agents WHERE id = ?", (agent_id,)).fetchone()[0]

    def agent_by_api_token(self, token_hash: str) -> Agent | None:
        row = self._db.execute("SELECT * FROM agents WHERE api_token_hash = ?", (token_hash,)).fetchone()
        return Agent(row["id"], row["name"], row["language"]) if row else None

    def set_agent_secrets(self, name: str, password_hash: str, api_token_hash: str) -> bool:
        cur = self._db.execute(
            "UPDATE agents SET password_hash = ?, api_token_hash = ? WHERE name = ?",
            (password_hash, api_token_hash, name),
        )
        return cur.rowcount == 1

    def set_agent_language(self, agent_id: int, language: str) -> None:
        self._db.execute("UPDATE agents SET language = ? WHERE id = ?", (language, agent_id))

    # -- browser sessions --------------------------------------------------------------------------------------

    def add_web_session(self, token_hash: str, agent_id: int, csrf: str, ttl: float) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE expires < ?", (self.clock(),))
        self._db.execute("INSERT INTO web_sessions VALUES (?,?,?,?)", (token_hash, agent_id, csrf, self.clock() + ttl))

    def web_session(self, token_hash: str) -> tuple[Agent, str] | None:
        row = self._db.execute(
            "SELECT a.id, a.name, a.language, s.csrf FROM web_sessions s JOIN agents a ON a.id = s.agent_id "
            "WHERE s.token_hash = ? AND s.expires > ?",
            (token_hash, self.clock()),
        ).fetchone()
        return (Agent(row["id"], row["name"], row["language"]), row["csrf"]) if row else None

    def drop_web_session(self, token_hash: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))

    # -- links -------------------------------------------------------------------------------------------------

    def add_link(
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
        link_id = uuid.uuid4().hex[:12]
        now = self.clock()
        self._db.execute(
            "INSERT INTO links (id, token_hash, agent_id, customer_ref, phone, language, reason, phrase, created,"
            " expires, state) VALUES (?,?,?,?,?,?,?,?,?,?, 'created')",
            (link_id, token_hash, agent_id, customer_ref, phone, language, reason, phrase, now, now + ttl),
        )
        return self.link(link_id)  # type: ignore[return-value]

    def link(self, link_id: str) -> Link | None:
        self._expire()
        row = self._db.execute("SELECT * FROM links WHERE id = ?", (link_id,)).fetchone()
        return _link(row) if row else None

    def link_by_token(self, token_hash: str) -> Link | None:
        self._expire()
        row = self._db.execute("SELECT * FROM links WHERE token_hash = ?", (token_hash,)).fetchone()
        return _link(row) if row else None

    def links_of(self, agent_id: int, limit: int = 50) -> list[Link]:
        self._expire()
        rows = self._db.execute(
            "SELECT * FROM links WHERE agent_id = ? ORDER BY created DESC LIMIT ?", (agent_id, limit)
        ).fetchall()
        return [_link(r) for r in rows]

    def count_live(self, agent_id: int | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM links WHERE state = 'connected'", ()
        if agent_id is not None:
            q, args = q + " AND agent_id = ?", (agent_id,)
        return self._db.execute(q, args).fetchone()[0]

    def mark_opened(self, link_id: str) -> bool:
        cur = self._db.execute(
            "UPDATE links SET state = 'opened', opened = ? WHERE id = ? AND state = 'created' AND expires > ?",
            (self.clock(), link_id, self.clock()),
        )
        return cur.rowcount == 1

    def consume(self, link_id: str) -> bool:
        """Atomically take a link for a session: only one caller ever wins, and only before expiry."""
        now = self.clock()
        cur = self._db.execute(
            "UPDATE links SET state = 'connected', connected = ? WHERE id = ? AND state IN ('created', 'opened')"
            " AND expires > ?",
            (now, link_id, now),
        )
        return cur.rowcount == 1

    def finish(self, link_id: str, state: str, reason: str) -> bool:
        """Move a link to a final state (ended/revoked) unless it is in one already."""
        cur = self._db.execute(
            f"UPDATE links SET state = ?, ended = ?, end_reason = ? WHERE id = ? AND state NOT IN {FINAL_STATES}",
            (state, self.clock(), reason, link_id),
        )
        return cur.rowcount == 1

    def expired_since(self, since: float) -> list[Link]:
        self._expire()
        rows = self._db.execute("SELECT * FROM links WHERE state = 'expired' AND ended >= ?", (since,)).fetchall()
        return [_link(r) for r in rows]

    def _expire(self) -> None:
        """Links nobody connected through before their expiry become 'expired' (a live call is not cut)."""
        now = self.clock()
        self._db.execute(
            "UPDATE links SET state = 'expired', ended = expires, end_reason = 'expired' "
            "WHERE state IN ('created', 'opened') AND expires <= ?",
            (now,),
        )

    # -- snapshots and audit -----------------------------------------------------------------------------------

    def add_snapshot(self, link_id: str, agent_id: int, width: int, height: int, size: int) -> Snapshot:
        snap = Snapshot(uuid.uuid4().hex[:16], link_id, agent_id, self.clock(), width, height, size)
        self._db.execute(
            "INSERT INTO snapshots VALUES (?,?,?,?,?,?,?)",
            (snap.id, link_id, agent_id, snap.taken, width, height, size),
        )
        return snap

    def snapshots(self, link_id: str) -> list[Snapshot]:
        rows = self._db.execute("SELECT * FROM snapshots WHERE link_id = ? ORDER BY taken", (link_id,)).fetchall()
        return [Snapshot(**dict(r)) for r in rows]

    def snapshot(self, snap_id: str) -> Snapshot | None:
        row = self._db.execute("SELECT * FROM snapshots WHERE id = ?", (snap_id,)).fetchone()
        return Snapshot(**dict(row)) if row else None

    # -- voice prints (sealed: the store never sees an embedding in the clear) ------------------------------

    def voiceprint(self, customer_id: str) -> sqlite3.Row | None:
        return self._db.execute("SELECT * FROM voiceprints WHERE customer_id = ?", (customer_id,)).fetchone()

    def put_voiceprint(
        self,
        customer_id: str,
        sealed: bytes | None,
        speech_seconds: float,
        *,
        consent_by: str,
        consent_wording: str,
        watchlist: bool = False,
        watch_reason: str | None = None,
    ) -> None:
        now = self.clock()
        self._db.execute(
            "INSERT INTO voiceprints (customer_id, sealed, speech_seconds, consent_by, consent_at, consent_wording,"
            " opted_out, watchlist, watch_reason, updated) VALUES (?,?,?,?,?,?,0,?,?,?)"
            " ON CONFLICT(customer_id) DO UPDATE SET sealed = excluded.sealed,"
            " speech_seconds = excluded.speech_seconds, consent_by = excluded.consent_by,"
            " consent_at = excluded.consent_at,"
            " consent_wording = excluded.consent_wording, opted_out = 0, watchlist = excluded.watchlist,"
            " watch_reason = excluded.watch_reason, updated = excluded.updated",
            (customer_id, sealed, speech_seconds, consent_by, now, consent_wording, int(watchlist), watch_reason, now),
        )

    def opt_out_voiceprint(self, customer_id: str) -> None:
        """Keep the refusal (so the customer is not asked again), drop the print and what derived from it."""
        self.drop_enrolment(customer_id)
        self.scrub_voice_scores(customer_id)
        now = self.clock()
        self._db.execute(
            "INSERT INTO voiceprints (customer_id, sealed, opted_out, updated) VALUES (?, NULL, 1, ?)"
            " ON CONFLICT(customer_id) DO UPDATE SET sealed = NULL, speech_seconds = 0, opted_out = 1, updated = ?",
            (customer_id, now, now),
        )

    def delete_voiceprint(self, customer_id: str) -> bool:
        """The print, any enrolment in progress and every score derived from them: gone."""
        self.drop_enrolment(customer_id)
        self.scrub_voice_scores(customer_id)
        return self._db.execute("DELETE FROM voiceprints WHERE customer_id = ?", (customer_id,)).rowcount == 1

    def set_watchlist(self, customer_id: str, reason: str) -> bool:
        cur = self._db.execute(
            "UPDATE voiceprints SET watchlist = 1, watch_reason = ?, updated = ? WHERE customer_id = ?"
            " AND sealed IS NOT NULL",
            (reason, self.clock(), customer_id),
        )
        return cur.rowcount == 1

    # -- enrolments in progress: consent first, then speech from recordings and calls ----------------------------

    def start_enrolment(self, customer_id: str, *, consent_by: str, consent_wording: str) -> None:
        """A new enrolment (replacing one in progress); the current print, if any, stays until it completes."""
        self._db.execute(
            "INSERT OR REPLACE INTO enrolments (customer_id, sealed, speech_seconds, consent_by, consent_at,"
            " consent_wording) VALUES (?, NULL, 0, ?, ?, ?)",
            (customer_id, consent_by, self.clock(), consent_wording),
        )

    def enrolment(self, customer_id: str) -> sqlite3.Row | None:
        return self._db.execute("SELECT * FROM enrolments WHERE customer_id = ?", (customer_id,)).fetchone()

    def update_enrolment(self, customer_id: str, sealed: bytes, speech_seconds: float) -> None:
        self._db.execute(
            "UPDATE enrolments SET sealed = ?, speech_seconds = ? WHERE customer_id = ?",
            (sealed, speech_seconds, customer_id),
        )

    def drop_enrolment(self, customer_id: str) -> None:
        self._db.execute("DELETE FROM enrolments WHERE customer_id = ?", (customer_id,))

    # -- the embedded customer directory -------------------------------------------------------------------------

    def put_customer(self, customer: Customer, pin_hash: str | None = None) -> None:
        """Add or replace a customer and their numbers (at once: a lookup never sees them half-written);
        a PIN hash of None keeps the one stored."""
        with self._db:  # one transaction
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO customers (id, name, pin_hash, updated) VALUES (?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                " name = excluded.name, pin_hash = COALESCE(excluded.pin_hash, customers.pin_hash),"
                " updated = excluded.updated",
                (customer.id, customer.name, pin_hash, self.clock()),
            )
            self._db.execute("DELETE FROM customer_phones WHERE customer_id = ?", (customer.id,))
            self._db.executemany(
                "INSERT OR IGNORE INTO customer_phones (phone, customer_id) VALUES (?, ?)",
                [(phone_key(p), customer.id) for p in customer.phones if phone_key(p)],
            )

    def customer(self, customer_id: str) -> Customer | None:
        # Customer numbers are typed by people: "c-100" finds C-100.
        row = self._db.execute("SELECT id, name FROM customers WHERE id = ? COLLATE NOCASE", (customer_id,)).fetchone()
        if row is None:
            return None
        phones = self._db.execute("SELECT phone FROM customer_phones WHERE customer_id = ?", (row["id"],))
        return Customer(row["id"], row["name"], tuple(p[0] for p in phones))

    def customers_by_phone(self, number: str) -> list[Customer]:
        rows = self._db.execute("SELECT customer_id FROM customer_phones WHERE phone = ?", (phone_key(number),))
        return [c for (cid,) in rows.fetchall() if (c := self.customer(cid)) is not None]

    def customer_pin_hash(self, customer_id: str) -> str | None:
        row = self._db.execute("SELECT pin_hash FROM customers WHERE id = ?", (customer_id,)).fetchone()
        return row[0] if row else None

    def customer_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM customers").fetchone()[0]

    # -- ID&V results, kept with their sessions --------------------------------------------------------------------

    def save_idv(self, link_id: str, customer_id: str | None, record: dict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO idv (link_id, customer_id, record, updated) VALUES (?,?,?,?)",
            (link_id, customer_id, json.dumps(record), self.clock()),
        )

    def idv(self, link_id: str) -> dict | None:
        row = self._db.execute("SELECT record FROM idv WHERE link_id = ?", (link_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def scrub_voice_scores(self, customer_id: str) -> None:
        """Voice scores derived from a print go with it; the ID&V outcome (and by which factor) is kept."""
        rows = self._db.execute("SELECT link_id, record FROM idv WHERE customer_id = ?", (customer_id,)).fetchall()
        for link_id, record in rows:
            data = json.loads(record)
            if data.get("voice"):
                data["voice"] = {"decision": data["voice"].get("decision"), "score": None, "scrubbed": True}
                self._db.execute("UPDATE idv SET record = ? WHERE link_id = ?", (json.dumps(data), link_id))

    def watchlist(self) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM voiceprints WHERE watchlist = 1 AND sealed IS NOT NULL").fetchall()

    def audit(self, actor: str, action: str, target: str | None = None, detail: str | None = None) -> None:
        self._db.execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (self.clock(), actor, action, target, detail),
        )

    def audit_log(self, target: str | None = None) -> list[dict]:
        q, args = "SELECT at, actor, action, target, detail FROM audit", ()
        if target:
            q, args = q + " WHERE target = ?", (target,)
        return [dict(r) for r in self._db.execute(q + " ORDER BY id", args).fetchall()]


def _link(row: sqlite3.Row) -> Link:
    return Link(**{k: row[k] for k in row.keys() if k != "token_hash"})
