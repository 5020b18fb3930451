"""What the rest of VoxGate may ask of storage: records, and one small interface per aggregate.

Every method is synchronous, short and safe to call from any thread (the
event loop or an executor). Methods that change several rows do so
atomically. Time comes from the store's injected clock, so tests can expire
links.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

OPEN_STATES = ("created", "opened")
# interrupted: the call was live when its server stopped without ending it (a crash); found so at the next start.
FINAL_STATES = ("ended", "expired", "revoked", "interrupted")
# system: another system's account (an IVR, a CRM): makes links and posts customer events, takes no calls.
ROLES = ("agent", "supervisor", "fraud", "admin", "system")


# -- records -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    """A person who signs in to the console. ``role`` (one of ``ROLES``) decides what they may do beyond their own
    calls; only active agents are ever returned to sign in or act."""

    id: int
    name: str
    language: str
    role: str = "agent"
    display_name: str | None = None  # what customers see ("Maria"); the sign-in name is never shown to them
    skills: tuple[str, ...] = ()  # what the agent may be routed (calls.queues): a queue asks for skills


@dataclass(frozen=True)
class Link:
    """A one-time link and the call it carries (one link, at most one call: they share the id).

    A call the contact-centre platform streams to us (``channel`` audiohook, twilio or whip) has a record of
    its own, born connected, with no link to open: ``phone`` is the calling number, ``external_id`` the
    platform's id of the call.
    """

    id: str
    agent_id: int
    customer_ref: str | None
    phone: str | None
    language: str
    reason: str
    phrase: str
    created: float
    expires: float
    state: str  # created, opened, connected, then ended / expired / revoked
    opened: float | None
    connected: float | None
    ended: float | None
    end_reason: str | None
    channel: str = "link"  # link (a one-time link), audiohook, twilio, whip
    external_id: str | None = None
    kind: str = "video"  # what a link opens: video (a call), menu (a visual IVR), payment
    detail: dict | None = None  # the journey's own fields, kept with the link (never secret); a call's "media"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "agent_id"}

    @property
    def is_call(self) -> bool:
        """A call the console can hold: a video link's, or a call a platform streams; not a menu or a payment."""
        return self.kind == "video"

    @property
    def audio_only(self) -> bool:
        """A call on a link that asks the customer for their microphone only (``detail.media`` "audio")."""
        return self.is_call and (self.detail or {}).get("media") == "audio"


@dataclass(frozen=True)
class Snapshot:
    id: str
    link_id: str
    agent_id: int
    taken: float
    width: int
    height: int
    bytes: int


@dataclass(frozen=True)
class Customer:
    """A directory entry: who a caller can be identified as. ``phones`` as the directory holds them (the
    embedded one stores and matches them normalised by ``phone_key``)."""

    id: str
    name: str | None = None
    phones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One step of a journey on a link, in order: a menu choice or entry, a payment's state."""

    link_id: str
    seq: int
    at: float
    step: str
    detail: dict


CALLBACK_OPEN = ("booked", "calling")
CALLBACK_STATES = (*CALLBACK_OPEN, "done", "cancelled", "no_answer")


@dataclass(frozen=True)
class Callback:
    """A callback the customer booked: when to call, about what; the secret word is kept sealed, apart."""

    id: str
    phone: str
    customer_id: str | None
    subject: str
    language: str
    window_start: float
    window_end: float
    state: str  # one of CALLBACK_STATES
    agent_id: int | None  # who is calling, or called
    queue: str
    reason: str | None
    created: float
    updated: float
    attempts: int
    origin: str | None = None  # the menu link that offered it: the agent calling sees what was done there

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAYMENT_STATES = ("created", "opened", "handed_off", "details_entered", "succeeded", "failed")
PAYMENT_FINAL = ("succeeded", "failed")


@dataclass(frozen=True)
class Payment:
    """A payment a link asks for: the amount in minor units, and how far it got at the provider (no card data)."""

    link_id: str
    provider: str
    ref: str | None  # the provider's id of its hosted session
    amount: int
    currency: str
    state: str  # one of PAYMENT_STATES, only ever forwards
    updated: float
    detail: str | None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class CustomerEvent:
    """Something another system saw the customer do (a declined payment, a failed sign-in), kept for a while.
    ``subject`` is ``customer:ID`` or ``phone:NUMBER`` (``phone_key``)."""

    id: int
    subject: str
    type: str
    detail: dict
    source: str
    at: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def new_snapshot_id() -> str:
    return uuid.uuid4().hex[:16]


def new_call_id() -> str:
    """A link's or call's id: 48 random bits, short enough to read out, never a secret (the token is)."""
    return uuid.uuid4().hex[:12]


def phone_key(number: str) -> str:
    """A phone number as the directory matches it: digits only, with a leading + kept (E.164 style)."""
    digits = "".join(c for c in number if c.isdigit())
    return f"+{digits}" if number.strip().startswith("+") else digits


@dataclass(frozen=True)
class Consent:
    by: str
    at: float
    wording: str


@dataclass(frozen=True)
class VoicePrintRecord:
    """A customer's voice print row. ``sealed`` is None once opted out (the refusal is kept)."""

    customer_id: str
    sealed: bytes | None
    speech_seconds: float
    consent: Consent | None
    opted_out: bool
    watchlist: bool
    watch_reason: str | None

    @property
    def usable(self) -> bool:
        """A print that verifies its customer (not opted out, not a watch-list entry)."""
        return self.sealed is not None and not self.watchlist and not self.opted_out


@dataclass(frozen=True)
class EnrolmentRecord:
    """An enrolment in progress: consent first, then sealed running sums of embeddings."""

    customer_id: str
    sealed: bytes | None
    speech_seconds: float
    consent: Consent


@dataclass(frozen=True)
class EnrolmentChange:
    """What an enrolment update decides, applied atomically with the read it was computed from.

    ``sealed``/``speech_seconds``: the enrolment's new state. ``finish``: drop the enrolment (complete,
    or refused); ``voiceprint``: the print to store in the same transaction (None: store nothing).
    """

    sealed: bytes | None = None
    speech_seconds: float = 0.0
    finish: bool = False
    voiceprint: VoicePrintRecord | None = None


# -- one interface per aggregate -----------------------------------------------------------------------------------


class Agents(Protocol):
    """Agents, their credentials and browser sessions. An agent is active, disabled (may come back) or removed
    (credentials gone, name and history kept); every lookup used to sign in or act returns active agents only."""

    def add(
        self,
        name: str,
        password_hash: str,
        api_token_hash: str,
        language: str = "en",
        role: str = "agent",
        display_name: str | None = None,
    ) -> Agent: ...
    def count(self) -> int: ...
    def get(self, agent_id: int) -> Agent | None: ...
    def login(self, name: str) -> tuple[Agent, str] | None:
        """The active agent and its password hash."""

    def by_name(self, name: str) -> Agent | None: ...

    def by_api_token(self, token_hash: str) -> Agent | None: ...
    def set_secrets(self, name: str, password_hash: str, api_token_hash: str) -> bool:
        """New credentials for an active or disabled agent; every browser session it had ends."""

    def set_state(self, name: str, state: str) -> bool:
        """``active``, ``disabled`` or ``removed`` (removal also voids the credentials); every session ends
        unless the agent becomes active."""

    def set_role(self, name: str, role: str) -> bool: ...
    def set_display_name(self, name: str, display_name: str | None) -> bool: ...
    def set_skills(self, name: str, skills: tuple[str, ...]) -> bool: ...
    def active(self) -> list[Agent]: ...
    def state(self, name: str) -> str | None: ...
    def set_language(self, agent_id: int, language: str) -> None: ...
    def add_web_session(self, token_hash: str, agent_id: int, csrf: str, ttl: float) -> None: ...
    def web_session(self, token_hash: str) -> tuple[Agent, str] | None:
        """The active agent signed in with this browser session, and the session's CSRF token."""

    def drop_web_session(self, token_hash: str) -> None: ...


class Links(Protocol):
    """Links and the calls they carry, and the stills taken in them."""

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
    ) -> Link: ...
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
        """The record of a call a platform streams to us: connected from the start, no token, nothing to open.
        ``call_id``: one ``new_call_id`` gave before the record could be made (its logs already say it)."""

    def get(self, link_id: str) -> Link | None: ...
    def by_token(self, token_hash: str) -> Link | None: ...
    def of_agent(self, agent_id: int, limit: int = 50, before: float | None = None) -> list[Link]:
        """Newest first; ``before``: created before this time (paging back)."""

    def count_live(self, agent_id: int | None = None) -> int: ...
    def count_by_state(self) -> dict[str, int]: ...
    def interrupt_live(self, reason: str) -> list[Link]:
        """Every call still marked live becomes ``interrupted``: at start, those are calls a crash left behind."""

    def served(self, agent_id: int, customer_id: str) -> bool:
        """Has this agent had a call with this customer (named on the link, or identified by ID&V)?"""

    def mark_opened(self, link_id: str) -> bool: ...
    def consume(self, link_id: str) -> bool:
        """Atomically take a link for a call: only one caller ever wins, and only before expiry."""

    def finish(self, link_id: str, state: str, reason: str) -> bool:
        """Move a link to a final state (ended/revoked) unless it is in one already."""

    def expired_since(self, since: float) -> list[Link]: ...
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
        """A still's record and its image, sealed by the caller (with ``snap_id``, which the seal names): in the
        store, so every node can show it."""

    def snapshots(self, link_id: str) -> list[Snapshot]: ...
    def snapshot(self, snap_id: str) -> Snapshot | None: ...
    def snapshot_image(self, snap_id: str) -> bytes | None:
        """The still's sealed image; None for one an earlier VoxGate kept in a file (``snapshots/``)."""


class Audit(Protocol):
    def add(self, actor: str, action: str, target: str | None = None, detail: str | None = None) -> None: ...
    def log(self, target: str | None = None, actor: str | None = None, limit: int = 1000) -> list[dict]:
        """The latest ``limit`` rows, oldest first, about ``target`` and/or by ``actor`` when given."""


class Customers(Protocol):
    """The embedded customer directory, and customers' PIN hashes."""

    def put(self, customer: Customer, pin_hash: str | None = None) -> None:
        """Add or replace a customer and their numbers at once; a PIN hash of None keeps the one stored."""

    def get(self, customer_id: str) -> Customer | None:
        """Case-insensitive on the id: customer numbers are typed by people."""

    def by_phone(self, number: str) -> list[Customer]: ...
    def pin_hash(self, customer_id: str) -> str | None: ...
    def count(self) -> int: ...


class VoicePrints(Protocol):
    """Voice prints and enrolments in progress, sealed by the caller."""

    def get(self, customer_id: str) -> VoicePrintRecord | None: ...
    def put(self, record: VoicePrintRecord) -> None:
        """Store a print (replacing any), consent time set to now; clears an opt-out."""

    def opt_out(self, customer_id: str) -> None:
        """Keep the refusal, drop the print, any enrolment and every voice score derived from them."""

    def delete(self, customer_id: str) -> bool:
        """The print, any enrolment in progress and every score derived from them: gone."""

    def set_watchlist(self, customer_id: str, reason: str) -> bool: ...
    def watchlist(self) -> list[VoicePrintRecord]: ...
    def start_enrolment(self, customer_id: str, consent: Consent) -> None:
        """A new enrolment (replacing one in progress); the current print stays until it completes."""

    def enrolment(self, customer_id: str) -> EnrolmentRecord | None: ...
    def update_enrolment(
        self, customer_id: str, change: Callable[[EnrolmentRecord], EnrolmentChange]
    ) -> EnrolmentChange | None:
        """Read the enrolment, compute ``change`` from it and apply it, in one transaction: concurrent updates
        never lose each other's speech. None when there is no enrolment."""

    def drop_enrolment(self, customer_id: str) -> None: ...


class IdvRecords(Protocol):
    def save(self, link_id: str, customer_id: str | None, record: dict) -> None: ...
    def get(self, link_id: str) -> dict | None: ...


class Transcripts(Protocol):
    """A call's transcript as sealed records, appended as the call goes (never rewritten)."""

    def append(self, link_id: str, sealed: bytes) -> int:
        """Returns the record's sequence number within the call."""

    def records(self, link_id: str) -> Iterator[tuple[int, bytes]]: ...


class Steps(Protocol):
    def add(self, link_id: str, step: str, detail: dict) -> int:
        """Appends a step; returns its sequence number within the link (safe under concurrency)."""

    def of(self, link_id: str) -> list[Step]: ...


class Callbacks(Protocol):
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
        """``callback_id``: one ``new_call_id`` gave before (the secret is sealed naming it). A menu link offers
        one callback: a second with the same ``origin`` raises ``ValueError``."""

    def get(self, callback_id: str) -> Callback | None: ...
    def by_token(self, token_hash: str) -> Callback | None: ...
    def open(self, queue: str | None = None, limit: int = 200) -> list[Callback]:
        """Booked and calling ones, soonest window first."""

    def change(
        self,
        callback_id: str,
        to: str,
        *,
        from_states: tuple[str, ...],
        agent_id: int | None = None,
        window: tuple[float, float] | None = None,
    ) -> Callback | None:
        """Atomically move to ``to`` only from one of ``from_states`` (None: it was in none). ``calling`` records
        ``agent_id`` and counts an attempt; ``window`` replaces the time window."""

    def count_since(self, phone_key: str, since: float) -> int: ...
    def secret(self, callback_id: str) -> bytes | None: ...


class Payments(Protocol):
    def add(self, link_id: str, *, provider: str, amount: int, currency: str) -> Payment: ...
    def get(self, link_id: str) -> Payment | None: ...
    def by_ref(self, provider: str, ref: str) -> Payment | None: ...
    def set_ref(self, link_id: str, ref: str) -> None: ...
    def advance(self, link_id: str, state: str, detail: str | None = None) -> Payment | None:
        """Forwards only (``PAYMENT_STATES`` order; a final state is never left); None when already at or past
        it: providers retry webhooks, and each change must be acted on once."""


class Events(Protocol):
    def add(self, subject: str, type: str, detail: dict, source: str) -> CustomerEvent: ...
    def recent(self, subjects: list[str], since: float) -> list[CustomerEvent]:
        """Newest first."""

    def prune(self, before: float) -> int:
        """Forget events older than ``before``; returns how many."""


class Store(Protocol):
    clock: Callable[[], float]
    agents: Agents
    links: Links
    audit: Audit
    customers: Customers
    voiceprints: VoicePrints
    idv: IdvRecords
    transcripts: Transcripts
    steps: Steps
    callbacks: Callbacks
    payments: Payments
    events: Events

    def ping(self) -> None:
        """A trivial round trip, for readiness probes: raises when the store cannot be reached."""

    def close(self) -> None: ...
