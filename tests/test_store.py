"""The stores, SQLite and PostgreSQL alike: behaviours kept from the old store, and safety under concurrent
calls, from threads and (PostgreSQL) from several nodes sharing one database.

Fast and self-contained: a temporary database file, one throwaway PostgreSQL server for the session (an empty
schema per test), an injected clock; no models, no network beyond loopback.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from store import open_store
from store.base import (
    Agent,
    Callback,
    Consent,
    Customer,
    EnrolmentChange,
    EnrolmentRecord,
    Link,
    Store,
    VoicePrintRecord,
)
from store.postgres import MIGRATIONS, PostgresStore
from store.sqlite import SCHEMA, SqliteStore

THREADS = 20


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "voxgate.db"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, db_path: Path, clock: Clock) -> Iterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(db_path, clock=clock)
    else:
        s = PostgresStore(request.getfixturevalue("pg_url"), clock=clock)
    yield s
    s.close()


def rows(store: Store, sql: str) -> list[tuple]:
    """A query's rows as tuples, read through the store's own engine (SQLite or PostgreSQL)."""
    return [tuple(r[k] for k in r.keys()) for r in store._db.all(sql)]  # type: ignore[attr-defined]


@pytest.fixture
def agent(store: Store) -> Agent:
    return store.agents.add("alice", "pw-hash", "api-hash")


def add_link(store: Store, agent: Agent, token: str = "t1", ttl: float = 60) -> Link:
    return store.links.add(
        token,
        agent.id,
        customer_ref="C-100",
        phone="+44 20 7946 0001",
        language="en",
        reason="kyc",
        phrase="a b c",
        ttl=ttl,
    )


def print_of(
    customer_id: str,
    sealed: bytes = b"print",
    *,
    speech_seconds: float = 12.0,
    consent: Consent | None = Consent("alice", 0.0, "I agree"),
    watch_reason: str | None = None,
) -> VoicePrintRecord:
    """A print to ``put``; a watch reason makes it a watch-list entry."""
    return VoicePrintRecord(customer_id, sealed, speech_seconds, consent, False, watch_reason is not None, watch_reason)


def at_once(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``n`` threads released together by a barrier, so their calls overlap."""
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


# -- agents and browser sessions -----------------------------------------------------------------------------------


def test_agents(store: Store, agent: Agent) -> None:
    assert store.agents.count() == 1
    assert store.agents.get(agent.id) == agent == Agent(agent.id, "alice", "en")
    assert store.agents.get(agent.id + 1) is None
    assert store.agents.login("alice") == (agent, "pw-hash")
    assert store.agents.login("bob") is None
    assert store.agents.by_api_token("api-hash") == agent
    with pytest.raises(ValueError, match="exists already"):
        store.agents.add("alice", "x", "y")
    assert store.agents.set_secrets("alice", "pw2", "api2") and not store.agents.set_secrets("bob", "a", "b")
    assert store.agents.by_api_token("api-hash") is None and store.agents.login("alice") == (agent, "pw2")
    store.agents.set_language(agent.id, "ko")
    assert store.agents.get(agent.id).language == "ko"  # type: ignore[union-attr]


def test_web_sessions_expire_and_are_pruned(store: Store, agent: Agent, clock: Clock) -> None:
    store.agents.add_web_session("s1", agent.id, "csrf1", ttl=60)
    assert store.agents.web_session("s1") == (agent, "csrf1")
    clock.now += 61
    assert store.agents.web_session("s1") is None
    store.agents.add_web_session("s2", agent.id, "csrf2", ttl=60)
    assert rows(store, "SELECT token_hash FROM web_sessions") == [("s2",)]
    store.agents.drop_web_session("s2")
    assert store.agents.web_session("s2") is None


# -- links -----------------------------------------------------------------------------------------------------------


def test_link_lifecycle(store: Store, agent: Agent, clock: Clock) -> None:
    link = add_link(store, agent)
    assert (link.state, link.created, link.expires, link.customer_ref) == (
        "created",
        clock.now,
        clock.now + 60,
        "C-100",
    )
    assert store.links.get(link.id) == store.links.by_token("t1") == link
    assert "agent_id" not in link.to_dict()

    assert store.links.mark_opened(link.id) and not store.links.mark_opened(link.id)
    assert store.links.consume(link.id)
    assert not store.links.consume(link.id)  # one-time: the second caller loses
    assert store.links.count_live() == store.links.count_live(agent.id) == 1
    assert store.links.count_live(agent.id + 1) == 0

    clock.now += 5
    assert store.links.finish(link.id, "ended", "hung up")
    assert not store.links.finish(link.id, "revoked", "too late")  # a final state stays final
    ended = store.links.get(link.id)
    assert ended is not None
    assert (ended.state, ended.ended, ended.end_reason, ended.opened) == ("ended", clock.now, "hung up", clock.now - 5)
    assert store.links.count_live() == 0
    assert store.links.get("nope") is None and store.links.by_token("nope") is None


def test_links_expire_lazily_on_read(store: Store, agent: Agent, clock: Clock) -> None:
    waiting, live = add_link(store, agent, "t1"), add_link(store, agent, "t2")
    assert store.links.consume(live.id)
    clock.now += 60  # expiry is at created + ttl, exclusive

    assert not store.links.consume(waiting.id) and not store.links.mark_opened(waiting.id)
    expired = store.links.get(waiting.id)
    assert expired is not None
    assert (expired.state, expired.ended, expired.end_reason) == ("expired", waiting.expires, "expired")
    assert store.links.get(live.id).state == "connected"  # type: ignore[union-attr]  # a live call is not cut
    assert not store.links.finish(waiting.id, "revoked", "late")
    assert [x.id for x in store.links.expired_since(waiting.created)] == [waiting.id]
    assert store.links.expired_since(waiting.expires + 1) == []
    assert {x.id for x in store.links.of_agent(agent.id)} == {waiting.id, live.id}
    assert len(store.links.of_agent(agent.id, limit=1)) == 1


def test_snapshots(store: Store, agent: Agent) -> None:
    link = add_link(store, agent)
    snap = store.links.add_snapshot(link.id, agent.id, 640, 480, 12345)
    assert store.links.snapshot(snap.id) == snap and store.links.snapshot("nope") is None
    assert store.links.snapshots(link.id) == [snap] and store.links.snapshot_image(snap.id) is None
    sealed = store.links.add_snapshot(link.id, agent.id, 640, 480, 3, b"\x00sealed\xff", "s2")
    assert sealed.id == "s2" and store.links.snapshot_image("s2") == b"\x00sealed\xff"
    assert store.links.snapshots(link.id) == [snap, sealed]


# -- audit, customers, ID&V ------------------------------------------------------------------------------------------


def test_audit(store: Store, clock: Clock) -> None:
    store.audit.add("alice", "link.create", "L1", "kyc")
    store.audit.add("bob", "login")
    assert store.audit.log("L1") == [
        {"at": clock.now, "actor": "alice", "action": "link.create", "target": "L1", "detail": "kyc"}
    ]
    assert [e["action"] for e in store.audit.log()] == ["link.create", "login"]


def test_customers(store: Store) -> None:
    store.customers.put(Customer("C-100", "Ada", ("+44 20 7946 0001", "020-7946-0002")), pin_hash="pin-h")
    store.customers.put(Customer("C-200", "Ben", ("+44 (20) 7946-0001", "")))  # a shared number, and an empty one

    ada = store.customers.get("c-100")  # ids are typed by people: case-insensitive
    assert ada is not None and (ada.id, ada.name) == ("C-100", "Ada")
    assert sorted(ada.phones) == ["+442079460001", "02079460002"]
    assert sorted(c.id for c in store.customers.by_phone("+44 20 7946-0001")) == ["C-100", "C-200"]
    assert [c.id for c in store.customers.by_phone("02079460002")] == ["C-100"]
    assert store.customers.by_phone("+4402079460002") == []  # a leading + is kept, so this is another number

    store.customers.put(Customer("C-100", "Ada L", ()))  # replaces the numbers; no PIN given keeps the stored one
    assert store.customers.get("C-100") == Customer("C-100", "Ada L", ())
    assert store.customers.pin_hash("C-100") == "pin-h" and store.customers.pin_hash("C-200") is None
    assert store.customers.get("C-999") is None and store.customers.count() == 2


def test_idv_records(store: Store, agent: Agent) -> None:
    link = add_link(store, agent)
    assert store.idv.get(link.id) is None
    store.idv.save(link.id, "C-100", {"outcome": "passed", "factors": ["pin"]})
    store.idv.save(link.id, "C-100", {"outcome": "failed"})
    assert store.idv.get(link.id) == {"outcome": "failed"}


# -- voice prints and enrolments -------------------------------------------------------------------------------------


def test_voiceprint_put_get_and_opt_out_scrubs_scores(store: Store, agent: Agent, clock: Clock) -> None:
    store.voiceprints.put(print_of("C-100"))
    got = store.voiceprints.get("C-100")
    assert got == print_of("C-100", consent=Consent("alice", clock.now, "I agree"))  # consent stamped now
    assert got is not None and got.usable
    assert store.voiceprints.get("C-200") is None

    link = add_link(store, agent)
    store.idv.save(link.id, "C-100", {"outcome": "passed", "voice": {"decision": "authenticated", "score": 0.83}})
    store.voiceprints.start_enrolment("C-100", Consent("alice", 0.0, "again"))
    store.voiceprints.opt_out("C-100")

    refused = store.voiceprints.get("C-100")
    assert refused is not None and refused.opted_out and not refused.usable
    assert (refused.sealed, refused.speech_seconds, refused.consent) == (None, 0.0, got.consent)
    assert store.voiceprints.enrolment("C-100") is None
    assert store.idv.get(link.id) == {
        "outcome": "passed",
        "voice": {"decision": "authenticated", "score": None, "scrubbed": True},
    }
    store.voiceprints.put(print_of("C-100"))  # enrolling again clears the opt-out
    assert store.voiceprints.get("C-100").usable  # type: ignore[union-attr]

    store.voiceprints.opt_out("C-300")  # never enrolled: the refusal alone is kept
    assert store.voiceprints.get("C-300") == VoicePrintRecord("C-300", None, 0.0, None, True, False, None)


def test_voiceprint_delete_scrubs_scores(store: Store, agent: Agent) -> None:
    link = add_link(store, agent)
    store.voiceprints.put(print_of("C-100"))
    store.voiceprints.start_enrolment("C-100", Consent("alice", 0.0, "again"))
    store.idv.save(link.id, "C-100", {"voice": {"decision": "not_authenticated", "score": 0.1}})
    assert store.voiceprints.delete("C-100")
    assert store.voiceprints.get("C-100") is None and store.voiceprints.enrolment("C-100") is None
    assert store.idv.get(link.id) == {"voice": {"decision": "not_authenticated", "score": None, "scrubbed": True}}
    assert not store.voiceprints.delete("C-100")


def test_watchlist(store: Store) -> None:
    store.voiceprints.put(print_of("F-1", consent=Consent("bob", 0.0, "case 7"), watch_reason="case 7"))
    store.voiceprints.put(print_of("C-100"))
    store.voiceprints.put(print_of("C-200"))
    store.voiceprints.opt_out("C-300")
    assert store.voiceprints.set_watchlist("C-100", "case 8")
    assert not store.voiceprints.set_watchlist("C-300", "case 9")  # no print to screen against
    assert not store.voiceprints.set_watchlist("C-999", "case 9")
    listed = store.voiceprints.watchlist()
    assert sorted((r.customer_id, r.watch_reason) for r in listed) == [("C-100", "case 8"), ("F-1", "case 7")]
    assert not any(r.usable for r in listed)


def test_enrolment(store: Store, clock: Clock) -> None:
    store.voiceprints.start_enrolment("C-100", Consent("alice", 0.0, "I agree"))
    consent = Consent("alice", clock.now, "I agree")
    assert store.voiceprints.enrolment("C-100") == EnrolmentRecord("C-100", None, 0.0, consent)

    def grow(record: EnrolmentRecord) -> EnrolmentChange:
        return EnrolmentChange(sealed=(record.sealed or b"") + b"+", speech_seconds=record.speech_seconds + 5)

    assert store.voiceprints.update_enrolment("C-100", grow) == EnrolmentChange(b"+", 5.0)
    assert store.voiceprints.update_enrolment("C-100", grow) == EnrolmentChange(b"++", 10.0)
    assert store.voiceprints.enrolment("C-100") == EnrolmentRecord("C-100", b"++", 10.0, consent)

    def broken(record: EnrolmentRecord) -> EnrolmentChange:
        raise RuntimeError("the vault is closed")

    with pytest.raises(RuntimeError):
        store.voiceprints.update_enrolment("C-100", broken)
    assert store.voiceprints.enrolment("C-100") == EnrolmentRecord("C-100", b"++", 10.0, consent)

    done = print_of("C-100", b"final", speech_seconds=10.0)
    store.voiceprints.update_enrolment("C-100", lambda r: EnrolmentChange(finish=True, voiceprint=done))
    assert store.voiceprints.enrolment("C-100") is None
    assert store.voiceprints.get("C-100") == print_of("C-100", b"final", speech_seconds=10.0, consent=consent)

    store.voiceprints.start_enrolment("C-100", Consent("alice", 0.0, "again"))  # refused: nothing stored
    store.voiceprints.update_enrolment("C-100", lambda r: EnrolmentChange(finish=True))
    assert store.voiceprints.enrolment("C-100") is None
    assert store.voiceprints.get("C-100").sealed == b"final"  # type: ignore[union-attr]  # the old print stays

    assert store.voiceprints.update_enrolment("C-999", grow) is None
    store.voiceprints.start_enrolment("C-200", Consent("alice", 0.0, "ok"))
    store.voiceprints.drop_enrolment("C-200")
    assert store.voiceprints.enrolment("C-200") is None


# -- transcripts and existing databases ------------------------------------------------------------------------------


def test_transcripts_append_in_order(store: Store) -> None:
    assert [store.transcripts.append("L1", f"r{i}".encode()) for i in range(3)] == [0, 1, 2]
    assert store.transcripts.append("L2", b"other") == 0
    assert list(store.transcripts.records("L1")) == [(0, b"r0"), (1, b"r1"), (2, b"r2")]
    assert list(store.transcripts.records("L3")) == []


def test_a_database_from_the_old_store_opens_and_keeps_working(db_path: Path, clock: Clock) -> None:
    old = sqlite3.connect(db_path)
    old.executescript(SCHEMA.split("CREATE TABLE IF NOT EXISTS transcript_records")[0])
    old.execute("INSERT INTO agents (name, password_hash, api_token_hash, created) VALUES ('alice', 'p', 'a', 0)")
    old.commit()
    old.close()

    store = SqliteStore(db_path, clock=clock)
    try:
        assert store.agents.login("alice") == (Agent(1, "alice", "en"), "p")
        assert store.transcripts.append("L1", b"r0") == 0
    finally:
        store.close()
    store = SqliteStore(db_path, clock=clock)  # and reopens with what it wrote
    try:
        assert list(store.transcripts.records("L1")) == [(0, b"r0")]
    finally:
        store.close()


# -- concurrency: every test below fails without the lock (SQLite), the row and advisory locks (PostgreSQL) ----------


def test_concurrent_enrolment_updates_lose_no_speech(store: Store) -> None:
    store.voiceprints.start_enrolment("C-100", Consent("alice", 0.0, "I agree"))

    def add_speech(record: EnrolmentRecord) -> EnrolmentChange:
        seconds = record.speech_seconds
        time.sleep(0.003)  # an embedding's worth of delay between the read and the write
        return EnrolmentChange(sealed=b"sums", speech_seconds=seconds + 0.8)

    changes = at_once(THREADS, lambda _: store.voiceprints.update_enrolment("C-100", add_speech))

    record = store.voiceprints.enrolment("C-100")
    assert record is not None and round(record.speech_seconds, 9) == 16.0
    assert len({round(c.speech_seconds, 9) for c in changes}) == THREADS  # each update saw the one before


def test_a_link_is_consumed_once_under_contention(store: Store, agent: Agent) -> None:
    link = add_link(store, agent)
    wins = at_once(THREADS, lambda _: store.links.consume(link.id))
    assert wins.count(True) == 1
    assert store.links.get(link.id).state == "connected"  # type: ignore[union-attr]


def test_concurrent_transcript_appends_get_distinct_consecutive_seqs(store: Store) -> None:
    per_thread = 25

    def append(i: int) -> list[tuple[int, bytes]]:
        out = []
        for j in range(per_thread):
            sealed = f"{i}:{j}".encode()
            out.append((store.transcripts.append("L1", sealed), sealed))
        return out

    appended = [x for batch in at_once(THREADS, append) for x in batch]
    assert sorted(seq for seq, _ in appended) == list(range(THREADS * per_thread))
    assert list(store.transcripts.records("L1")) == sorted(appended)


# -- journeys: their steps, callbacks, payments and customer events ----------------------------------------------------


def test_a_link_carries_its_kind_and_detail(store: Store, agent: Agent) -> None:
    link = store.links.add(
        "t9", agent.id, customer_ref=None, phone=None, language="en", reason="", phrase="p", ttl=60,
        kind="payment", detail={"amount": 1999, "currency": "gbp"},
    )  # fmt: skip
    assert (link.kind, link.detail, link.is_call) == ("payment", {"amount": 1999, "currency": "gbp"}, False)
    assert add_link(store, agent, "t10").kind == "video" and store.links.by_token("t9").to_dict()["kind"] == "payment"
    store.agents.set_skills("alice", ("loans", "cards", "cards"))
    assert store.agents.get(agent.id).skills == ("cards", "loans")
    assert [a.name for a in store.agents.active()] == ["alice"]


def test_concurrent_journey_steps_get_distinct_consecutive_seqs(store: Store, agent: Agent) -> None:
    link = add_link(store, agent)
    seqs = at_once(THREADS, lambda i: store.steps.add(link.id, "choice", {"option": i}))
    assert sorted(seqs) == list(range(THREADS))
    steps = store.steps.of(link.id)
    assert [s.seq for s in steps] == list(range(THREADS)) and {s.detail["option"] for s in steps} == set(range(THREADS))


def test_a_callback_is_claimed_by_one_agent_only(store: Store, agent: Agent, clock: Clock) -> None:
    cb = store.callbacks.add(
        "h1", phone="+44 7700 900123", customer_id=None, subject="my card", language="en", window_start=2000.0,
        window_end=3800.0, secret_sealed=b"sealed", queue="general", reason=None,
    )  # fmt: skip
    assert (cb.state, cb.attempts, store.callbacks.secret(cb.id)) == ("booked", 0, b"sealed")
    assert store.callbacks.by_token("h1") == cb and store.callbacks.count_since("+447700900123", 0) == 1

    def claim(_: int) -> Callback | None:
        return store.callbacks.change(cb.id, "calling", from_states=("booked",), agent_id=agent.id)

    wins = [c for c in at_once(THREADS, claim) if c]
    assert len(wins) == 1 and (wins[0].agent_id, wins[0].attempts) == (agent.id, 1)
    assert store.callbacks.change(cb.id, "booked", from_states=("booked",), window=(1.0, 2.0)) is None
    back = store.callbacks.change(cb.id, "booked", from_states=("calling",), window=(5000.0, 6800.0))
    assert (back.state, back.window_start) == ("booked", 5000.0) and [c.id for c in store.callbacks.open()] == [cb.id]
    store.callbacks.change(cb.id, "cancelled", from_states=("booked",))
    assert store.callbacks.open() == [] and store.callbacks.get(cb.id).state == "cancelled"
    with pytest.raises(ValueError):
        store.callbacks.change(cb.id, "lost", from_states=("booked",))


def test_a_payment_only_moves_forwards_and_once(store: Store, agent: Agent) -> None:
    link = add_link(store, agent)
    assert store.payments.add(link.id, provider="stripe", amount=1999, currency="gbp").state == "created"
    store.payments.set_ref(link.id, "cs_1")
    assert store.payments.by_ref("stripe", "cs_1").link_id == link.id
    assert store.payments.advance(link.id, "handed_off").state == "handed_off"
    assert store.payments.advance(link.id, "opened") is None  # a late "opened" changes nothing
    results = at_once(THREADS, lambda _: store.payments.advance(link.id, "succeeded", "pi_1"))
    assert sum(r is not None for r in results) == 1  # a retried webhook is acted on once
    assert store.payments.advance(link.id, "failed") is None  # final
    assert (store.payments.get(link.id).state, store.payments.get(link.id).detail) == ("succeeded", "pi_1")


def test_customer_events_are_found_by_subject_newest_first_and_pruned(store: Store, clock: Clock) -> None:
    store.events.add("phone:+447700900123", "payment.declined", {"amount": 5}, "api:bank")
    clock.now += 10
    store.events.add("customer:c-1", "signin.failed", {}, "api:bank")
    found = store.events.recent(["phone:+447700900123", "customer:c-1"], since=0)
    assert [e.type for e in found] == ["signin.failed", "payment.declined"] and found[1].detail == {"amount": 5}
    assert [e.type for e in store.events.recent(["customer:c-1"], since=clock.now - 5)] == ["signin.failed"]
    assert store.events.prune(clock.now - 5) == 1 and store.events.recent(["phone:+447700900123"], 0) == []


# -- PostgreSQL: versioned migrations, and several nodes on one database ---------------------------------------------


def test_migrations_are_recorded_and_reopening_applies_none(pg_url: str, clock: Clock) -> None:
    ledger = [(version, clock.now) for version in range(1, len(MIGRATIONS) + 1)]
    store = PostgresStore(pg_url, clock=clock)
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert rows(store, "SELECT version, applied FROM schema_migrations ORDER BY version") == ledger
        agent = store.agents.add("alice", "pw-hash", "api-hash")
    finally:
        store.close()
    clock.now += 60
    store = PostgresStore(pg_url, clock=clock)
    try:  # applied at the first opening only, and what it stored is there
        assert rows(store, "SELECT version, applied FROM schema_migrations ORDER BY version") == ledger
        assert store.agents.get(agent.id) == agent
    finally:
        store.close()


def test_a_database_of_an_earlier_version_is_brought_up_to_date(pg_url: str, clock: Clock) -> None:
    """A database left at version 1 (before stills were kept in the store) gains what came since, keeping its rows."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(MIGRATIONS[0])
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION)")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        conn.execute("INSERT INTO agents (name, password_hash, api_token_hash, created) VALUES ('old', 'p', 'a', 0)")
    store = PostgresStore(pg_url, clock=clock)
    try:
        assert store.schema_version == len(MIGRATIONS) > 1
        old = store.agents.by_name("old")
        assert old is not None
        link = add_link(store, old)
        store.links.add_snapshot(link.id, old.id, 640, 480, 3, b"img", "s1")
        assert store.links.snapshot_image("s1") == b"img"
    finally:
        store.close()


def test_nodes_starting_together_migrate_once(pg_url: str, clock: Clock) -> None:
    nodes = at_once(4, lambda _: PostgresStore(pg_url, clock=clock))
    try:
        assert [n.schema_version for n in nodes] == [len(MIGRATIONS)] * 4
        assert rows(nodes[0], "SELECT version FROM schema_migrations ORDER BY version") == [
            (version,) for version in range(1, len(MIGRATIONS) + 1)
        ]
        assert nodes[1].agents.add("alice", "pw-hash", "api-hash") == nodes[2].agents.get(1)
    finally:
        for node in nodes:
            node.close()


def test_a_link_is_consumed_once_by_many_nodes(pg_url: str, clock: Clock) -> None:
    nodes = [PostgresStore(pg_url, clock=clock, max_size=1) for _ in range(THREADS)]
    try:
        link = add_link(nodes[0], nodes[0].agents.add("alice", "pw-hash", "api-hash"))
        wins = at_once(THREADS, lambda i: nodes[i].links.consume(link.id))
        assert wins.count(True) == 1
        assert {n.links.get(link.id).state for n in nodes} == {"connected"}  # type: ignore[union-attr]
    finally:
        for node in nodes:
            node.close()


def test_transcript_appends_from_two_nodes_get_distinct_consecutive_seqs(pg_url: str) -> None:
    nodes, threads, per_thread = [PostgresStore(pg_url), PostgresStore(pg_url)], 8, 25

    def append(i: int) -> list[tuple[int, bytes]]:
        sealed = [f"{i}:{j}".encode() for j in range(per_thread)]
        return [(nodes[i % 2].transcripts.append("L1", s), s) for s in sealed]

    try:
        appended = [x for batch in at_once(threads, append) for x in batch]
        assert sorted(seq for seq, _ in appended) == list(range(threads * per_thread))
        assert list(nodes[1].transcripts.records("L1")) == sorted(appended)
    finally:
        for node in nodes:
            node.close()


def test_open_store_picks_the_engine_from_the_location(pg_url: str, db_path: Path) -> None:
    postgres_scheme = "postgres://" + pg_url.split("://", 1)[1]
    for location, engine in ((db_path, SqliteStore), (str(db_path), SqliteStore), (pg_url, PostgresStore)) + (
        (postgres_scheme, PostgresStore),
    ):
        store = open_store(location)
        try:
            assert type(store) is engine
            store.ping()
        finally:
            store.close()
