"""A callback the customer books, from our page or their bank's app, with a secret word of their own.

The customer gives a number, a time window, a subject and a secret word; an agent of the callback's queue takes
it from the console ("Call now": one agent wins), is shown the word to read back ("Your secret is ..."), which
proves the call really comes from the company, and marks it done or not answered. The customer's status page
follows each change live and can reschedule (while booked) or cancel.

The word is sealed with the vault, naming the callback, and opened only for the agent calling; it is never
logged, audited or returned to the customer. The status page's token is never stored: only its hash is, and the
server can make it again from the callback's id with a key of its own, so every SMS can carry the page's link.
Logs show at most a number's last four digits.

Imports: ``calls``, ``identity``, ``store``, ``models``; aiohttp's client for the SMS webhook, never
``aiohttp.web``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from calls.access import customer_id as checked_customer_id
from calls.service import CallService
from calls.texts import Catalogue
from identity.directory import HttpClient
from journeys.menus import handed_off_link
from journeys.settings import CallbackSettings
from journeys.signatures import signature_header
from models.engines import is_language_code
from store.base import CALLBACK_OPEN, Agent, Callback, new_call_id, phone_key
from store.errors import Conflict, Forbidden, Invalid, NotFound, Throttled, refuse_unknown
from store.security import token_hash

log = logging.getLogger(__name__)

FIELDS = frozenset({"phone", "window", "subject", "secret", "language", "customer_id", "queue", "from"})
PHONE = re.compile(r"\+[0-9][0-9 ().-]{6,24}")
SLACK = 300.0  # a window may start this many seconds ago: "from now", with clocks that differ a little
DAY = 86400.0
RETRY_DELAY = 0.5  # seconds before the SMS webhook's second try; doubled for each one after


def callback_topic(callback_id: str) -> tuple[str, str]:
    """The Hub topic of one callback's status page (agents' topics are their ids)."""
    return ("callback", callback_id)


def last4(phone: str) -> str:
    """What a log line may show of a number."""
    return "…" + phone_key(phone)[-4:]


@dataclass(frozen=True)
class Booking:
    """A checked request for a callback."""

    phone: str
    window: tuple[float, float]
    subject: str
    secret: str
    language: str
    customer_id: str | None
    queue: str | None = None  # asked for (a menu option's): wins over the likely reason's
    origin: str | None = None  # the menu link that offered the callback (``from``)


class Callbacks:
    def __init__(self, settings: CallbackSettings, calls: CallService, http: HttpClient | None = None) -> None:
        self.settings, self.calls, self.http = settings, calls, http or HttpClient()
        self.store, self.hub, self.vault = calls.store, calls.hub, calls.services.vault
        self.queue = settings.queue or calls.settings.routing.default_queue
        if self.queue not in calls.settings.routing.queues:
            raise ValueError(f"callbacks: no queue {self.queue!r} (queues: {', '.join(calls.settings.routing.queues)})")
        limiters = calls.services.limiters
        self._by_address = limiters("callback-address", settings.per_address, 3600.0, 3600.0)
        self._by_number = limiters("callback-number", settings.per_number, 3600.0, 3600.0)
        self._unknown = limiters("callback-unknown", 20, 60.0, 60.0)  # status-page tokens guessed, per address
        self._token_key = self.vault.derive("callback-status")
        self._sending: dict[str, asyncio.Task] = {}  # each callback's latest SMS: the next one waits for it

    # -- the customer --------------------------------------------------------------------------------------------

    async def book(self, body: dict, who: str) -> tuple[Callback, str]:
        """A new callback and its status page's URL. Every try counts against the address; only bookings count
        against the number (an hourly limiter, and a daily cap kept in the store)."""
        if not await self._by_address.take(who):
            raise Throttled("too many callback requests from this address; try again later", "callback.error_throttled")
        b = self.parse(body)
        key = phone_key(b.phone)
        if self.store.callbacks.count_since(key, self.store.clock() - DAY) >= self.settings.daily_per_number:
            raise Throttled(
                "this number has booked as many callbacks as it may today; try again tomorrow", "callback.error_today"
            )
        if not await self._by_number.take(key):
            raise Throttled(
                "this number has booked several callbacks just now; try again later", "callback.error_number"
            )
        callback_id = new_call_id()
        reason = self.calls.context.of(b.customer_id, b.phone).reason
        queue = b.queue or (reason.queue if reason is not None else self.queue)
        try:
            cb = self.store.callbacks.add(
                token_hash(self._token(callback_id)),
                phone=b.phone,
                customer_id=b.customer_id,
                subject=b.subject,
                language=b.language,
                window_start=b.window[0],
                window_end=b.window[1],
                secret_sealed=self.vault.seal(b.secret.encode(), f"callback:{callback_id}"),
                queue=queue,
                reason=reason.label if reason is not None else None,
                callback_id=callback_id,
                origin=b.origin,
            )
        except ValueError as e:  # this menu booked its callback already
            raise Conflict(str(e)) from None
        detail = {"callback_id": cb.id, "subject": cb.subject}
        self.calls.context.record(b.customer_id, b.phone, "callback.booked", detail, f"callback:{cb.id}")
        origin = f" from={b.origin}" if b.origin else ""
        self.store.audit.add("customer", "callback.book", cb.id, f"queue={queue}{origin}")
        log.info("callback %s booked for %s (queue %s)", cb.id, last4(cb.phone), queue)
        self._changed(cb, "booked")
        return cb, self.status_url(cb.id)

    def parse(self, body: dict) -> Booking:
        """A booking's fields, checked; the refusal names the field."""
        refuse_unknown(body, FIELDS)
        subject = body.get("subject")
        if not isinstance(subject, str) or not 0 < len(subject.strip()) <= 200 or not subject.isprintable():
            raise Invalid("subject: what the call is about, 1-200 printable characters", "callback.error_subject")
        secret = body.get("secret")
        if not isinstance(secret, str) or not 3 <= len(secret.strip()) <= 40 or not secret.isprintable():
            raise Invalid("secret: a word of your own, 3-40 printable characters", "callback.error_secret")
        if secret.strip().casefold() in subject.casefold():
            raise Invalid(
                "secret: choose a word that is not in the subject (agents see the subject)",
                "callback.error_secret_in_subject",
            )
        language = body.get("language", "en")
        if not is_language_code(language) or language == "detect":
            raise Invalid("language: a language code such as 'en' or 'pt'")
        customer = body.get("customer_id")
        return Booking(
            phone=check_phone(body.get("phone")),
            window=self.check_window(body.get("window")),
            subject=subject.strip(),
            secret=secret.strip(),
            language=language.lower(),
            customer_id=checked_customer_id(customer) if customer is not None else None,
            queue=self._check_queue(body["queue"]) if body.get("queue") is not None else None,
            origin=self._check_menu_link(body["from"]) if body.get("from") is not None else None,
        )

    def _check_queue(self, queue: object) -> str:
        queues = self.calls.settings.routing.queues
        if not isinstance(queue, str) or queue not in queues:
            raise Invalid(f"queue: one of the routing's queues ({', '.join(sorted(queues))})")
        return queue

    def _check_menu_link(self, ref: object) -> str:
        """``from``: the menu that handed the customer here, as it signed it; its steps and ID&V go to the agent
        who calls."""
        link_id = handed_off_link(self.vault, ref)
        link = self.store.links.get(link_id) if link_id else None
        if link is None or link.kind != "menu":
            raise Invalid("from: the id of the menu link that offered this callback")
        return link.id

    def check_window(self, window: object) -> tuple[float, float]:
        """``{start, end}`` in epoch seconds or ISO 8601 with a zone: in the future, at least ``min_window`` long,
        ending within ``max_days``."""
        if not isinstance(window, dict) or set(window) != {"start", "end"}:
            raise Invalid("window: {start, end}, each epoch seconds or ISO 8601 with a time zone")
        start, end = when(window["start"], "window.start"), when(window["end"], "window.end")
        now = self.store.clock()
        if start < now - SLACK:
            raise Invalid("window: it must start in the future", "callback.error_window_past")
        if end - start < self.settings.min_window:
            raise Invalid(
                f"window: at least {int(self.settings.min_window // 60)} minutes long", "callback.error_window_short"
            )
        if end > now + self.settings.max_days * DAY:
            raise Invalid(f"window: it must end within {self.settings.max_days} days", "callback.error_window_far")
        return start, end

    async def by_token(self, token: str, who: str) -> Callback:
        """The callback behind a status page's token. Unknown tokens count against the address (guessers)."""
        cb = self.store.callbacks.by_token(token_hash(token)) if 20 <= len(token) <= 64 else None
        if cb is None:
            if not await self._unknown.take(who):
                raise Throttled(
                    "too many unknown callback links from this address; try again in a minute",
                    "callback.error_throttled",
                )
            raise NotFound("no such callback; check the link you were sent", "callback.error_not_found")
        return cb

    async def reschedule(self, token: str, window: object, who: str) -> Callback:
        cb = await self.by_token(token, who)
        start, end = self.check_window(window)
        changed = self.store.callbacks.change(cb.id, "booked", from_states=("booked",), window=(start, end))
        if changed is None:
            raise Conflict(
                f"only a booked callback can be rescheduled (this one: {self._state(cb.id)})", "callback.error_changed"
            )
        self.store.audit.add("customer", "callback.reschedule", cb.id)
        self._changed(changed, "rescheduled")
        return changed

    async def cancel(self, token: str, who: str) -> Callback:
        cb = await self.by_token(token, who)
        changed = self.store.callbacks.change(cb.id, "cancelled", from_states=CALLBACK_OPEN)
        if changed is None:
            raise Conflict(f"this callback is {self._state(cb.id)} already", "callback.error_changed")
        self.store.audit.add("customer", "callback.cancel", cb.id)
        self._changed(changed, "cancelled")
        return changed

    async def subscribe(self, token: str, who: str) -> tuple[Hashable, asyncio.Queue, list[dict]]:
        """A status page's live updates, and what it should show now."""
        cb = await self.by_token(token, who)
        topic = callback_topic(cb.id)
        return topic, self.hub.subscribe(topic), [{"type": "callback", "callback": self.customer_view(cb)}]

    def page_texts(self, wanted: str | None, accept_language: str | None = None) -> dict:
        """The booking and status pages' own words (``callback.*`` of the catalogue), in the customer's language:
        the one a menu handed on, else the browser's, else English."""
        texts = self.calls.services.texts
        language = texts.choose(wanted, accept_language)
        words = {k: v for k, v in texts.texts(language).items() if k.startswith("callback.") and ".sms_" not in k}
        return {"language": language, "texts": words}

    def status_url(self, callback_id: str) -> str:
        return f"{self.calls.settings.public_url.rstrip('/')}/callback/{self._token(callback_id)}"

    def customer_view(self, cb: Callback) -> dict:
        """What the customer's page shows: never the word, and the number only by its last digits."""
        return {
            "id": cb.id,
            "state": cb.state,
            "status": self.calls.services.texts.render(cb.language, f"callback.state_{cb.state}"),
            "subject": cb.subject,
            "language": cb.language,
            "phone": last4(cb.phone),
            "window_start": cb.window_start,
            "window_end": cb.window_end,
            "can_reschedule": cb.state == "booked",
            "can_cancel": cb.state in CALLBACK_OPEN,
        }

    # -- the agents ----------------------------------------------------------------------------------------------

    def open_for(self, agent: Agent) -> list[dict]:
        """The open callbacks of every queue this agent may take, soonest first."""
        found = [cb for queue in self.calls.queues.queues_of(agent) for cb in self.store.callbacks.open(queue)]
        return [self.agent_view(cb) for cb in sorted(found, key=lambda cb: (cb.window_start, cb.created))]

    async def claim(self, agent: Agent, callback_id: str) -> tuple[Callback, str]:
        """Call now: the callback is this agent's (of two at once, one wins; the other is refused), and the
        customer's word is opened for them."""
        if agent.role == "system":
            raise Forbidden("a system account takes no calls")
        cb = self._for_agent(agent, callback_id)
        taken = self.store.callbacks.change(cb.id, "calling", from_states=("booked",), agent_id=agent.id)
        if taken is None:
            now = self.store.callbacks.get(cb.id)
            if now is not None and now.state == "calling":
                raise Conflict(f"{self._agent_name(now.agent_id)} is calling this customer already")
            raise Conflict(f"this callback is {self._state(cb.id)}")
        self.store.audit.add(agent.name, "callback.claim", taken.id, f"attempt {taken.attempts}")
        self._changed(taken, "calling")
        self.hub.publish(agent.id, self.context_view(taken))
        return taken, self.secret(agent, taken.id)

    def secret(self, agent: Agent, callback_id: str) -> str:
        """The customer's word, for the agent calling them only; each view audited (without the word)."""
        cb = self._for_agent(agent, callback_id)
        if cb.state != "calling" or cb.agent_id != agent.id:
            raise Forbidden("only the agent calling the customer sees their secret")
        sealed = self.store.callbacks.secret(cb.id)
        if sealed is None:
            raise NotFound("this callback has no secret")
        word = self.vault.open(sealed, f"callback:{cb.id}").decode()
        self.store.audit.add(agent.name, "callback.secret_view", cb.id)
        return word

    def finish(self, agent: Agent, callback_id: str, answered: bool) -> Callback:
        """Done, or not answered: booked again for another try, until ``attempts`` tries end it as no_answer."""
        cb = self._for_agent(agent, callback_id)
        if cb.state != "calling" or cb.agent_id != agent.id:
            raise Conflict(f"this callback is not yours to finish (it is {cb.state})")
        final = cb.attempts >= self.settings.attempts
        to = "done" if answered else "no_answer" if final else "booked"
        changed = self.store.callbacks.change(cb.id, to, from_states=("calling",))
        if changed is None:
            raise Conflict(f"this callback is {self._state(cb.id)} now")
        if answered:
            self.store.audit.add(agent.name, "callback.done", cb.id)
        else:
            what = f"attempt {cb.attempts} of {self.settings.attempts}" + (", final" if final else "")
            self.store.audit.add(agent.name, "callback.no_answer", cb.id, what)
        self._changed(changed, "retry" if to == "booked" else to)
        return changed

    def agent_view(self, cb: Callback) -> dict:
        return {**cb.to_dict(), "agent": self._agent_name(cb.agent_id) if cb.agent_id else None}

    def context_view(self, cb: Callback) -> dict:
        """What the console greets a taken callback with, as it does a call: the likely reason, recent events."""
        return {"type": "context", "callback_id": cb.id, **self.calls.context_of(cb.customer_id, cb.phone, cb.origin)}

    def _for_agent(self, agent: Agent, callback_id: str) -> Callback:
        cb = self.store.callbacks.get(callback_id)
        if cb is None or not self.calls.queues.may_take(agent, cb.queue):
            raise NotFound("no such callback in your queues")
        return cb

    def _agent_name(self, agent_id: int | None) -> str:
        agent = self.store.agents.get(agent_id) if agent_id is not None else None
        return (agent.display_name or agent.name) if agent is not None else "another agent"

    def _state(self, callback_id: str) -> str:
        cb = self.store.callbacks.get(callback_id)
        return cb.state if cb is not None else "gone"

    # -- telling everyone ----------------------------------------------------------------------------------------

    def _changed(self, cb: Callback, change: str) -> None:
        """The queue's agents' consoles, the status page, and the customer's phone (SMS webhook) hear of it."""
        event = {"type": "callback", "change": change, "callback": self.agent_view(cb)}
        for agent in self.calls.queues.agents_for(cb.queue):
            self.hub.publish(agent.id, event)
        self.hub.publish(
            callback_topic(cb.id), {"type": "callback", "change": change, "callback": self.customer_view(cb)}
        )
        if self.settings.sms_webhook:
            previous = self._sending.get(cb.id)
            task = asyncio.ensure_future(self._notify(cb, change, previous))
            self._sending[cb.id] = task
            task.add_done_callback(lambda t: self._sending.pop(cb.id) if self._sending.get(cb.id) is t else None)

    async def _notify(self, cb: Callback, change: str, previous: asyncio.Task | None) -> None:
        """POST the change, signed, with retries; never raises. Messages of one callback go in order."""
        if previous is not None:
            await asyncio.wait([previous])
        assert self.settings.sms_webhook is not None
        body = json.dumps(
            {
                "callback_id": cb.id,
                "phone": cb.phone,
                "status": cb.state,
                "text": self.sms_text(cb, change),
                "status_url": self.status_url(cb.id),
            }
        ).encode()
        why = "not tried"
        for attempt in range(max(1, self.settings.sms_retries)):
            if attempt:
                await asyncio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
            headers = {"Content-Type": "application/json"}
            if self.settings.sms_secret:
                headers["X-VoxGate-Signature"] = signature_header(self.settings.sms_secret, body)
            try:
                timeout = aiohttp.ClientTimeout(total=self.settings.sms_timeout)
                async with self.http.post(self.settings.sms_webhook, data=body, headers=headers, timeout=timeout) as r:
                    if 200 <= r.status < 300:
                        return
                    why = f"HTTP {r.status}"
            except (TimeoutError, aiohttp.ClientError) as e:
                why = type(e).__name__
        log.warning(
            "callback %s: the SMS webhook failed %d times (%s): %s was not told it is %s",
            cb.id,
            max(1, self.settings.sms_retries),
            why,
            last4(cb.phone),
            cb.state,
        )

    def sms_text(self, cb: Callback, change: str) -> str:
        """The message in the language the customer booked in (English where the catalogue has none)."""
        texts = self.calls.services.texts
        window = span(cb.window_start, cb.window_end, day_namer(texts, cb.language))
        return texts.render(cb.language, f"callback.sms_{change}", company=self.calls.settings.company, window=window)

    def _token(self, callback_id: str) -> str:
        """The status page's token: 256 bits only this server can make for this callback (the store keeps its
        hash), so each message can carry the page's link without the token being kept anywhere."""
        mac = hmac.new(self._token_key, callback_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    async def close(self) -> None:
        """Let the messages in flight finish (each is bounded by its timeout and retries)."""
        if self._sending:
            await asyncio.wait(list(self._sending.values()), timeout=self.settings.sms_timeout)
            for task in list(self._sending.values()):
                task.cancel()


def check_phone(value: object) -> str:
    """An international number (E.164: +, country code, 8-15 digits; spaces, dots, dashes and brackets
    allowed) as ``+DIGITS``."""
    if not isinstance(value, str) or not PHONE.fullmatch(value.strip()) or not 8 <= len(phone_key(value)) - 1 <= 15:
        raise Invalid(
            "phone: an international number with its country code, such as +44 20 7946 0000", "callback.error_phone"
        )
    return phone_key(value.strip())


def when(value: object, name: str) -> float:
    """Epoch seconds, or ISO 8601 with a time zone (a local time without one would be a guess)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str) and len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise Invalid(f"{name}: not ISO 8601 (such as 2026-12-01T14:00:00Z)") from None
        if moment.tzinfo is None:
            raise Invalid(f"{name}: give a time zone (such as 2026-12-01T14:00:00Z or +01:00)")
        return moment.timestamp()
    raise Invalid(f"{name}: epoch seconds or ISO 8601 with a time zone")


def english_day(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b}"


def day_namer(texts: Catalogue, language: str) -> Callable[[datetime], str]:
    """How an SMS names a day in ``language`` (``callback.sms_day`` with the catalogue's short weekday and month
    names): Python's own names are English whatever the language. An operator's list of the wrong length gets
    English rather than a failed message."""
    weekdays = texts.render(language, "callback.sms_weekdays").split()
    months = texts.render(language, "callback.sms_months").split()
    if len(weekdays) != 7 or len(months) != 12:
        return english_day
    return lambda d: texts.render(
        language, "callback.sms_day", weekday=weekdays[d.weekday()], day=d.day, month=months[d.month - 1]
    )


def span(start: float, end: float, day: Callable[[datetime], str] = english_day) -> str:
    """A window as an SMS says it: ``Tue 1 Dec, 14:00-14:30 UTC``, with ``day`` naming its days."""
    a, b = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    until = f"{b:%H:%M}" if a.date() == b.date() else f"{day(b)} {b:%H:%M}"
    return f"{day(a)}, {a:%H:%M}-{until} UTC"
