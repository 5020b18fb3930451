"""ID&V: identify the caller, verify them with limited attempts, and keep the status the agent sees.

1. **Identify.** By the calling number (the link's phone) in the customer
   directory. If that is off, finds nobody (or several people), or fails, the
   customer page asks for their customer number, validated against the
   directory, up to ``identify_attempts`` tries, with a way to go on without
   identifying.
2. **Verify** the identified customer: passively by voice when they are
   enrolled; by PIN (or a one-time code sent to their phone) when voice ID is
   not enrolled, opted out, or still inconclusive after ``voice_wait`` seconds
   (or when the agent asks), ``code_attempts`` tries. Voice decisions count from
   ``Calibration.decide_seconds`` (3 s) of speech and follow it: each later
   checkpoint, on more speech, replaces the one before; a
   voice that does not match withdraws verification, whatever factor gave it,
   and no code is offered in its place: the agent decides.
3. **The outcome**, identified and verified / identified only / not identified,
   by which factor and why, is kept with the call and streams to the agent's
   console as it changes. Failures reach the agent with their reason; nothing
   passes silently.

Two layers, so that the rules above can be tested without a call:

* ``IdvFlow``, the state machine: synchronous and pure. Inputs are method calls;
  work that needs I/O comes back as effects (``LookupPhone``, ``CheckPin``,
  ``SendCode``, ``Publish``, ...), and the answers to the ones it waits on
  (``phone_found``, ``pin_checked``, ``code_sent``, ...) are inputs again. Time
  is an injected clock (the voice wait is a deadline that ``tick()`` checks),
  one-time codes an injected generator, and what it must know about a customer
  at once (a PIN? a voice print?) an injected ``CustomerFacts``. Refusals raise
  ``store.errors.Invalid`` (bad input) or ``Conflict`` (a step not open now).
* ``LiveIdv``, the driver for one live call: it runs the effects (the
  directory, PIN hashes, the SMS webhook, voice ID, the store, both screens),
  wakes the machine at the voice deadline, and lets one customer action through
  at a time so that attempts are counted exactly.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiohttp

from identity.directory import Directory, DirectoryError, HttpClient
from store.base import Customer, Store
from store.errors import Conflict, Invalid
from store.security import SecretChecks, pin_needs_rehash, token_hash

if TYPE_CHECKING:
    from identity.voiceid import Progress, Verdict


class Texts(Protocol):
    """The customer's wording in their language, by key (``calls.texts.Catalogue`` bound to the call's)."""

    def __call__(self, key: str, /, **params: object) -> str: ...


# Voice ID's ``Decision`` values that ID&V acts on, compared as strings so the machine needs no voice model.
AUTHENTICATED, NOT_AUTHENTICATED = "authenticated", "not_authenticated"
SPOOF = "possible synthetic or replayed voice"


class Status(StrEnum):
    NOT_IDENTIFIED = "not_identified"
    IDENTIFIED = "identified_only"
    VERIFIED = "identified_and_verified"


LABELS = {
    Status.NOT_IDENTIFIED: "Not identified",
    Status.IDENTIFIED: "Identified only",
    Status.VERIFIED: "Identified and verified",
}


class Step(StrEnum):
    """What the flow waits for."""

    LOOKUP = "lookup"  # the calling number, in the directory
    IDENTIFY = "identify"  # the customer's number, typed on their page
    VOICE = "voice"  # enough of their speech to decide
    CODE = "code"  # a PIN or one-time code, typed on their page
    DONE = "done"  # nothing: the outcome stands (voice decisions may still change it)


@dataclass(frozen=True)
class IdvSettings:
    enabled: bool = True
    ani: bool = True  # identify by the calling number
    directory_url: str | None = None  # None: the table in the store
    directory_token: str | None = None
    identify_attempts: int = 3
    code_attempts: int = 3
    voice_wait: float = 20.0  # seconds an enrolled caller may stay inconclusive before a code is offered
    otp_webhook: str | None = None  # POSTed {"customer_id", "phone", "code", "expires_in"}: an SMS gateway
    otp_ttl: float = 300.0


@dataclass
class IdvRecord:
    """The state of one call's ID&V, as kept with it and shown to the agent."""

    step: Step = Step.LOOKUP
    customer_id: str | None = None
    customer_name: str | None = None
    identified_by: str | None = None  # "phone" | "identifier"
    verified_by: str | None = None  # "voice" | "pin" | "otp"
    reason: str = "looking up the calling number"
    identify_attempts: int = 0
    code_kind: str | None = None  # "pin" | "otp"
    code_attempts: int = 0
    voice: dict | None = None  # the latest voice decision: the only place a score is kept (deletion scrubs it)
    risk: str | None = None  # "high": the voice matches the fraud watch list
    spoof: bool = False  # the voice sounds replayed or synthetic: it verifies nothing in this call
    watchlist_hits: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if self.customer_id is None:
            return Status.NOT_IDENTIFIED
        return Status.VERIFIED if self.verified_by else Status.IDENTIFIED

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value, "status_label": LABELS[self.status]}


CODE_NAMES = {"pin": "PIN", "otp": "one-time code"}
WAITING = {
    Step.LOOKUP: "looking up the calling number",
    Step.IDENTIFY: "waiting for the customer's number",
    Step.VOICE: "verifying the voice",
    Step.CODE: "waiting for the PIN or code",
}


# -- what the machine asks about a customer, at once ---------------------------------------------------------------


class VoicePrint(StrEnum):
    """What voice ID holds for a customer, as far as ID&V cares."""

    ENROLLED = "enrolled"  # a usable print: verify by voice
    OPTED_OUT = "opted_out"  # refused: never asked again
    NONE = "none"


class CustomerFacts(Protocol):
    """Facts the machine needs synchronously about an identified customer (the driver reads the store)."""

    def has_pin(self, customer_id: str) -> bool: ...

    def voice_print(self, customer_id: str) -> VoicePrint: ...

    def enrolment(self, customer_id: str) -> Mapping[str, Any] | None:
        """An unfinished enrolment (consent on record), as voice ID reports it: ``speech_seconds`` and more."""


# -- effects: the work the machine hands its driver ----------------------------------------------------------------


@dataclass(frozen=True)
class LookupPhone:
    """Who has this calling number? Answer with ``phone_found`` or ``phone_lookup_failed``."""

    number: str


@dataclass(frozen=True)
class LookupCustomer:
    """Who has this customer number? Answer with ``customer_found`` or ``customer_lookup_failed``."""

    identifier: str


@dataclass(frozen=True)
class CheckPin:
    """Is this the customer's PIN (against its stored hash)? Answer with ``pin_checked``."""

    customer_id: str
    code: str = field(repr=False)


@dataclass(frozen=True)
class SendCode:
    """Text this one-time code to the customer's phone. Answer with ``code_sent``."""

    customer_id: str
    phone: str
    code: str = field(repr=False)
    expires_in: int


@dataclass(frozen=True)
class ClaimVoice:
    """Verify the call's voice against this customer's print, now and at each checkpoint to come."""

    customer_id: str


@dataclass(frozen=True)
class CollectEnrolment:
    """Collect the call's speech from now on into the customer's enrolment, which has ``already_seconds``."""

    customer_id: str
    already_seconds: float


@dataclass(frozen=True)
class RecordConsent:
    """Record the customer's consent to a voice print (and start their enrolment)."""

    customer_id: str
    by: str
    wording: str


@dataclass(frozen=True)
class OptOut:
    """The customer declined a voice print: keep the refusal."""

    customer_id: str


@dataclass(frozen=True)
class Audit:
    action: str
    detail: str


@dataclass(frozen=True)
class ToCustomer:
    message: dict


@dataclass(frozen=True)
class ToAgent:
    message: dict


@dataclass(frozen=True)
class Publish:
    """The record changed: save it, and show the agent and the customer their views of it."""


Effect = (
    LookupPhone
    | LookupCustomer
    | CheckPin
    | SendCode
    | ClaimVoice
    | CollectEnrolment
    | RecordConsent
    | OptOut
    | Audit
    | ToCustomer
    | ToAgent
    | Publish
)
Awaited = TypeVar("Awaited", LookupPhone, LookupCustomer, CheckPin, SendCode)


def six_digits() -> str:
    return f"{secrets.randbelow(10**6):06d}"


# -- the state machine ---------------------------------------------------------------------------------------------


class IdvFlow:
    """One call's ID&V as a pure state machine: each input returns the effects its caller must run, in order.

    An effect it waits on (a lookup, a PIN check, a code sent) is always the last of its list, and the
    machine takes no other customer action until it is answered. An answer that comes when it is no longer
    awaited (the call ended, or the voice decided meanwhile) changes nothing.
    """

    def __init__(
        self,
        settings: IdvSettings,
        call_id: str,
        phone: str | None,
        facts: CustomerFacts,
        *,
        clock: Callable[[], float],
        company: str,
        voice: bool = True,
        page: bool = True,
        new_code: Callable[[], str] = six_digits,
        texts: Texts,
    ) -> None:
        self.settings, self.call_id, self.phone, self.facts = settings, call_id, phone, facts
        self.texts = texts
        self.voice, self.company = voice, company  # voice: voice ID listens to this call
        # page: the caller has a page to type on (a video link); a phone call's caller has only their voice.
        self.page = page
        self._clock, self._new_code = clock, new_code
        self.record = IdvRecord()
        self.consent_asked = False
        self._customer: Customer | None = None
        self._say: tuple[str, dict] | None = None  # what the customer's page says now: a text's key, its parameters
        self._otp: tuple[str, float] | None = None  # (hash, expiry): the code itself is never kept
        self._voice_deadline = 0.0
        self._awaiting: Effect | None = None  # the I/O whose answer the machine waits for
        self._offering = ""  # why the code being sent is offered
        self._carried: tuple[str, str] | None = None  # (factor, identified by) of a check the customer just passed

    @property
    def wakes_at(self) -> float | None:
        """When ``tick()`` must run next (the end of the voice wait), if at all."""
        return self._voice_deadline if self.record.step == Step.VOICE else None

    # -- identification ----------------------------------------------------------------------------------------

    def begin(self, before: Mapping[str, Any] | None = None) -> list[Effect]:
        """``before``: the record of the check that handed the customer to this call (a menu's, on the same
        device, moments ago). Verified there, they are not asked again: the call starts verified, as it says."""
        if self.record.step != Step.LOOKUP or self._awaiting is not None:
            raise Conflict("identification has begun already")
        if before and before.get("verified_by") in CODE_NAMES and before.get("customer_id"):
            self._carried = (before["verified_by"], before.get("identified_by") or "identifier")
            return self._await(LookupCustomer(before["customer_id"]))
        return self._look_up_phone()

    def _look_up_phone(self) -> list[Effect]:
        if not (self.phone and self.settings.ani):
            return self._ask_identifier("no calling number to look up" if self.settings.ani else "")
        return self._await(LookupPhone(self.phone))

    def phone_found(self, found: Sequence[Customer]) -> list[Effect]:
        if self._answered(LookupPhone) is None:
            return []
        if len(found) == 1:
            return self._identified(found[0], "phone")
        if found:
            return self._ask_identifier(f"{len(found)} customers share the calling number")
        return self._ask_identifier("no customer has the calling number")

    def phone_lookup_failed(self, error: str) -> list[Effect]:
        if self._answered(LookupPhone) is None:
            return []
        return self._ask_identifier(f"calling-number lookup failed: {error}")

    def identify(self, identifier: str) -> list[Effect]:
        """The customer typed their customer number."""
        self._idle()
        if self.record.step != Step.IDENTIFY:
            raise Conflict("identification is not open now")
        identifier = identifier.strip()
        if not identifier or len(identifier) > 64:
            raise Invalid("enter your customer number (at most 64 characters)")
        return self._await(LookupCustomer(identifier))

    def customer_found(self, customer: Customer | None) -> list[Effect]:
        if self._answered(LookupCustomer) is None:
            return []
        if self._carried is not None:
            (factor, by), self._carried = self._carried, None
            if customer is not None:
                return self._verified_before(customer, factor, by)
            self._note("the customer verified before this call is no longer in the directory")
            return self._look_up_phone()
        if customer is not None:
            return self._identified(customer, "identifier")
        r = self.record
        r.identify_attempts += 1
        n, limit = r.identify_attempts, self.settings.identify_attempts
        self._note(f"customer number not found (attempt {n} of {limit})")
        if n >= limit:
            r.step = Step.DONE
            r.reason = f"{limit} customer numbers were not found"
            self._say = ("idv.not_found", {})
            return [self._audit("idv.not_identified", r.reason), Publish()]
        left = limit - n
        r.reason = f"waiting for the customer's number ({left} attempt{'s' if left > 1 else ''} left)"
        self._say = ("idv.not_found_left", {"count": left})
        return [Publish()]

    def customer_lookup_failed(self, error: str) -> list[Effect]:
        """The directory could not answer: the caller is told, and the attempt is not counted against them."""
        if self._answered(LookupCustomer) is None:
            return []
        self._note(f"customer-number lookup failed: {error}")
        self.record.reason = f"the customer directory is unavailable ({error})"
        self._say = ("idv.unavailable", {})
        return [Publish()]

    def skip(self) -> list[Effect]:
        """The customer goes on without identifying (or without verifying): the unauthenticated path."""
        self._idle()
        r = self.record
        if r.step == Step.IDENTIFY:
            r.reason = "the customer chose to go on without identifying"
        elif r.step == Step.CODE:
            r.reason = "the customer chose to go on without verifying"
            self._otp = None
        else:
            raise Conflict("there is nothing to skip now")
        r.step = Step.DONE
        self._note(r.reason)
        self._say = ("idv.agent_helps", {})
        return [Publish()]

    def _ask_identifier(self, why: str) -> list[Effect]:
        if not self.page:
            r = self.record
            r.step, r.reason = (
                Step.DONE,
                f"{why or 'not identified'}; a phone caller has no page to type a customer number",
            )
            self._note(r.reason)
            return [self._audit("idv.not_identified", r.reason), Publish()]
        self.record.step = Step.IDENTIFY
        if why:
            self._note(why)
        self.record.reason = f"{why + ': ' if why else ''}waiting for the customer's number"
        self._say = ("idv.ask_number", {})
        return [Publish()]

    def _identified(self, customer: Customer, by: str) -> list[Effect]:
        r = self.record
        self._customer = customer
        r.customer_id, r.customer_name, r.identified_by = customer.id, customer.name, by
        how = "the calling number" if by == "phone" else "their customer number"
        self._note(f"identified as {customer.id} by {how}")
        audit = self._audit("idv.identified", f"by {by}")
        held = self.facts.voice_print(customer.id) if self.voice else None
        if held == VoicePrint.ENROLLED:
            r.step = Step.VOICE
            r.reason = "verifying the voice as the customer speaks"
            self._say = ("idv.carry_on", {})
            self._voice_deadline = self._clock() + self.settings.voice_wait
            return [audit, ClaimVoice(customer.id), Publish()]
        if held is None:
            why = "voice ID is off on this server"
        else:
            why = "opted out of voice ID" if held == VoicePrint.OPTED_OUT else "not enrolled for voice ID"
        return [audit, *self._offer_code(why)]

    def _verified_before(self, customer: Customer, factor: str, by: str) -> list[Effect]:
        """Verified on the page that handed them here. Voice ID still listens to an enrolled customer: a voice
        that does not match undoes it, as it would a PIN given in the call."""
        r = self.record
        self._customer = customer
        r.customer_id, r.customer_name, r.identified_by = customer.id, customer.name, by
        self._note(f"identified as {customer.id} before this call")
        effects: list[Effect] = [
            self._audit("idv.identified", f"by {by}, before this call"),
            self._verified(factor, f"verified by {CODE_NAMES[factor]} before this call"),
        ]
        if self.voice and self.facts.voice_print(customer.id) == VoicePrint.ENROLLED:
            effects.append(ClaimVoice(customer.id))
        return [*effects, Publish()]

    # -- verification ------------------------------------------------------------------------------------------

    def ask_code(self) -> list[Effect]:
        """The agent asks for a PIN or one-time code now (instead of waiting for the voice)."""
        self._idle()
        r = self.record
        if r.customer_id is None:
            raise Conflict("the caller is not identified yet")
        if r.verified_by or r.step == Step.CODE:
            raise Conflict(f"the caller is {'verified already' if r.verified_by else 'being asked already'}")
        if r.voice and not r.voice["early"] and r.voice["decision"] == NOT_AUTHENTICATED:
            raise Conflict("the voice did not match: a code cannot override it; verify by other means")
        if r.code_kind and r.code_attempts >= self.settings.code_attempts:
            raise Conflict(f"the {CODE_NAMES[r.code_kind]} was wrong {r.code_attempts} times already")
        return self._offer_code("the agent asked")

    def tick(self) -> list[Effect]:
        """Time passed: an enrolled caller still inconclusive at the deadline is offered a code instead."""
        r = self.record
        if self._awaiting is None and r.step == Step.VOICE and not r.verified_by:
            if self._clock() >= self._voice_deadline:
                return self._offer_code(f"voice ID inconclusive after {self.settings.voice_wait:g} s")
        return []

    def _offer_code(self, why: str) -> list[Effect]:
        """A PIN if the customer has one, else a one-time code texted to their phone, else no factor left."""
        customer = self._customer
        assert customer is not None
        if not self.page:
            return self._no_code(f"{why}, and a phone caller has no page to type a PIN or code")
        kind = "pin" if self.facts.has_pin(customer.id) else None
        if kind is None and self.settings.otp_webhook and customer.phones:
            kind = "otp"
        if kind is None:
            return self._no_code(f"{why}, and the customer has no PIN or phone for a code")
        if kind == "pin":
            return self._ask_for("pin", why)
        self._offering = why
        return self._await(SendCode(customer.id, customer.phones[0], self._new_code(), int(self.settings.otp_ttl)))

    def code_sent(self, failure: str | None) -> list[Effect]:
        """The one-time code went out (``failure`` None), or did not, and why (``HTTP 502``, ``TimeoutError``)."""
        sent = self._answered(SendCode)
        if sent is None:
            return []
        if failure:
            self._note(f"the one-time code could not be sent ({failure})")
            return self._no_code(f"{self._offering}, and the one-time code could not be sent")
        self._otp = (token_hash(sent.code), self._clock() + self.settings.otp_ttl)
        return self._ask_for("otp", self._offering)

    def _ask_for(self, kind: str, why: str) -> list[Effect]:
        r, customer = self.record, self._customer
        assert customer is not None
        r.step, r.code_kind = Step.CODE, kind
        r.reason = f"{why}: waiting for the customer's {CODE_NAMES[kind]}"
        self._note(f"{why}: asked for the {CODE_NAMES[kind]}")
        if kind == "pin":
            self._say = ("idv.ask_pin", {})
        else:
            self._say = ("idv.code_sent", {"ending": customer.phones[0][-2:]})
        return [Publish()]

    def _no_code(self, reason: str) -> list[Effect]:
        """No factor left to ask for: the caller stays identified only, and the agent is told why."""
        self.record.step, self.record.reason = Step.DONE, reason
        self._say = ("idv.thanks_agent_helps", {})
        self._note(reason)
        return [Publish()]

    def verify_code(self, code: str) -> list[Effect]:
        """The customer typed their PIN or one-time code."""
        self._idle()
        r = self.record
        if r.step != Step.CODE:
            raise Conflict("no PIN or code is asked for now")
        code = code.strip()
        if not (code.isdigit() and 4 <= len(code) <= 8):
            raise Invalid("enter the digits of your PIN or code")
        if r.code_kind == "pin":
            assert r.customer_id is not None
            return self._await(CheckPin(r.customer_id, code))
        return self._code_checked(self._otp_ok(code))

    def pin_checked(self, ok: bool) -> list[Effect]:
        """The PIN check's answer; if the voice decided while it ran, that decision stands."""
        if self._answered(CheckPin) is None or self.record.step != Step.CODE:
            return []
        return self._code_checked(ok)

    def _otp_ok(self, code: str) -> bool:
        if self._otp is None or self._clock() > self._otp[1]:
            return False
        return hmac.compare_digest(token_hash(code), self._otp[0])

    def _code_checked(self, ok: bool) -> list[Effect]:
        r = self.record
        name, limit = CODE_NAMES[r.code_kind], self.settings.code_attempts
        if ok:
            self._otp = None
            audit = self._verified(r.code_kind, f"verified by {name}")
            self._say = ("idv.right", {})
            return [audit, Publish()]
        r.code_attempts += 1
        self._note(f"{name} wrong (attempt {r.code_attempts} of {limit})")
        if r.code_attempts >= limit:
            r.step, self._otp = Step.DONE, None
            r.reason = f"the {name} was wrong {limit} times"
            self._say = ("idv.wrong", {})
            return [self._audit("idv.code_failed", r.reason), Publish()]
        left = limit - r.code_attempts
        r.reason = f"waiting for the {name} ({left} attempt{'s' if left > 1 else ''} left)"
        self._say = ("idv.wrong_left", {"count": left})
        return [Publish()]

    def _verified(self, factor: str, reason: str) -> Audit:
        self.record.verified_by, self.record.step, self.record.reason = factor, Step.DONE, reason
        self._note(reason)
        return self._audit("idv.verified", f"by {factor}")

    # -- voice ID's findings -----------------------------------------------------------------------------------

    def on_verdict(self, claimed: str, verdict: Verdict, early: bool = False) -> list[Effect]:
        """A voice decision from the call: the latest (on the most speech) stands. An ``early`` one (on less
        speech than decisions need) is kept for the agent to see and changes nothing."""
        r = self.record
        if claimed != r.customer_id:
            return []
        before = r.voice["decision"] if r.voice and not r.voice["early"] else None
        r.voice = {**verdict.to_dict(), "early": early}
        decision = None if early else verdict.decision
        effects: list[Effect] = []
        if decision == AUTHENTICATED and r.spoof:
            decision = None  # never by voice once the call sounds spoofed (voice ID says so too; this is the lock)
        if decision == AUTHENTICATED and r.verified_by is None:
            self._otp, self._awaiting = None, None
            effects.append(self._verified("voice", f"verified by voice on {verdict.speech_seconds:.1f} s of speech"))
            self._say = ("idv.thanks", {})
        elif decision == NOT_AUTHENTICATED and (r.verified_by or before != NOT_AUTHENTICATED):
            was = f" (was verified by {CODE_NAMES.get(r.verified_by, r.verified_by)})" if r.verified_by else ""
            r.verified_by, r.step, self._otp, self._awaiting = None, Step.DONE, None, None
            r.reason = f"the voice did not match the customer's print{was}: verify by other means"
            self._note(f"voice did not match on {verdict.speech_seconds:.1f} s of speech")
            effects.append(self._audit("idv.voice_mismatch", f"at {verdict.speech_seconds:.1f} s"))
            self._say = ("idv.thanks_agent_helps", {})
        return [*effects, Publish()]

    def on_spoof(self) -> list[Effect]:
        """The call sounds replayed or synthetic (on enough speech): voice verifies nothing from now on. A caller
        verified by voice loses it, and one waiting on their voice is asked for a PIN or code at once: something
        a recording or a cloned voice does not have."""
        r = self.record
        if r.spoof:
            return []
        r.spoof = True
        audit = self._audit("idv.spoof_suspected", "the voice sounds replayed or synthetic")
        if r.verified_by == "voice":
            r.verified_by, r.step = None, Step.DONE
            self._note(f"{SPOOF}: no longer verified by voice")
            return [audit, *self._offer_code(f"{SPOOF}: verified by voice no more")]
        if r.step == Step.VOICE and self._awaiting is None:
            self._note(SPOOF)
            return [audit, *self._offer_code(SPOOF)]
        self._note(SPOOF)
        return [audit, Publish()]

    def on_alert(self, hits: list[dict]) -> list[Effect]:
        """The voice matches the fraud watch list: high risk, whoever the caller claims to be."""
        self.record.risk = "high"
        known = {h["watchlist_id"] for h in self.record.watchlist_hits}
        # Kept with the call: who and why, not the score (scores go when their print is deleted).
        self.record.watchlist_hits += [
            {"watchlist_id": h["watchlist_id"], "reason": h["reason"]} for h in hits if h["watchlist_id"] not in known
        ]
        self._note("the voice matches the fraud watch list")
        return [Publish()]

    # -- enrolment consent (asked once the caller is verified) -------------------------------------------------

    def ask_consent(self) -> tuple[dict, list[Effect]]:
        """The agent offers voice enrolment; the customer's page asks them (or, with consent on record, go on).
        Returns the agent's answer and the effects."""
        r = self.record
        if not self.voice:
            raise Conflict("voice ID is off on this server")
        if r.status != Status.VERIFIED:
            raise Conflict("enrol only a verified caller: verify them first (PIN, code or voice)")
        assert r.customer_id is not None
        if self.facts.voice_print(r.customer_id) == VoicePrint.OPTED_OUT:
            raise Conflict("the customer opted out of voice ID; they are not asked again")
        if pending := self.facts.enrolment(r.customer_id):  # consent on record from an earlier call or recording
            self._note(f"enrolment continues from {pending['speech_seconds']} s (consent on record)")
            effects: list[Effect] = [CollectEnrolment(r.customer_id, pending["speech_seconds"]), Publish()]
            return {"state": "collecting", **pending}, effects
        if not self.page:
            raise Conflict("a phone caller has no page to give consent on: send them a link to enrol")
        self.consent_asked = True
        self._note("asked the customer's consent to a voice print")
        return {"state": "asked"}, [ToCustomer(self.consent_prompt()), Publish()]

    @property
    def consent_wording(self) -> str:
        """In the customer's language: what they agree to is what they read, and what is recorded."""
        return self.texts("voice.consent", company=self.company)

    def consent_prompt(self) -> dict:
        return {"type": "enrol_consent", "wording": self.consent_wording}

    def answer_consent(self, agree: bool) -> tuple[dict, list[Effect]]:
        """The customer's answer on their page. Returns their page's answer and the effects."""
        if not self.consent_asked:
            raise Conflict("no voice print consent is asked for now")
        self.consent_asked = False
        customer = self.record.customer_id
        assert customer is not None
        effects: list[Effect] = []
        if agree:
            by = f"customer, on their page (call {self.call_id})"
            effects += [RecordConsent(customer, by, self.consent_wording), CollectEnrolment(customer, 0.0)]
            self._note("the customer agreed to a voice print: collecting their speech")
            state = "collecting"
        else:
            if self.facts.voice_print(customer) != VoicePrint.ENROLLED:  # declining a new print keeps the one held
                effects.append(OptOut(customer))
            self._note("the customer declined a voice print")
            state = "declined"
        effects += [
            ToAgent({"type": "enrolment", "link_id": self.call_id, "state": state, "customer_id": customer}),
            Publish(),
        ]
        return {"state": state}, effects

    def enrolment_finished(self, progress: Progress) -> list[Effect]:
        effects: list[Effect] = []
        if progress.enrolled:
            self._note(f"voice print enrolled from {progress.speech_seconds:.0f} s of speech")
            effects.append(ToCustomer({"type": "enrolment", "state": "enrolled"}))
        else:
            self._note(f"enrolment refused: {progress.refused}")
        return [*effects, Publish()]

    # -- the end, and the views --------------------------------------------------------------------------------

    def close(self) -> list[Effect]:
        """The call ended: an unfinished step is written down as such, and no answer still due counts."""
        self._awaiting = None
        r = self.record
        if r.step == Step.DONE:
            return []
        r.reason = f"the call ended while {WAITING[r.step]}"
        r.step = Step.DONE
        self._note(r.reason)
        return [Publish()]

    def customer_view(self) -> dict:
        """What the customer's page shows: the step, its message and attempts; never the verdict's detail."""
        r = self.record
        step = r.step if r.step in (Step.IDENTIFY, Step.CODE) else Step.DONE
        message = self.texts(self._say[0], **self._say[1]) if self._say else ""
        view = {"type": "idv", "step": step.value, "message": message}
        if step == Step.IDENTIFY:
            view["attempts_left"] = self.settings.identify_attempts - r.identify_attempts
        elif step == Step.CODE:
            view.update(code_kind=r.code_kind, attempts_left=self.settings.code_attempts - r.code_attempts)
        return view

    def agent_view(self) -> dict:
        return {"type": "idv", "link_id": self.call_id, **self.record.to_dict()}

    # -- helpers -----------------------------------------------------------------------------------------------

    def _await(self, effect: Awaited) -> list[Effect]:
        self._awaiting = effect
        return [effect]

    def _answered(self, kind: type[Awaited]) -> Awaited | None:
        """The awaited effect this answers, now done with; None if no such answer is awaited."""
        if not isinstance(self._awaiting, kind):
            return None
        effect, self._awaiting = self._awaiting, None
        return effect

    def abandon(self) -> None:
        """The driver could not get the awaited answer (an unexpected error, or its request was cancelled):
        forget it, so the next action is not refused as waiting on it; nothing is counted."""
        self._awaiting = None

    def _idle(self) -> None:
        """One customer action at a time: the driver's lock makes sure of it; this says so if it is bypassed."""
        if self._awaiting is not None:
            raise Conflict("the last step is still being checked")

    def _note(self, text: str) -> None:
        self.record.history.append({"at": self._clock(), "what": text})

    def _audit(self, action: str, detail: str) -> Audit:
        return Audit(action, f"{self.record.customer_id}: {detail}")


# -- the driver ----------------------------------------------------------------------------------------------------


class CallVoice(Protocol):
    """Voice ID listening to this call's customer."""

    def claim(self, customer_id: str) -> None: ...

    def enrol(self, customer_id: str, already: float) -> None: ...


class VoiceIdService(Protocol):
    """Voice prints, their status and consent."""

    def enrolled(self, customer_id: str) -> bool: ...

    def status(self, customer_id: str) -> dict:
        """``opted_out``, and ``enrolment`` (with ``speech_seconds``) while one is unfinished."""

    def consent(self, customer_id: str, *, by: str, wording: str) -> object: ...

    def opt_out(self, customer_id: str, actor: str) -> None: ...


@dataclass
class IdvContext:
    """What every call's flow shares: the directory, PINs in the store, voice ID, the code sender."""

    settings: IdvSettings
    directory: Directory
    store: Store
    voice_id: VoiceIdService | None
    http: HttpClient | None
    company: str
    secrets: SecretChecks  # PIN checks: keyed with the server's secret, on threads of their own
    # Deadlines (the voice wait, one-time codes) and history run on real time, not on the store's clock (which
    # tests move to expire links).
    clock: Callable[[], float] = time.time


class StoredFacts:
    """``CustomerFacts`` from the store's PIN hashes and voice ID."""

    def __init__(self, store: Store, voice_id: VoiceIdService | None) -> None:
        self.store, self.voice_id = store, voice_id

    def has_pin(self, customer_id: str) -> bool:
        return bool(self.store.customers.pin_hash(customer_id))

    def voice_print(self, customer_id: str) -> VoicePrint:
        if self.voice_id is None:
            return VoicePrint.NONE
        if self.voice_id.enrolled(customer_id):
            return VoicePrint.ENROLLED
        return VoicePrint.OPTED_OUT if self.voice_id.status(customer_id)["opted_out"] else VoicePrint.NONE

    def enrolment(self, customer_id: str) -> Mapping[str, Any] | None:
        return None if self.voice_id is None else self.voice_id.status(customer_id).get("enrolment")


class LiveIdv:
    """One live call's ID&V: feeds ``IdvFlow``, runs its effects, and wakes it at the voice deadline."""

    def __init__(
        self,
        ctx: IdvContext,
        call_id: str,
        phone: str | None,
        voice: CallVoice | None,
        to_agent: Callable[[dict], None],
        to_customer: Callable[[dict], None],
        *,
        texts: Texts,
        page: bool = True,
        continues: str | None = None,
    ) -> None:
        """``continues``: the link whose ID&V this call carries on (the menu that handed the customer here)."""
        self.ctx, self.settings, self.call_id, self.voice = ctx, ctx.settings, call_id, voice
        self.continues = continues
        self._to_agent, self._to_customer = to_agent, to_customer
        self.flow = IdvFlow(
            ctx.settings,
            call_id,
            phone,
            StoredFacts(ctx.store, ctx.voice_id),
            clock=ctx.clock,
            company=ctx.company,
            voice=voice is not None and ctx.voice_id is not None,
            page=page,
            texts=texts,
        )
        self._busy = asyncio.Lock()  # one customer action at a time: attempts are counted exactly
        self._first: asyncio.Task | None = None  # the calling-number lookup
        self._timer: asyncio.Task | None = None  # the wake-up at the voice deadline
        self._timer_at: float | None = None

    @property
    def record(self) -> IdvRecord:
        return self.flow.record

    @property
    def consent_asked(self) -> bool:
        return self.flow.consent_asked

    @property
    def consent_wording(self) -> str:
        return self.flow.consent_wording

    # -- inputs --------------------------------------------------------------------------------------------

    def begin(self) -> None:
        """Start identifying, off the caller's path: a CRM lookup must not delay the call's answer."""
        self._first = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        async with self._busy:  # the customer's page waits for this first answer
            before = self.ctx.store.idv.get(self.continues) if self.continues else None
            await self._run(self.flow.begin(before))

    async def identify(self, identifier: str) -> dict:
        """The customer typed their customer number; returns their page's view."""
        async with self._busy:
            await self._run(self.flow.identify(identifier))
            return self.flow.customer_view()

    async def skip(self) -> dict:
        async with self._busy:
            await self._run(self.flow.skip())
            return self.flow.customer_view()

    async def ask_code(self) -> dict:
        """The agent asks for a PIN or code now; returns the record."""
        async with self._busy:
            await self._run(self.flow.ask_code())
            return self.flow.record.to_dict()

    async def verify_code(self, code: str) -> dict:
        async with self._busy:
            await self._run(self.flow.verify_code(code))
            return self.flow.customer_view()

    def on_verdict(self, claimed: str, verdict: Verdict, early: bool = False) -> None:
        self._run_now(self.flow.on_verdict(claimed, verdict, early))

    def on_alert(self, hits: list[dict]) -> None:
        self._run_now(self.flow.on_alert(hits))

    def on_spoof(self) -> None:
        self._run_now(self.flow.on_spoof())

    def ask_consent(self) -> dict:
        answer, effects = self.flow.ask_consent()
        self._run_now(effects)
        return answer

    def answer_consent(self, agree: bool) -> dict:
        answer, effects = self.flow.answer_consent(agree)
        self._run_now(effects)
        return answer

    def enrolment_finished(self, progress: Progress) -> None:
        self._run_now(self.flow.enrolment_finished(progress))

    def consent_prompt(self) -> dict:
        return self.flow.consent_prompt()

    def customer_view(self) -> dict:
        return self.flow.customer_view()

    def agent_view(self) -> dict:
        return self.flow.agent_view()

    async def close(self) -> None:
        """The call ended: stop the lookup and the voice wait, and write down an unfinished step as such."""
        for task in (self._first, self._timer):
            if task is not None:
                task.cancel()
        self._first = self._timer = self._timer_at = None
        self._run_now(self.flow.close())

    # -- running effects -----------------------------------------------------------------------------------

    async def _run(self, effects: list[Effect]) -> None:
        """Run effects in order; the answer to awaited I/O goes back to the machine, and its next effects run."""
        while effects:
            follow: list[Effect] = []
            for effect in effects:
                if isinstance(effect, LookupPhone | LookupCustomer | CheckPin | SendCode):
                    try:
                        follow = await self._io(effect)
                    except BaseException:  # a bug, or the request was cancelled: the flow must not stay waiting
                        self.flow.abandon()
                        raise
                else:
                    self._do(effect)
            effects = follow
        self._arm_timer()

    def _run_now(self, effects: list[Effect]) -> None:
        for effect in effects:
            self._do(effect)
        self._arm_timer()

    async def _io(self, effect: LookupPhone | LookupCustomer | CheckPin | SendCode) -> list[Effect]:
        flow, directory = self.flow, self.ctx.directory
        match effect:
            case LookupPhone(number):
                try:
                    found = await directory.by_phone(number)
                except DirectoryError as e:
                    return flow.phone_lookup_failed(str(e))
                return flow.phone_found(found)
            case LookupCustomer(identifier):
                try:
                    customer = await directory.by_id(identifier)
                except DirectoryError as e:
                    return flow.customer_lookup_failed(str(e))
                return flow.customer_found(customer)
            case CheckPin(customer_id, code):
                stored = self.ctx.store.customers.pin_hash(customer_id)
                ok = bool(stored) and await self.ctx.secrets.pin(code, stored)
                if ok and pin_needs_rehash(stored) and (customer := self.ctx.store.customers.get(customer_id)):
                    # Stored unkeyed by an earlier VoxGate: key it now that the PIN is known to be right.
                    self.ctx.store.customers.put(customer, await self.ctx.secrets.hash_pin(code))
                return flow.pin_checked(ok)
            case SendCode():
                return flow.code_sent(await self._send(effect))

    async def _send(self, code: SendCode) -> str | None:
        """POST the code to the SMS gateway; None when it took it, else why not."""
        assert self.ctx.http is not None and self.settings.otp_webhook
        body = {"customer_id": code.customer_id, "phone": code.phone, "code": code.code, "expires_in": code.expires_in}
        try:
            async with self.ctx.http.post(self.settings.otp_webhook, json=body, timeout=aiohttp.ClientTimeout(5)) as r:
                return f"HTTP {r.status}" if r.status >= 300 else None
        except (aiohttp.ClientError, TimeoutError) as e:
            return type(e).__name__

    def _do(self, effect: Effect) -> None:
        match effect:
            case Publish():
                r = self.flow.record
                self.ctx.store.idv.save(self.call_id, r.customer_id, r.to_dict())
                self._to_agent(self.flow.agent_view())
                self._to_customer(self.flow.customer_view())
            case Audit(action, detail):
                self.ctx.store.audit.add("idv", action, self.call_id, detail)
            case ToCustomer(message):
                self._to_customer(message)
            case ToAgent(message):
                self._to_agent(message)
            case ClaimVoice(customer_id):
                assert self.voice is not None
                self.voice.claim(customer_id)
            case CollectEnrolment(customer_id, already):
                assert self.voice is not None
                self.voice.enrol(customer_id, already)
            case RecordConsent(customer_id, by, wording):
                assert self.ctx.voice_id is not None
                self.ctx.voice_id.consent(customer_id, by=by, wording=wording)
            case OptOut(customer_id):
                assert self.ctx.voice_id is not None
                self.ctx.voice_id.opt_out(customer_id, actor="customer")
            case _:
                raise TypeError(f"{type(effect).__name__} awaits an answer: run it with _run")

    # -- the voice wait ------------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        """Keep one wake-up at the machine's voice deadline, or none once it has none."""
        at = self.flow.wakes_at
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = None if at is None else asyncio.get_running_loop().create_task(self._wake(at))

    async def _wake(self, at: float) -> None:
        await asyncio.sleep(max(0.0, at - self.ctx.clock()))
        async with self._busy:
            self._timer = self._timer_at = None  # this wake-up is spent: arming again must not cancel it
            await self._run(self.flow.tick())
