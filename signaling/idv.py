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
   by which factor and why, is kept with the session and streams to the agent's
   console as it changes. Failures reach the agent with their reason; nothing
   passes silently.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import aiohttp

from signaling.directory import Directory, DirectoryError
from signaling.security import token_hash, verify_password
from signaling.store import Customer, Store
from signaling.voiceid import Decision, LiveVoice, Progress, Verdict, VoiceId

CONSENT_WORDING = (
    "I agree that {company} may create a voice print from my voice in this call, keep it encrypted, and use it "
    "to recognise me when I call. I can withdraw this at any time and have the voice print deleted."
)


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
    consent_wording: str = CONSENT_WORDING


class IdvError(Exception):
    """A step the flow cannot take now; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class IdvRecord:
    """The state of one session's ID&V, as kept with it and shown to the agent."""

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
    watchlist_hits: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if self.customer_id is None:
            return Status.NOT_IDENTIFIED
        return Status.VERIFIED if self.verified_by else Status.IDENTIFIED

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value, "status_label": LABELS[self.status]}


@dataclass
class IdvContext:
    """What every session's flow shares: the directory, PINs in the store, voice ID, the code sender."""

    settings: IdvSettings
    directory: Directory
    store: Store
    voice_id: VoiceId | None
    http: aiohttp.ClientSession | None
    company: str


CODE_NAMES = {"pin": "PIN", "otp": "one-time code"}
WAITING = {
    Step.LOOKUP: "looking up the calling number",
    Step.IDENTIFY: "waiting for the customer's number",
    Step.VOICE: "verifying the voice",
    Step.CODE: "waiting for the PIN or code",
}


class IdvFlow:
    def __init__(
        self,
        ctx: IdvContext,
        link_id: str,
        phone: str | None,
        voice: LiveVoice | None,
        to_agent: Callable[[dict], None],
        to_customer: Callable[[dict], None],
    ) -> None:
        self.ctx, self.settings = ctx, ctx.settings
        self.link_id, self.phone, self.voice = link_id, phone, voice
        self._to_agent, self._to_customer = to_agent, to_customer
        self.record = IdvRecord()
        self._customer: Customer | None = None
        self._message = ""  # what the customer's page says now
        self._otp: tuple[str, float] | None = None  # (hash, expiry)
        self._timer: asyncio.Task | None = None  # the flow's background step: the first lookup, or the voice wait
        self._busy = asyncio.Lock()  # one customer action at a time: attempts are counted exactly
        self.consent_asked = False

    # -- identification ----------------------------------------------------------------------------------------

    def begin(self) -> None:
        """Start identifying, off the caller's path: a CRM lookup must not delay the call's answer."""
        self._timer = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        async with self._busy:  # the customer's page waits for this first answer
            if not (self.phone and self.settings.ani):
                await self._ask_identifier("no calling number to look up" if self.settings.ani else "")
                return
            try:
                found = await self.ctx.directory.by_phone(self.phone)
            except DirectoryError as e:
                await self._ask_identifier(f"calling-number lookup failed: {e}")
                return
            if len(found) == 1:
                await self._identified(found[0], "phone")
            elif found:
                await self._ask_identifier(f"{len(found)} customers share the calling number")
            else:
                await self._ask_identifier("no customer has the calling number")

    async def identify(self, identifier: str) -> dict:
        """The customer typed their customer number."""
        async with self._busy:
            if self.record.step != Step.IDENTIFY:
                raise IdvError(409, "identification is not open now")
            identifier = identifier.strip()
            if not identifier or len(identifier) > 64:
                raise IdvError(400, "enter your customer number (at most 64 characters)")
            try:
                customer = await self.ctx.directory.by_id(identifier)
            except DirectoryError as e:
                self._note(f"customer-number lookup failed: {e}")
                self.record.reason = f"the customer directory is unavailable ({e})"
                self._message = "We cannot check customer numbers right now. Your agent will help you."
                return self._publish()
            if customer is not None:
                await self._identified(customer, "identifier")
                return self.customer_view()
            self.record.identify_attempts += 1
            n, limit = self.record.identify_attempts, self.settings.identify_attempts
            self._note(f"customer number not found (attempt {n} of {limit})")
            if n >= limit:
                self.record.step = Step.DONE
                self.record.reason = f"{limit} customer numbers were not found"
                self._message = "We could not find your details. Your agent will help you."
                self._audit("idv.not_identified", self.record.reason)
            else:
                left = limit - n
                self.record.reason = f"waiting for the customer's number ({left} attempt{'s' if left > 1 else ''} left)"
                self._message = f"We could not find that customer number. {left} attempt{'s' if left > 1 else ''} left."
            return self._publish()

    async def skip(self) -> dict:
        """The customer goes on without identifying (or without verifying): the unauthenticated path."""
        async with self._busy:
            if self.record.step == Step.IDENTIFY:
                self.record.reason = "the customer chose to go on without identifying"
            elif self.record.step == Step.CODE:
                self.record.reason = "the customer chose to go on without verifying"
                self._otp = None
            else:
                raise IdvError(409, "there is nothing to skip now")
            self.record.step = Step.DONE
            self._note(self.record.reason)
            self._message = "Your agent will help you."
            return self._publish()

    async def _ask_identifier(self, why: str) -> None:
        self.record.step = Step.IDENTIFY
        if why:
            self._note(why)
        self.record.reason = f"{why + ': ' if why else ''}waiting for the customer's number"
        self._message = "Please enter your customer number so we can find your details."
        self._publish()

    async def _identified(self, customer: Customer, by: str) -> None:
        self._customer = customer
        self.record.customer_id, self.record.customer_name, self.record.identified_by = customer.id, customer.name, by
        how = "the calling number" if by == "phone" else "their customer number"
        self._note(f"identified as {customer.id} by {how}")
        self._audit("idv.identified", f"by {by}")
        voice_id = self.ctx.voice_id
        if self.voice is not None and voice_id is not None and voice_id.enrolled(customer.id):
            self.record.step = Step.VOICE
            self.record.reason = "verifying the voice as the customer speaks"
            self._message = "Thank you. Please carry on talking to your agent."
            self.voice.claim(customer.id)
            self._timer = asyncio.get_running_loop().create_task(self._voice_timeout())
            self._publish()
            return
        if self.voice is None or voice_id is None:
            why = "voice ID is off on this server"
        else:
            why = "opted out of voice ID" if voice_id.status(customer.id)["opted_out"] else "not enrolled for voice ID"
        await self._offer_code(why)

    # -- verification ------------------------------------------------------------------------------------------

    async def ask_code(self) -> dict:
        """The agent asks for a PIN or one-time code now (instead of waiting for the voice)."""
        async with self._busy:
            r = self.record
            if r.customer_id is None:
                raise IdvError(409, "the caller is not identified yet")
            if r.verified_by or r.step == Step.CODE:
                raise IdvError(409, f"the caller is {'verified already' if r.verified_by else 'being asked already'}")
            if r.voice and not r.voice["early"] and r.voice["decision"] == Decision.NOT_AUTHENTICATED:
                raise IdvError(409, "the voice did not match: a code cannot override it; verify by other means")
            if r.code_kind and r.code_attempts >= self.settings.code_attempts:
                raise IdvError(409, f"the {CODE_NAMES[r.code_kind]} was wrong {r.code_attempts} times already")
            await self._offer_code("the agent asked")
            return self.record.to_dict()

    async def _offer_code(self, why: str) -> None:
        self._cancel_timer()
        customer = self._customer
        kind = "pin" if self.ctx.store.customer_pin_hash(customer.id) else None
        if kind is None and self.settings.otp_webhook and customer.phones:
            kind = "otp"
        if kind is None:
            self._no_code(f"{why}, and the customer has no PIN or phone for a code")
            return
        if kind == "otp" and not await self._send_otp(customer):
            self._no_code(f"{why}, and the one-time code could not be sent")
            return
        self.record.step, self.record.code_kind = Step.CODE, kind
        self.record.reason = f"{why}: waiting for the customer's {CODE_NAMES[kind]}"
        self._note(f"{why}: asked for the {CODE_NAMES[kind]}")
        if kind == "pin":
            self._message = "To confirm it is you, please enter your PIN."
        else:
            self._message = f"We have sent a code to your phone ending {customer.phones[0][-2:]}. Please enter it."
        self._publish()

    def _no_code(self, reason: str) -> None:
        """No factor left to ask for: the caller stays identified only, and the agent is told why."""
        self.record.step, self.record.reason = Step.DONE, reason
        self._message = "Thank you. Your agent will help you."
        self._note(reason)
        self._publish()

    async def _send_otp(self, customer: Customer) -> bool:
        code = f"{secrets.randbelow(10**6):06d}"
        body = {
            "customer_id": customer.id,
            "phone": customer.phones[0],
            "code": code,
            "expires_in": int(self.settings.otp_ttl),
        }
        try:
            async with self.ctx.http.post(self.settings.otp_webhook, json=body, timeout=aiohttp.ClientTimeout(5)) as r:
                failure = f"HTTP {r.status}" if r.status >= 300 else None
        except (aiohttp.ClientError, TimeoutError) as e:
            failure = type(e).__name__
        if failure:
            self._note(f"the one-time code could not be sent ({failure})")
            return False
        self._otp = (token_hash(code), time.monotonic() + self.settings.otp_ttl)
        return True

    async def verify_code(self, code: str) -> dict:
        """The customer typed their PIN or one-time code."""
        async with self._busy:
            r = self.record
            if r.step != Step.CODE:
                raise IdvError(409, "no PIN or code is asked for now")
            code = code.strip()
            if not (code.isdigit() and 4 <= len(code) <= 8):
                raise IdvError(400, "enter the digits of your PIN or code")
            ok = await self._code_ok(code)
            if r.step != Step.CODE:  # the voice decided while the PIN was checked: that stands
                return self.customer_view()
            if ok:
                self._otp = None
                self._verified(r.code_kind, f"verified by {CODE_NAMES[r.code_kind]}")
                self._message = "Thank you, that is right."
                return self._publish()
            r.code_attempts += 1
            name, limit = CODE_NAMES[r.code_kind], self.settings.code_attempts
            self._note(f"{name} wrong (attempt {r.code_attempts} of {limit})")
            if r.code_attempts >= limit:
                r.step, self._otp = Step.DONE, None
                r.reason = f"the {name} was wrong {limit} times"
                self._message = "That was not right. Your agent will help you."
                self._audit("idv.code_failed", r.reason)
            else:
                left = limit - r.code_attempts
                r.reason = f"waiting for the {name} ({left} attempt{'s' if left > 1 else ''} left)"
                self._message = f"That is not right. {left} attempt{'s' if left > 1 else ''} left."
            return self._publish()

    async def _code_ok(self, code: str) -> bool:
        if self.record.code_kind == "pin":
            stored = self.ctx.store.customer_pin_hash(self.record.customer_id)
            return bool(stored) and await asyncio.to_thread(verify_password, code, stored)  # scrypt: off the loop
        if self._otp is None or time.monotonic() > self._otp[1]:
            return False
        return hmac.compare_digest(token_hash(code), self._otp[0])

    def _verified(self, factor: str, reason: str) -> None:
        self._cancel_timer()
        self.record.verified_by, self.record.step, self.record.reason = factor, Step.DONE, reason
        self._note(reason)
        self._audit("idv.verified", f"by {factor}")

    async def _voice_timeout(self) -> None:
        await asyncio.sleep(self.settings.voice_wait)
        async with self._busy:
            if self.record.step == Step.VOICE and not self.record.verified_by:
                self._timer = None
                await self._offer_code(f"voice ID inconclusive after {self.settings.voice_wait:g} s")

    def on_verdict(self, claimed: str, verdict: Verdict, early: bool = False) -> None:
        """A voice decision from the call: the latest (on the most speech) stands. An ``early`` one (on less
        speech than decisions need) is kept for the agent to see and changes nothing."""
        r = self.record
        if claimed != r.customer_id:
            return
        before = r.voice["decision"] if r.voice and not r.voice["early"] else None
        r.voice = {**verdict.to_dict(), "early": early}
        d = None if early else verdict.decision
        if d == Decision.AUTHENTICATED and r.verified_by is None:
            self._otp = None
            self._verified("voice", f"verified by voice on {verdict.speech_seconds:.1f} s of speech")
            self._message = "Thank you."
        elif d == Decision.NOT_AUTHENTICATED and (r.verified_by or before != Decision.NOT_AUTHENTICATED):
            self._cancel_timer()
            was = f" (was verified by {CODE_NAMES.get(r.verified_by, r.verified_by)})" if r.verified_by else ""
            r.verified_by, r.step, self._otp = None, Step.DONE, None
            r.reason = f"the voice did not match the customer's print{was}: verify by other means"
            self._note(f"voice did not match on {verdict.speech_seconds:.1f} s of speech")
            self._audit("idv.voice_mismatch", f"at {verdict.speech_seconds:.1f} s")
            self._message = "Thank you. Your agent will help you."
        self._publish()

    def on_alert(self, hits: list[dict]) -> None:
        self.record.risk = "high"
        known = {h["watchlist_id"] for h in self.record.watchlist_hits}
        # Kept with the session: who and why, not the score (scores go when their print is deleted).
        self.record.watchlist_hits += [
            {"watchlist_id": h["watchlist_id"], "reason": h["reason"]} for h in hits if h["watchlist_id"] not in known
        ]
        self._note("the voice matches the fraud watch list")
        self._publish()

    # -- enrolment consent (asked once the caller is verified) -------------------------------------------------

    def ask_consent(self) -> dict:
        """The agent offers voice enrolment; the customer's page asks them (or, with consent on record, go on)."""
        r, voice_id = self.record, self.ctx.voice_id
        if self.voice is None or voice_id is None:
            raise IdvError(409, "voice ID is off on this server")
        if r.status != Status.VERIFIED:
            raise IdvError(409, "enrol only a verified caller: verify them first (PIN, code or voice)")
        status = voice_id.status(r.customer_id)
        if status["opted_out"]:
            raise IdvError(409, "the customer opted out of voice ID; they are not asked again")
        if pending := status.get("enrolment"):  # consent on record from an earlier call or recording
            self.voice.enrol(r.customer_id, pending["speech_seconds"])
            self._note(f"enrolment continues from {pending['speech_seconds']} s (consent on record)")
            self._publish()
            return {"state": "collecting", **pending}
        self.consent_asked = True
        self._to_customer(self.consent_prompt())
        self._note("asked the customer's consent to a voice print")
        self._publish()
        return {"state": "asked"}

    @property
    def consent_wording(self) -> str:
        return self.settings.consent_wording.format(company=self.ctx.company)

    def consent_prompt(self) -> dict:
        return {"type": "enrol_consent", "wording": self.consent_wording}

    def answer_consent(self, agree: bool) -> dict:
        if not self.consent_asked:
            raise IdvError(409, "no voice print consent is asked for now")
        self.consent_asked = False
        customer, voice_id = self.record.customer_id, self.ctx.voice_id
        if agree:
            by = f"customer, on their page (session {self.link_id})"
            voice_id.consent(customer, by=by, wording=self.consent_wording)
            self.voice.enrol(customer, 0.0)
            self._note("the customer agreed to a voice print: collecting their speech")
            state = "collecting"
        else:
            if not voice_id.enrolled(customer):
                voice_id.opt_out(customer, actor="customer")
            self._note("the customer declined a voice print")
            state = "declined"
        self._to_agent({"type": "enrolment", "link_id": self.link_id, "state": state, "customer_id": customer})
        self._publish()
        return {"state": state}

    def enrolment_finished(self, progress: Progress) -> None:
        if progress.enrolled:
            self._note(f"voice print enrolled from {progress.speech_seconds:.0f} s of speech")
            self._to_customer({"type": "enrolment", "state": "enrolled"})
        else:
            self._note(f"enrolment refused: {progress.refused}")
        self._publish()

    # -- views -------------------------------------------------------------------------------------------------

    def customer_view(self) -> dict:
        """What the customer's page shows: the step, its message and attempts; never the verdict's detail."""
        r = self.record
        step = r.step if r.step in (Step.IDENTIFY, Step.CODE) else Step.DONE
        view = {"type": "idv", "step": step.value, "message": self._message}
        if step == Step.IDENTIFY:
            view["attempts_left"] = self.settings.identify_attempts - r.identify_attempts
        elif step == Step.CODE:
            view.update(code_kind=r.code_kind, attempts_left=self.settings.code_attempts - r.code_attempts)
        return view

    def agent_view(self) -> dict:
        return {"type": "idv", "link_id": self.link_id, **self.record.to_dict()}

    async def close(self) -> None:
        """The call ended: an unfinished step is written down as such."""
        self._cancel_timer()
        if self.record.step != Step.DONE:
            self.record.reason = f"the call ended while {WAITING[self.record.step]}"
            self.record.step = Step.DONE
            self._note(self.record.reason)
            self._publish()

    def _publish(self) -> dict:
        self.ctx.store.save_idv(self.link_id, self.record.customer_id, self.record.to_dict())
        self._to_agent(self.agent_view())
        view = self.customer_view()
        self._to_customer(view)
        return view

    def _note(self, text: str) -> None:
        self.record.history.append({"at": self.ctx.store.clock(), "what": text})

    def _audit(self, action: str, detail: str) -> None:
        self.ctx.store.audit("idv", action, self.link_id, f"{self.record.customer_id}: {detail}")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None
