"""The aggregates of ``store.base`` written once, in SQL that both SQLite and PostgreSQL accept.

Each backend gives them a ``Db``: statements with ``?`` placeholders, rows read by column name, and a
``transaction()`` that nests (an inner one joins the outer). Where the dialects truly differ, the ``Db``
has a small hook (``for_update``, ``lock``, ``integrity_error``) instead of a second copy of a class.

Reads that must be consistent are one statement (a snapshot on any engine); read-modify-write sequences
lock what they read (``for_update``) or serialise on a name (``lock``), so they are safe under SQLite's
one writer and under PostgreSQL's READ COMMITTED with several nodes alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from store.base import (
    CALLBACK_OPEN,
    CALLBACK_STATES,
    FINAL_STATES,
    PAYMENT_FINAL,
    PAYMENT_STATES,
    Agent,
    Callback,
    Consent,
    Customer,
    CustomerEvent,
    EnrolmentChange,
    EnrolmentRecord,
    Link,
    Payment,
    Snapshot,
    Step,
    VoicePrintRecord,
    new_call_id,
    new_snapshot_id,
    phone_key,
)

_SNAPSHOT = "id, link_id, agent_id, taken, width, height, bytes"  # a still's record, without its image


class Row(Protocol):
    """A result row, read by column name (``sqlite3.Row`` or a psycopg dict row)."""

    def __getitem__(self, key: str) -> Any: ...
    def keys(self) -> Any: ...


class Db(Protocol):
    """What the aggregates need of an engine; every statement uses ``?`` placeholders."""

    clock: Callable[[], float]
    # " FOR UPDATE" where the engine locks rows a transaction reads (PostgreSQL); "" where a transaction
    # already excludes every other writer (SQLite).
    for_update: str
    integrity_error: type[Exception]  # what a violated UNIQUE/foreign key raises

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """One data-changing statement; returns how many rows it changed."""

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> Row | None: ...
    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]: ...
    def value(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row, or None when there is no row."""

    def transaction(self) -> AbstractContextManager[None]:
        """All statements inside commit together (rolled back on any error); nested use joins the outer one."""

    def lock(self, name: str) -> None:
        """Inside a transaction: wait until no other transaction (in any process) holds ``name``, then hold it
        until this one ends."""


class _Agents:
    def __init__(self, db: Db) -> None:
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
            agent_id = self._db.value(
                "INSERT INTO agents (name, password_hash, api_token_hash, language, created, role, display_name)"
                " VALUES (?,?,?,?,?,?,?) RETURNING id",
                (name, password_hash, api_token_hash, language, self._db.clock(), role, display_name),
            )
        except self._db.integrity_error:
            raise ValueError(f"an agent named {name!r} exists already") from None
        return Agent(agent_id, name, language, role, display_name)

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
            changed = self._db.run(
                "UPDATE agents SET password_hash = ?, api_token_hash = ? WHERE name = ? AND state != 'removed'",
                (password_hash, api_token_hash, name),
            )
            self._drop_sessions(name)
        return changed == 1

    def set_state(self, name: str, state: str) -> bool:
        if state not in ("active", "disabled", "removed"):
            raise ValueError(f"no agent state {state!r}")
        with self._db.transaction():
            changed = self._db.run("UPDATE agents SET state = ? WHERE name = ? AND state != 'removed'", (state, name))
            if state == "removed":  # nothing left to sign in with: the hashes match no password or token
                self._db.run(
                    "UPDATE agents SET password_hash = '!', api_token_hash = 'removed:' || id WHERE name = ?", (name,)
                )
            if state != "active":
                self._drop_sessions(name)
        return changed == 1

    def set_display_name(self, name: str, display_name: str | None) -> bool:
        changed = self._db.run(
            "UPDATE agents SET display_name = ? WHERE name = ? AND state != 'removed'", (display_name, name)
        )
        return changed == 1

    def set_skills(self, name: str, skills: tuple[str, ...]) -> bool:
        value = ",".join(sorted(set(skills)))
        return self._db.run("UPDATE agents SET skills = ? WHERE name = ? AND state != 'removed'", (value, name)) == 1

    def active(self) -> list[Agent]:
        return [_agent(r) for r in self._db.all("SELECT * FROM agents WHERE state = 'active' ORDER BY id")]

    def set_role(self, name: str, role: str) -> bool:
        return self._db.run("UPDATE agents SET role = ? WHERE name = ? AND state != 'removed'", (role, name)) == 1

    def state(self, name: str) -> str | None:
        return self._db.value("SELECT state FROM agents WHERE name = ?", (name,))

    def set_language(self, agent_id: int, language: str) -> None:
        self._db.run("UPDATE agents SET language = ? WHERE id = ?", (language, agent_id))

    def add_web_session(self, token_hash: str, agent_id: int, csrf: str, ttl: float) -> None:
        """Each sign-in prunes the expired sessions, so the table does not grow with every browser ever seen."""
        now = self._db.clock()
        with self._db.transaction():
            self._db.run("DELETE FROM web_sessions WHERE expires < ?", (now,))
            self._db.run(
                "INSERT INTO web_sessions (token_hash, agent_id, csrf, expires) VALUES (?,?,?,?)",
                (token_hash, agent_id, csrf, now + ttl),
            )

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
    def __init__(self, db: Db) -> None:
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
        kind: str = "video",
        detail: dict | None = None,
    ) -> Link:
        link_id = new_call_id()
        now = self._db.clock()
        self._db.run(
            "INSERT INTO links (id, token_hash, agent_id, customer_ref, phone, language, reason, phrase, created,"
            " expires, state, kind, detail) VALUES (?,?,?,?,?,?,?,?,?,?, 'created',?,?)",
            (
                link_id,
                token_hash,
                agent_id,
                customer_ref,
                phone,
                language,
                reason,
                phrase,
                now,
                now + ttl,
                kind,
                None if detail is None else json.dumps(detail),
            ),
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
            rows = self._db.all("SELECT state, COUNT(*) AS n FROM links GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    def interrupt_live(self, reason: str) -> list[Link]:
        with self._db.transaction():
            rows = self._db.all(
                "UPDATE links SET state = 'interrupted', ended = ?, end_reason = ? WHERE state = 'connected'"
                " RETURNING id",
                (self._db.clock(), reason),
            )
            return [link for r in rows if (link := self.get(r["id"])) is not None]

    def served(self, agent_id: int, customer_id: str) -> bool:
        """Customer ids match case-insensitively (``lower`` folds ASCII on SQLite, as ``COLLATE NOCASE`` does)."""
        return bool(
            self._db.value(
                "SELECT EXISTS (SELECT 1 FROM links WHERE agent_id = ? AND lower(customer_ref) = lower(?))"
                " OR EXISTS (SELECT 1 FROM idv JOIN links ON links.id = idv.link_id WHERE links.agent_id = ?"
                " AND lower(idv.customer_id) = lower(?))",
                (agent_id, customer_id, agent_id, customer_id),
            )
        )

    def mark_opened(self, link_id: str) -> bool:
        now = self._db.clock()
        changed = self._db.run(
            "UPDATE links SET state = 'opened', opened = ? WHERE id = ? AND state = 'created' AND expires > ?",
            (now, link_id, now),
        )
        return changed == 1

    def consume(self, link_id: str) -> bool:
        """Atomically take a link for a call: only one caller ever wins, and only before expiry.

        The check and the change are one conditional statement: the engine lets one writer change the row,
        and the others then find it no longer matches (its row count is theirs alone)."""
        now = self._db.clock()
        changed = self._db.run(
            "UPDATE links SET state = 'connected', connected = ? WHERE id = ? AND state IN ('created', 'opened')"
            " AND expires > ?",
            (now, link_id, now),
        )
        return changed == 1

    def finish(self, link_id: str, state: str, reason: str) -> bool:
        """Move a link to a final state (ended/revoked) unless it is in one already."""
        changed = self._db.run(
            f"UPDATE links SET state = ?, ended = ?, end_reason = ? WHERE id = ? AND state NOT IN {FINAL_STATES}",
            (state, self._db.clock(), reason, link_id),
        )
        return changed == 1

    def expired_since(self, since: float) -> list[Link]:
        return self._all("SELECT * FROM links WHERE state = 'expired' AND ended >= ?", (since,))

    def add_snapshot(
        self,
        link_id: str,
        agent_id: int,
        width: int,
        height: int,
        size: int,
        sealed: bytes | None = None,
        snap_id: str | None = None,
    ) -> Snapshot:
        snap = Snapshot(snap_id or new_snapshot_id(), link_id, agent_id, self._db.clock(), width, height, size)
        self._db.run(
            "INSERT INTO snapshots (id, link_id, agent_id, taken, width, height, bytes, sealed)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (snap.id, link_id, agent_id, snap.taken, width, height, size, sealed),
        )
        return snap

    def snapshots(self, link_id: str) -> list[Snapshot]:
        rows = self._db.all(f"SELECT {_SNAPSHOT} FROM snapshots WHERE link_id = ? ORDER BY taken", (link_id,))
        return [Snapshot(**dict(r)) for r in rows]

    def snapshot(self, snap_id: str) -> Snapshot | None:
        row = self._db.one(f"SELECT {_SNAPSHOT} FROM snapshots WHERE id = ?", (snap_id,))
        return Snapshot(**dict(row)) if row else None

    def snapshot_image(self, snap_id: str) -> bytes | None:
        value = self._db.value("SELECT sealed FROM snapshots WHERE id = ?", (snap_id,))
        return bytes(value) if value is not None else None

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
    def __init__(self, db: Db) -> None:
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
    # A customer and their numbers, read in one statement so a lookup sees one committed state.
    _SELECT = "SELECT c.id, c.name, p.phone FROM customers c LEFT JOIN customer_phones p ON p.customer_id = c.id"

    def __init__(self, db: Db) -> None:
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
                    "INSERT INTO customer_phones (phone, customer_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (key, customer.id),
                )

    def get(self, customer_id: str) -> Customer | None:
        """Case-insensitive on the id: customer numbers are typed by people ("c-100" finds C-100)."""
        found = _customers(self._db.all(self._SELECT + " WHERE lower(c.id) = lower(?)", (customer_id,)))
        return found[0] if found else None

    def by_phone(self, number: str) -> list[Customer]:
        return _customers(
            self._db.all(
                self._SELECT + " WHERE c.id IN (SELECT customer_id FROM customer_phones WHERE phone = ?)",
                (phone_key(number),),
            )
        )

    def pin_hash(self, customer_id: str) -> str | None:
        return self._db.value("SELECT pin_hash FROM customers WHERE id = ?", (customer_id,))

    def count(self) -> int:
        return self._db.value("SELECT COUNT(*) FROM customers")


class _VoicePrints:
    """Prints and enrolments arrive sealed by the caller: the store never sees an embedding in the clear."""

    def __init__(self, db: Db) -> None:
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
            return self._db.run("DELETE FROM voiceprints WHERE customer_id = ?", (customer_id,)) == 1

    def set_watchlist(self, customer_id: str, reason: str) -> bool:
        changed = self._db.run(
            "UPDATE voiceprints SET watchlist = 1, watch_reason = ?, updated = ? WHERE customer_id = ?"
            " AND sealed IS NOT NULL",
            (reason, self._db.clock(), customer_id),
        )
        return changed == 1

    def watchlist(self) -> list[VoicePrintRecord]:
        rows = self._db.all("SELECT * FROM voiceprints WHERE watchlist = 1 AND sealed IS NOT NULL")
        return [_voiceprint(r) for r in rows]

    def start_enrolment(self, customer_id: str, consent: Consent) -> None:
        """A new enrolment (replacing one in progress); the current print stays until it completes.

        The store's clock stamps the consent, as ``put`` does the print's: ``consent.at`` is not used."""
        self._db.run(
            "INSERT INTO enrolments (customer_id, sealed, speech_seconds, consent_by, consent_at, consent_wording)"
            " VALUES (?, NULL, 0, ?, ?, ?) ON CONFLICT(customer_id) DO UPDATE SET sealed = excluded.sealed,"
            " speech_seconds = excluded.speech_seconds, consent_by = excluded.consent_by,"
            " consent_at = excluded.consent_at, consent_wording = excluded.consent_wording",
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

        ``change`` runs inside the transaction, holding the enrolment (SQLite: the store's lock, so every other
        store call waits; PostgreSQL: the row's lock), so it should only merge and seal (embed the speech before
        calling). It may call the store itself from the same thread (nested calls join the transaction)."""
        with self._db.transaction():
            row = self._db.one("SELECT * FROM enrolments WHERE customer_id = ?" + self._db.for_update, (customer_id,))
            if row is None:
                return None
            result = change(_enrolment(row))
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
        sql = "SELECT link_id, record FROM idv WHERE customer_id = ?" + self._db.for_update
        for row in self._db.all(sql, (customer_id,)):
            data = json.loads(row["record"])
            if data.get("voice"):
                data["voice"] = {"decision": data["voice"].get("decision"), "score": None, "scrubbed": True}
                self._db.run("UPDATE idv SET record = ? WHERE link_id = ?", (json.dumps(data), row["link_id"]))


class _IdvRecords:
    def __init__(self, db: Db) -> None:
        self._db = db

    def save(self, link_id: str, customer_id: str | None, record: dict) -> None:
        self._db.run(
            "INSERT INTO idv (link_id, customer_id, record, updated) VALUES (?,?,?,?) ON CONFLICT(link_id)"
            " DO UPDATE SET customer_id = excluded.customer_id, record = excluded.record, updated = excluded.updated",
            (link_id, customer_id, json.dumps(record), self._db.clock()),
        )

    def get(self, link_id: str) -> dict | None:
        row = self._db.one("SELECT record FROM idv WHERE link_id = ?", (link_id,))
        return json.loads(row["record"]) if row else None


class _Transcripts:
    def __init__(self, db: Db) -> None:
        self._db = db

    def append(self, link_id: str, sealed: bytes) -> int:
        """The next sequence number is read and taken in one transaction, serialised per call (``lock``):
        concurrent appends, from any node, never share one."""
        with self._db.transaction():
            self._db.lock(f"transcript:{link_id}")
            seq: int = self._db.value(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM transcript_records WHERE link_id = ?", (link_id,)
            )
            self._db.run(
                "INSERT INTO transcript_records (link_id, seq, sealed, at) VALUES (?,?,?,?)",
                (link_id, seq, sealed, self._db.clock()),
            )
        return seq

    def records(self, link_id: str) -> Iterator[tuple[int, bytes]]:
        # Fetched at once: a lazy cursor would hold a shared connection (or a pooled one) from the caller's thread.
        rows = self._db.all("SELECT seq, sealed FROM transcript_records WHERE link_id = ? ORDER BY seq", (link_id,))
        return iter([(r["seq"], bytes(r["sealed"])) for r in rows])


class _Steps:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, link_id: str, step: str, detail: dict) -> int:
        with self._db.transaction():
            self._db.lock(f"steps:{link_id}")
            seq: int = self._db.value(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM journey_steps WHERE link_id = ?", (link_id,)
            )
            self._db.run(
                "INSERT INTO journey_steps (link_id, seq, at, step, detail) VALUES (?,?,?,?,?)",
                (link_id, seq, self._db.clock(), step, json.dumps(detail)),
            )
        return seq

    def of(self, link_id: str) -> list[Step]:
        rows = self._db.all("SELECT * FROM journey_steps WHERE link_id = ? ORDER BY seq", (link_id,))
        return [Step(r["link_id"], r["seq"], r["at"], r["step"], json.loads(r["detail"])) for r in rows]


_CALLBACK = (
    "id, phone, customer_id, subject, language, window_start, window_end, state, agent_id, queue, reason, created,"
    " updated, attempts, origin"
)


class _Callbacks:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(
        self,
        token_hash: str,
        *,
        phone: str,
        customer_id: str | None,
        subject: str,
        language: str,
        window_start: float,
        window_end: float,
        secret_sealed: bytes,
        queue: str,
        reason: str | None,
        callback_id: str | None = None,
        origin: str | None = None,
    ) -> Callback:
        callback_id = callback_id or new_call_id()
        now = self._db.clock()
        row = (callback_id, token_hash, phone, phone_key(phone), customer_id, subject, language, window_start,
               window_end, secret_sealed, queue, reason, now, now, origin)  # fmt: skip
        try:
            self._db.run(
                "INSERT INTO callbacks (id, token_hash, phone, phone_key, customer_id, subject, language, window_start,"
                " window_end, secret, state, agent_id, queue, reason, created, updated, attempts, origin)"
                " VALUES (?,?,?,?,?,?,?,?,?,?, 'booked', NULL, ?,?,?,?, 0, ?)",
                row,
            )
        except self._db.integrity_error:  # the origin's UNIQUE: a menu offers one callback
            raise ValueError("this menu has booked its callback already") from None
        return self.get(callback_id)  # type: ignore[return-value]

    def get(self, callback_id: str) -> Callback | None:
        row = self._db.one(f"SELECT {_CALLBACK} FROM callbacks WHERE id = ?", (callback_id,))
        return Callback(**dict(row)) if row else None

    def by_token(self, token_hash: str) -> Callback | None:
        row = self._db.one(f"SELECT {_CALLBACK} FROM callbacks WHERE token_hash = ?", (token_hash,))
        return Callback(**dict(row)) if row else None

    def open(self, queue: str | None = None, limit: int = 200) -> list[Callback]:
        sql = f"SELECT {_CALLBACK} FROM callbacks WHERE state IN {CALLBACK_OPEN}"
        args: tuple[Any, ...] = ()
        if queue is not None:
            sql, args = sql + " AND queue = ?", (queue,)
        rows = self._db.all(sql + " ORDER BY window_start, created LIMIT ?", (*args, limit))
        return [Callback(**dict(r)) for r in rows]

    def change(
        self,
        callback_id: str,
        to: str,
        *,
        from_states: tuple[str, ...],
        agent_id: int | None = None,
        window: tuple[float, float] | None = None,
    ) -> Callback | None:
        """One conditional UPDATE: of two concurrent changes from the same state, exactly one matches."""
        if to not in CALLBACK_STATES or not from_states or not set(from_states) <= set(CALLBACK_STATES):
            raise ValueError(f"no callback change {from_states} -> {to!r}")
        sets, args = ["state = ?", "updated = ?"], [to, self._db.clock()]
        if to == "calling":
            sets += ["agent_id = ?", "attempts = attempts + 1"]
            args.append(agent_id)
        if window is not None:
            sets += ["window_start = ?", "window_end = ?"]
            args += list(window)
        marks = ",".join("?" * len(from_states))
        changed = self._db.run(
            f"UPDATE callbacks SET {', '.join(sets)} WHERE id = ? AND state IN ({marks})",
            (*args, callback_id, *from_states),
        )
        return self.get(callback_id) if changed == 1 else None

    def count_since(self, phone_key: str, since: float) -> int:
        return self._db.value("SELECT COUNT(*) FROM callbacks WHERE phone_key = ? AND created >= ?", (phone_key, since))

    def secret(self, callback_id: str) -> bytes | None:
        return _sealed(self._db.value("SELECT secret FROM callbacks WHERE id = ?", (callback_id,)))


class _Payments:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, link_id: str, *, provider: str, amount: int, currency: str) -> Payment:
        self._db.run(
            "INSERT INTO payments (link_id, provider, ref, amount, currency, state, updated, detail)"
            " VALUES (?,?,NULL,?,?, 'created',?, NULL)",
            (link_id, provider, amount, currency, self._db.clock()),
        )
        return self.get(link_id)  # type: ignore[return-value]

    def get(self, link_id: str) -> Payment | None:
        row = self._db.one("SELECT * FROM payments WHERE link_id = ?", (link_id,))
        return Payment(**dict(row)) if row else None

    def by_ref(self, provider: str, ref: str) -> Payment | None:
        row = self._db.one("SELECT * FROM payments WHERE provider = ? AND ref = ?", (provider, ref))
        return Payment(**dict(row)) if row else None

    def set_ref(self, link_id: str, ref: str) -> None:
        self._db.run("UPDATE payments SET ref = ? WHERE link_id = ?", (ref, link_id))

    def advance(self, link_id: str, state: str, detail: str | None = None) -> Payment | None:
        """The states before ``state`` are the ones it may come from: one conditional UPDATE, so a retried or
        reordered webhook changes nothing and concurrent ones change it once."""
        if state not in PAYMENT_STATES:
            raise ValueError(f"no payment state {state!r}")
        before = PAYMENT_STATES[: PAYMENT_STATES.index(state)]
        before = tuple(s for s in before if s not in PAYMENT_FINAL)
        if not before:
            return None
        marks = ",".join("?" * len(before))
        changed = self._db.run(
            f"UPDATE payments SET state = ?, updated = ?, detail = COALESCE(?, detail) WHERE link_id = ?"
            f" AND state IN ({marks})",
            (state, self._db.clock(), detail, link_id, *before),
        )
        return self.get(link_id) if changed == 1 else None


class _Events:
    def __init__(self, db: Db) -> None:
        self._db = db

    def add(self, subject: str, type: str, detail: dict, source: str) -> CustomerEvent:
        at = self._db.clock()
        event_id = self._db.value(
            "INSERT INTO customer_events (subject, type, detail, source, at) VALUES (?,?,?,?,?) RETURNING id",
            (subject, type, json.dumps(detail), source, at),
        )
        return CustomerEvent(event_id, subject, type, detail, source, at)

    def recent(self, subjects: list[str], since: float) -> list[CustomerEvent]:
        if not subjects:
            return []
        marks = ",".join("?" * len(subjects))
        rows = self._db.all(
            f"SELECT * FROM customer_events WHERE subject IN ({marks}) AND at >= ? ORDER BY at DESC, id DESC",
            (*subjects, since),
        )
        return [
            CustomerEvent(r["id"], r["subject"], r["type"], json.loads(r["detail"]), r["source"], r["at"]) for r in rows
        ]

    def prune(self, before: float) -> int:
        return self._db.run("DELETE FROM customer_events WHERE at < ?", (before,))


class Aggregates:
    """Every aggregate on one ``Db``: a backend's store inherits this and adds its engine's lifecycle."""

    def __init__(self, db: Db) -> None:
        self.clock = db.clock
        self.agents = _Agents(db)
        self.links = _Links(db)
        self.audit = _Audit(db)
        self.customers = _Customers(db)
        self.voiceprints = _VoicePrints(db)
        self.idv = _IdvRecords(db)
        self.transcripts = _Transcripts(db)
        self.steps = _Steps(db)
        self.callbacks = _Callbacks(db)
        self.payments = _Payments(db)
        self.events = _Events(db)


def _agent(row: Row) -> Agent:
    skills = tuple(s for s in (row["skills"] or "").split(",") if s)
    return Agent(row["id"], row["name"], row["language"], row["role"], row["display_name"], skills)


def _link(row: Row) -> Link:
    fields = {k: row[k] for k in row.keys() if k != "token_hash"}
    fields["detail"] = json.loads(fields["detail"]) if fields.get("detail") else None
    return Link(**fields)


def _customers(rows: list[Row]) -> list[Customer]:
    """Customers from (id, name, phone) rows, one row per number (phone None: no numbers), in first-seen order."""
    found: dict[str, tuple[str | None, list[str]]] = {}
    for r in rows:
        _, phones = found.setdefault(r["id"], (r["name"], []))
        if r["phone"] is not None:
            phones.append(r["phone"])
    return [Customer(cid, name, tuple(phones)) for cid, (name, phones) in found.items()]


def _sealed(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _voiceprint(row: Row) -> VoicePrintRecord:
    # An opt-out by a customer who never enrolled leaves a row with no consent on record.
    consent = Consent(row["consent_by"], row["consent_at"], row["consent_wording"])
    return VoicePrintRecord(
        customer_id=row["customer_id"],
        sealed=_sealed(row["sealed"]),
        speech_seconds=row["speech_seconds"],
        consent=consent if consent.by is not None else None,
        opted_out=bool(row["opted_out"]),
        watchlist=bool(row["watchlist"]),
        watch_reason=row["watch_reason"],
    )


def _enrolment(row: Row) -> EnrolmentRecord:
    consent = Consent(row["consent_by"], row["consent_at"], row["consent_wording"])
    return EnrolmentRecord(row["customer_id"], _sealed(row["sealed"]), row["speech_seconds"], consent)
