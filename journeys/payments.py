"""Pay by link: the agent asks for an amount, the customer pays on a provider's hosted page, the agent sees how far.

VoxGate never handles a card: the customer's page hands them to the provider's own page (Stripe Checkout, or any
provider speaking the generic redirect protocol), where the card is typed; the provider tells us the outcome by a
signed webhook. So VoxGate stores and audits amounts and outcomes only, and stays out of PCI DSS scope for card
data (an SAQ A style integration: the whole payment page is the provider's).

A payment's states only move forwards (``store.base.PAYMENT_STATES``): created, opened (the customer opened the
link), handed_off (on the provider's page), details_entered, then succeeded or failed. Webhooks are retried and
reordered by providers: each change is acted on once, later or repeated news about it changes nothing.

A declined card is an attempt, not an outcome: as on Stripe Checkout, the customer may try another card on the same
page, so the payment stays at details_entered and each decline is audited, recorded and shown to the agent. Only the
provider's page closing (expired, a delayed method failing) fails it, or ``max_declines`` declines: then VoxGate
closes the page itself, which is what stops a stolen-card tester from trying card after card.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol
from urllib.parse import urlencode

import aiohttp

from calls.service import CallService, link_options
from identity.directory import HttpClient
from journeys.settings import PaymentSettings
from journeys.signatures import BadSignature, sign, verify_signature
from store.base import PAYMENT_FINAL, Agent, Link, Payment
from store.errors import AtCapacity, Forbidden, Gone, Invalid, NotFound, Refused, TooLarge, refuse_unknown
from store.security import new_token, token_hash

log = logging.getLogger(__name__)

MAX_WEBHOOK = 64 * 1024  # bytes: a provider's event is a few kilobytes
CREATE_FIELDS = {"kind", "amount", "currency", "description", "phone", "customer_ref", "expires_in", "language"}
LINK_KEY = "voxgate_link"  # the metadata key that names our link at the provider
TOO_MANY = "too many declined cards"
# What the agent's console calls each state.
LABELS = {
    "created": "Link sent",
    "opened": "Link opened",
    "handed_off": "On the payment page",
    "details_entered": "Details entered",
    "succeeded": "Success",
    "failed": "Failed",
}


# -- providers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """What a provider's hosted page is asked to take, and where it sends the customer back to."""

    link_id: str
    amount: int  # minor units
    currency: str  # ISO 4217, lower case
    description: str
    return_url: str  # VoxGate's result page (paid)
    cancel_url: str  # VoxGate's result page (left without paying)
    expires_at: int  # unix time after which the provider's page no longer takes the payment


@dataclass(frozen=True)
class HostedSession:
    ref: str  # the provider's id of it
    url: str  # where the customer pays


@dataclass(frozen=True)
class PaymentUpdate:
    """A provider's news, in VoxGate's terms: which payment (its ``ref``, or the ``link_id`` its metadata names),
    the state it reached, and why (never card data)."""

    ref: str | None
    state: str
    detail: str | None = None
    amount: int | None = None
    currency: str | None = None
    link_id: str | None = None
    declined: str | None = None  # a card declined, this code why: an attempt, the customer may try another card
    event: str | None = None  # the provider's id of this news: a retried delivery of a decline counts once


class PaymentProvider(Protocol):
    name: str  # stored with each payment: "stripe", "redirect"
    label: str  # what the customer's button names

    async def create_session(self, order: Order) -> HostedSession: ...
    async def expire(self, ref: str) -> bool:
        """The hosted page stops taking this payment: True once it cannot be paid there (False: it may be paid
        already, or the provider did not answer; its own news will settle it)."""

    def parse_webhook(self, body: bytes, headers: Mapping[str, str], now: float) -> PaymentUpdate | None:
        """Verified and mapped; None for news that changes nothing here. Raises ``BadSignature``."""


class ProviderUnavailable(AtCapacity):
    """The provider refused or did not answer: the customer may try again shortly."""


def _event_json(body: bytes) -> dict:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Invalid("webhook body is not JSON") from None
    if not isinstance(event, dict):
        raise Invalid("webhook body is not a JSON object")
    return event


class StripeCheckout:
    """Stripe Checkout over its REST API (no SDK): a Checkout Session per payment, its events by signed webhook.

    Checkout creates the PaymentIntent only when the customer submits the form (API versions from 2022-08-01):
    ``payment_intent.created`` is the moment their details were entered."""

    name = "stripe"

    def __init__(self, settings: PaymentSettings, http: HttpClient) -> None:
        if not settings.stripe_secret_key or not settings.stripe_webhook_secrets:
            raise ValueError("payments: Stripe needs its secret key and the webhook endpoint's signing secret")
        self._key, self._secrets = settings.stripe_secret_key, tuple(settings.stripe_webhook_secrets)
        self.base = settings.stripe_api_base.rstrip("/")
        self.tolerance = settings.webhook_tolerance
        self.label = settings.provider_name or "Stripe"
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=15.0)

    async def create_session(self, order: Order) -> HostedSession:
        form = {
            "mode": "payment",
            "line_items[0][price_data][currency]": order.currency,
            "line_items[0][price_data][unit_amount]": str(order.amount),
            "line_items[0][price_data][product_data][name]": order.description,
            "line_items[0][quantity]": "1",
            "success_url": order.return_url,
            "cancel_url": order.cancel_url,
            "client_reference_id": order.link_id,
            f"metadata[{LINK_KEY}]": order.link_id,
            f"payment_intent_data[metadata][{LINK_KEY}]": order.link_id,
            "expires_at": str(order.expires_at),
        }
        # Retried after a timeout with the same key, a request that did reach Stripe gives its session, not another.
        key = f"voxgate-{order.link_id}-{new_token(9)}"
        session = await self._post("/v1/checkout/sessions", form, idempotency_key=key, tries=2)
        if not isinstance(session.get("id"), str) or not isinstance(session.get("url"), str):
            raise ProviderUnavailable("the payment provider's answer had no payment page")
        return HostedSession(session["id"], session["url"])

    async def expire(self, ref: str) -> bool:
        try:
            await self._post(f"/v1/checkout/sessions/{ref}/expire", {}, tries=2)
        except Refused as e:  # already completed or expired (Stripe refuses those), or no answer
            log.info("stripe: session %s not expired: %s", ref, e.message)
            return False
        return True

    async def _post(self, path: str, form: dict[str, str], idempotency_key: str | None = None, tries: int = 1) -> dict:
        headers = {"Authorization": f"Bearer {self._key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        for attempt in range(tries):
            try:
                async with self._http.post(self.base + path, data=form, headers=headers, timeout=self._timeout) as r:
                    body, status = await r.json(content_type=None), r.status
                break
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                log.warning("stripe: %s failed (try %d): %s", path, attempt + 1, type(e).__name__)
        else:
            raise ProviderUnavailable("the payment provider did not answer; try again shortly")
        if status >= 400 or not isinstance(body, dict):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            log.warning("stripe: %s refused (%s): %s", path, status, error.get("message") or error.get("type"))
            raise ProviderUnavailable("the payment provider refused the request; try again shortly")
        return body

    def parse_webhook(self, body: bytes, headers: Mapping[str, str], now: float) -> PaymentUpdate | None:
        verify_signature(headers.get("Stripe-Signature"), body, self._secrets, now, self.tolerance)
        event = _event_json(body)
        kind, obj = event.get("type"), (event.get("data") or {}).get("object") or {}
        if not isinstance(obj, dict):
            raise Invalid("webhook event has no object")
        if isinstance(kind, str) and kind.startswith("checkout.session."):
            return _session_update(kind, obj)
        if kind in ("payment_intent.created", "payment_intent.processing", "payment_intent.requires_action"):
            return _intent_update(obj, "details_entered", None)
        if kind == "payment_intent.payment_failed":  # one attempt: Checkout lets the customer try another card
            error = obj.get("last_payment_error") or {}
            why = error.get("decline_code") or error.get("code") or "payment_failed"
            update = _intent_update(obj, "details_entered", None)
            event_id = event.get("id") if isinstance(event.get("id"), str) else None
            return replace(update, declined=decline_code(why), event=event_id) if update else None
        return None


def _session_update(kind: str, session: dict) -> PaymentUpdate | None:
    """A Checkout Session's event: completed (paid now, or later for delayed methods), async outcome, expired."""
    state, detail = None, None
    if kind == "checkout.session.completed":
        paid = session.get("payment_status") in ("paid", "no_payment_required")
        state, detail = ("succeeded", "paid") if paid else ("details_entered", "awaiting a delayed payment method")
    elif kind == "checkout.session.async_payment_succeeded":
        state, detail = "succeeded", "paid (delayed method)"
    elif kind == "checkout.session.async_payment_failed":
        state, detail = "failed", "the delayed payment failed"
    elif kind == "checkout.session.expired":
        state, detail = "failed", "the payment page expired unpaid"
    if state is None:
        return None
    ref = session.get("id")
    if not isinstance(ref, str):
        raise Invalid("checkout session event without an id")
    amount = session.get("amount_total")
    return PaymentUpdate(
        ref,
        state,
        detail,
        amount if isinstance(amount, int) else None,
        session.get("currency"),
        _our_link(session.get("metadata")) or session.get("client_reference_id"),
    )


def _intent_update(intent: dict, state: str, detail: str | None) -> PaymentUpdate | None:
    """A PaymentIntent's event: ours only when Checkout copied our link's id into its metadata."""
    link_id = _our_link(intent.get("metadata"))
    if link_id is None:
        return None  # another integration's payment on the same account
    amount = intent.get("amount")
    return PaymentUpdate(
        None, state, detail, amount if isinstance(amount, int) else None, intent.get("currency"), link_id
    )


def _our_link(metadata: object) -> str | None:
    value = metadata.get(LINK_KEY) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


# The generic protocol's statuses, as payment states.
REDIRECT_STATUSES = {
    "opened": "handed_off",
    "details_entered": "details_entered",
    "declined": "details_entered",  # an attempt: the customer may try another card
    "succeeded": "succeeded",
    "failed": "failed",
}


class RedirectProvider:
    """Any provider's hosted page, by redirect and webhook (README: Pay by link).

    Out: the customer goes to ``redirect_url?reference=…&amount=…&currency=…&description=…&return_url=…&
    cancel_url=…&expires=…&t=…&signature=…``, ``signature`` the HMAC-SHA256 (hex) of ``t.QUERY``, QUERY those
    parameters sorted by name and URL-encoded. In: ``POST /webhooks/payments`` with JSON ``{"reference",
    "status": opened|details_entered|declined|succeeded|failed, "amount", "currency", "reason"?, "attempt"?}``,
    signed in ``X-Signature: t=…,v1=…`` as Stripe signs. ``declined`` is one card refused (``reason``: its code;
    ``attempt``: the provider's id of it, so a retried delivery counts once); ``failed`` is the end."""

    name = "redirect"

    def __init__(self, settings: PaymentSettings, clock=time.time) -> None:
        if not settings.redirect_url or not settings.redirect_secrets:
            raise ValueError("payments: the redirect provider needs its URL and shared secret")
        self.url, self._secrets = settings.redirect_url, tuple(settings.redirect_secrets)
        self.tolerance = settings.webhook_tolerance
        self.label = settings.provider_name or "our payment provider"
        self._clock = clock

    async def create_session(self, order: Order) -> HostedSession:
        ref = f"vgp_{new_token(12)}"
        params = {
            "reference": ref,
            "amount": str(order.amount),
            "currency": order.currency,
            "description": order.description,
            "return_url": order.return_url,
            "cancel_url": order.cancel_url,
            "expires": str(order.expires_at),
        }
        t = int(self._clock())
        query = redirect_query(params)
        signed = urlencode({"t": t, "signature": sign(self._secrets[0], t, query.encode())})
        return HostedSession(ref, f"{self.url}{'&' if '?' in self.url else '?'}{query}&{signed}")

    async def expire(self, ref: str) -> bool:
        """The protocol has no cancel: VoxGate stops here (a payment the provider takes after it is logged to
        reconcile), and the page's own ``expires`` ends it there."""
        return True

    def parse_webhook(self, body: bytes, headers: Mapping[str, str], now: float) -> PaymentUpdate | None:
        verify_signature(headers.get("X-Signature"), body, self._secrets, now, self.tolerance)
        event = _event_json(body)
        ref, status = event.get("reference"), event.get("status")
        if not isinstance(ref, str) or status not in REDIRECT_STATUSES:
            raise Invalid(f"webhook: reference and status ({', '.join(REDIRECT_STATUSES)}) expected")
        amount, currency, reason = event.get("amount"), event.get("currency"), event.get("reason")
        detail = str(reason)[:200] if reason else None
        if isinstance(amount, bool) or not isinstance(amount, int):
            amount = None
        update = PaymentUpdate(ref, REDIRECT_STATUSES[status], detail, amount, currency if amount else None)
        if status != "declined":
            return update
        attempt = event.get("attempt")
        return replace(
            update, detail=None, declined=decline_code(reason), event=str(attempt)[:200] if attempt else None
        )


def decline_code(why: object) -> str:
    """A provider's reason for a decline as a short code (``insufficient_funds``): it is shown, logged and kept."""
    code = re.sub(r"[^a-z0-9_]+", "_", str(why or "").lower()).strip("_")[:64]
    return code or "declined"


def redirect_query(params: Mapping[str, str]) -> str:
    """The redirect's parameters as they are signed: sorted by name, URL-encoded."""
    return urlencode(sorted(params.items()))


def provider_of(settings: PaymentSettings, http: HttpClient) -> PaymentProvider | None:
    if settings.provider == "stripe":
        return StripeCheckout(settings, http)
    if settings.provider == "redirect":
        return RedirectProvider(settings)
    if settings.provider == "none":
        return None
    raise ValueError(f"payments: provider must be stripe, redirect or none, not {settings.provider!r}")


# -- the journey -------------------------------------------------------------------------------------------------


class Payments:
    """Payment links: made by agents, opened and handed off by customers, settled by the provider's webhooks."""

    def __init__(self, settings: PaymentSettings, calls: CallService, provider: PaymentProvider) -> None:
        self.settings, self.calls, self.provider = settings, calls, provider
        self.store, self.hub = calls.store, calls.hub
        self.currencies = tuple(c.lower() for c in settings.currencies)
        self._tasks: set[asyncio.Task] = set()  # work after answering, held until done

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the agent ---------------------------------------------------------------------------------------------

    async def create(self, agent: Agent, body: dict) -> tuple[Link, str, str]:
        """``POST /api/links {"kind": "payment", "amount": 1999, "currency": "gbp", ...}``."""
        refuse_unknown(body, CREATE_FIELDS)
        amount, currency, description = self._order_fields(body)
        detail = {"amount": amount, "currency": currency, "description": description, "provider": self.provider.name}
        link, url, qr = await self.calls.create_link(agent, **link_options(body), kind="payment", detail=detail)
        payment = self.store.payments.add(link.id, provider=self.provider.name, amount=amount, currency=currency)
        self.store.audit.add(agent.name, "payment.create", link.id, _money(payment))
        self._publish(link, payment)
        return link, url, qr

    def _order_fields(self, body: dict) -> tuple[int, str, str]:
        amount, currency = body.get("amount"), body.get("currency")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= self.settings.max_amount:
            raise Invalid(f"amount: a whole number of minor units (pence, cents), 1 to {self.settings.max_amount}")
        if not isinstance(currency, str) or currency.lower() not in self.currencies:
            raise Invalid(f"currency: one of {', '.join(self.currencies)}")
        description = body.get("description") or f"Payment to {self.calls.settings.company}"
        if not isinstance(description, str) or len(description) > 200 or not description.isprintable():
            raise Invalid("description: printable text of at most 200 characters")
        return amount, currency.lower(), description.strip()

    def of_agent(self, agent: Agent) -> dict:
        """The agent's recent payment links and how far each got, and what they may ask (the console, on loading)."""
        links = [link for link in self.store.links.of_agent(agent.id) if link.kind == "payment"]
        return {
            "payments": [self.view(link, p) for link in links if (p := self.store.payments.get(link.id)) is not None],
            "currencies": list(self.currencies),
            "max_amount": self.settings.max_amount,
            "provider": self.provider.label,
        }

    def for_agent(self, agent: Agent, link_id: str) -> dict:
        link = self.calls.link_for_agent(agent, link_id)
        payment = self.store.payments.get(link.id)
        if payment is None:
            raise NotFound("this link asks for no payment")
        return self.view(link, payment)

    # -- the customer ------------------------------------------------------------------------------------------

    async def open(self, token: str, who: str, accept_language: str | None = None) -> dict:
        """What the customer's page shows: who asks, the phrase, the amount; opening it is the ``opened`` step."""
        link = await self._customer_link(token, who)
        info = await self.calls.join_info(token, who, accept_language)  # marks the link opened, tells the console
        payment = self._payment(link)
        if (changed := self.store.payments.advance(link.id, "opened")) is not None:
            self._changed(link, changed)
            payment = changed
        return {
            "company": info["company"],
            "agent": info["agent"],
            "phrase": info["phrase"],
            "expires_in": info["expires_in"],
            "amount": payment.amount,
            "currency": payment.currency,
            "description": (link.detail or {}).get("description", ""),
            "provider": self.provider.label,
        }

    async def start(self, token: str, who: str) -> dict:
        """The customer taps Pay: a hosted session at the provider, the link used up (one device, once), and the
        URL to go to, with a key for this page to read the outcome by."""
        link = await self._customer_link(token, who)
        payment = self._payment(link)
        if payment.state not in ("created", "opened"):
            raise Gone("this payment has been started already", "link.used")
        base = self.calls.settings.public_url.rstrip("/")
        order = Order(
            link.id,
            payment.amount,
            payment.currency,
            (link.detail or {}).get("description") or f"Payment to {self.calls.settings.company}",
            f"{base}/pay/done?link={link.id}",
            f"{base}/pay/done?link={link.id}&left=1",
            int(self.store.clock() + _session_ttl(self.settings.session_ttl)),
        )
        session = await self.provider.create_session(order)  # first: a provider outage does not use the link up
        if not self.store.links.consume(link.id):  # another device won the race, or the link just expired
            await self.provider.expire(session.ref)
            await self.calls.customer_link(token, who)  # the refusal the link's state gives
            raise Gone("this link has been used; each link works once, on one device", "link.used")
        self.store.payments.set_ref(link.id, session.ref)
        key = new_token(16)
        self.store.audit.add("customer", "payment.handoff", link.id, _money(payment, session.ref))
        self._publish_link(link.id)
        if (changed := self.store.payments.advance(link.id, "handed_off")) is not None:
            self._changed(self.store.links.get(link.id), changed, {"key": token_hash(key)})
        else:  # a provider's news overtook the hand-off: the page's key is kept all the same
            self.store.steps.add(link.id, "handed_off", {"key": token_hash(key)})
        return {"url": session.url, "key": key, "link_id": link.id}

    def status(self, link_id: str, key: str) -> dict:
        """The result page's read (``/pay/done``): only with the key the hand-off gave that page."""
        payment = self.store.payments.get(link_id) if isinstance(link_id, str) else None
        if payment is None or not self._holds(link_id, key):
            raise Forbidden("not this payment's page")
        link = self.store.links.get(link_id)
        return {
            "company": self.calls.settings.company,
            "state": payment.state,
            "final": payment.state in PAYMENT_FINAL,
            "amount": payment.amount,
            "currency": payment.currency,
            "description": (link.detail or {}).get("description", "") if link else "",
            "provider": self.provider.label,
        }

    def result_page(self, token: str) -> str | None:
        """Where the customer of a used payment link belongs when they come back to it (Back from the provider's
        page): its result page, once handed off. None: another link, or one not handed off (its refusal stands).
        The page shows the state only to the tab holding the hand-off's key; the URL names the link, not how it went.
        """
        link = self.store.links.by_token(token_hash(token)) if isinstance(token, str) else None
        payment = self.store.payments.get(link.id) if link is not None and link.kind == "payment" else None
        if payment is None or payment.state in ("created", "opened"):
            return None
        return f"/pay/done?link={link.id}"

    def _holds(self, link_id: str, key: str) -> bool:
        if not isinstance(key, str) or not key:
            return False
        digest = token_hash(key)
        steps = self.store.steps.of(link_id)
        return any(s.step == "handed_off" and hmac.compare_digest(s.detail.get("key", ""), digest) for s in steps)

    async def _customer_link(self, token: str, who: str) -> Link:
        link = await self.calls.customer_link(token, who)
        if link.kind != "payment":
            raise NotFound("this link does not ask for a payment")
        return link

    def _payment(self, link: Link) -> Payment:
        payment = self.store.payments.get(link.id)
        if payment is None:
            raise NotFound("this link does not ask for a payment")
        return payment

    # -- the provider ------------------------------------------------------------------------------------------

    async def webhook(self, source: str, body: bytes, headers: Mapping[str, str]) -> Payment | None:
        """A provider's signed news: verified, mapped, applied once. Returns the payment as it now is (None: an
        event that concerns nothing here). Bad signatures are refused (400), unknown payments too (404)."""
        if source != self.provider.name:
            raise NotFound(f"payments here go through {self.provider.name}, not {source}")
        if len(body) > MAX_WEBHOOK:
            raise TooLarge(f"webhook body larger than {MAX_WEBHOOK} bytes")
        try:
            update = self.provider.parse_webhook(body, headers, self.store.clock())
        except BadSignature as e:
            log.warning("payment webhook from %s refused: %s", source, e.message)
            raise
        if update is None:
            return None
        payment = self._payment_of(update)
        if update.amount is not None and (update.amount, (update.currency or "").lower()) != (
            payment.amount,
            payment.currency,
        ):
            log.error("payment %s: the provider reports another amount or currency; ignored", payment.link_id)
            raise Invalid("amount or currency differs from the payment's")
        if update.declined:
            return self._declined(payment, update.declined, update.event)
        detail = update.detail
        if update.state == "failed" and self._declines(payment.link_id) >= self.settings.max_declines:
            detail = TOO_MANY  # the page VoxGate closed after the last decline: say why it closed
        changed = self.store.payments.advance(payment.link_id, update.state, detail)
        if changed is None:
            if update.state == "succeeded" and payment.state == "failed":  # a provider that cannot close its page
                log.error("payment %s succeeded at the provider after it failed here: reconcile", payment.link_id)
                self.store.audit.add("provider", "payment.late_success", payment.link_id, _money(payment, payment.ref))
            return payment  # already there: a retry, or news that arrived late
        self._changed(self.store.links.get(payment.link_id), changed)
        return changed

    def _declined(self, payment: Payment, code: str, event: str | None) -> Payment:
        """One card refused: the customer is still on the provider's page and may try another, so the payment
        stays at details_entered; the agent sees it live. After ``max_declines`` the page is closed."""
        link = self.store.links.get(payment.link_id)
        if link is None or payment.state in PAYMENT_FINAL:
            return payment  # news that arrived after the outcome
        steps = [s for s in self.store.steps.of(link.id) if s.step == "declined"]
        if event and any(s.detail.get("event") == event for s in steps):
            return payment  # a retried delivery: counted once
        if (changed := self.store.payments.advance(link.id, "details_entered")) is not None:
            self._changed(link, changed)
            payment = changed
        self.store.steps.add(link.id, "declined", {"code": code, **({"event": event} if event else {})})
        self.store.audit.add("provider", "payment.declined", link.id, f"{_money(payment, payment.ref)} code={code}")
        self._record_event(
            link, "payment.declined", {"amount": payment.amount, "currency": payment.currency, "code": code}
        )
        log.info(
            "payment %s: a card declined (%s), %d of %d", link.id, code, len(steps) + 1, self.settings.max_declines
        )
        self._publish(link, payment)
        if len(steps) + 1 >= self.settings.max_declines and payment.ref:
            # In the background: the provider waits for this answer, and should not wait on its own API too.
            self._background(self._close_after_declines(link.id, payment.ref))
        return payment

    async def _close_after_declines(self, link_id: str, ref: str) -> None:
        """Enough cards tried: the provider's page is closed, then the payment fails here. When the provider will
        not close it (paid meanwhile, or no answer), its own news settles the payment."""
        if not await self.provider.expire(ref):
            log.warning("payment %s: the provider's page was not closed after %s", link_id, TOO_MANY)
            return
        if (changed := self.store.payments.advance(link_id, "failed", TOO_MANY)) is not None:
            self._changed(self.store.links.get(link_id), changed)

    def _declines(self, link_id: str) -> int:
        return sum(1 for s in self.store.steps.of(link_id) if s.step == "declined")

    def _payment_of(self, update: PaymentUpdate) -> Payment:
        if update.ref:  # a hosted session's news: that session must be this payment's
            payment = self.store.payments.by_ref(self.provider.name, update.ref)
        else:  # a PaymentIntent's: the link its (signed) metadata names
            payment = self.store.payments.get(update.link_id) if update.link_id else None
            payment = payment if payment is not None and payment.provider == self.provider.name else None
        if payment is None:
            log.warning("payment webhook about an unknown payment (ref %s)", update.ref or update.link_id)
            raise NotFound("no such payment")
        return payment

    # -- telling ---------------------------------------------------------------------------------------------

    def _changed(self, link: Link | None, payment: Payment, step: dict | None = None) -> None:
        """A payment moved: a step, the audit for outcomes, a customer event, the link ended, the console told."""
        if link is None:
            return
        self.store.steps.add(
            link.id, payment.state, {**({"detail": payment.detail} if payment.detail else {}), **(step or {})}
        )
        if payment.state in PAYMENT_FINAL:
            self.store.audit.add("provider", f"payment.{payment.state}", link.id, _money(payment, payment.ref))
            self._record_event(
                link, f"payment.{payment.state}", {"amount": payment.amount, "currency": payment.currency}
            )
            if self.store.links.finish(link.id, "ended", f"payment {payment.state}"):
                self._publish_link(link.id)
        log.info("payment %s: %s", link.id, payment.state)
        self._publish(link, payment)

    def _record_event(self, link: Link, kind: str, detail: dict) -> None:
        """For context-aware routing: a customer whose card was just declined and calls is likely calling about it."""
        if not (link.customer_ref or link.phone):
            return
        try:
            self.calls.context.record(
                link.customer_ref, link.phone, kind, {**detail, "link_id": link.id}, f"payment:{link.id}"
            )
        except Invalid as e:
            log.warning("payment %s: no customer event: %s", link.id, e.message)

    def view(self, link: Link, payment: Payment) -> dict:
        """The console's view; ``declined`` (the last decline's code, while the customer may try another card) and
        ``declines`` (how many so far) tell the agent what the provider's page told the customer."""
        steps = self.store.steps.of(link.id)
        declines = [s.detail.get("code", "declined") for s in steps if s.step == "declined"]
        return {
            "type": "payment",
            "link_id": link.id,
            "state": payment.state,
            "label": LABELS[payment.state],
            "final": payment.state in PAYMENT_FINAL,
            "amount": payment.amount,
            "currency": payment.currency,
            "description": (link.detail or {}).get("description", ""),
            "customer_ref": link.customer_ref,
            "provider": payment.provider,
            "ref": payment.ref,
            "detail": payment.detail,
            "updated": payment.updated,
            "steps": [{"state": s.step, "at": s.at} for s in steps if s.step in LABELS],
            "declined": declines[-1] if declines and payment.state == "details_entered" else None,
            "declines": len(declines),
            "max_declines": self.settings.max_declines,
        }

    def _publish(self, link: Link, payment: Payment) -> None:
        self.hub.publish(link.agent_id, self.view(link, payment))

    def _publish_link(self, link_id: str) -> None:
        if (link := self.store.links.get(link_id)) is not None:
            self.hub.publish(link.agent_id, {"type": "link", "link": link.to_dict()})


def _session_ttl(ttl: float) -> float:
    """Stripe takes 30 minutes to 24 hours; a minute's margin either side for the request's way and clock skew."""
    return min(max(ttl, 1800.0) + 60.0, 86400.0 - 60.0)


def _money(payment: Payment, ref: str | None = None) -> str:
    """An audit row's detail: amount, currency and the provider's reference; there is never card data to add."""
    text = f"amount={payment.amount} currency={payment.currency} provider={payment.provider}"
    return f"{text} ref={ref}" if ref else text


def build_payments(settings: PaymentSettings, calls: CallService, http: HttpClient) -> Payments | None:
    """The journey, or None when no provider is configured (``provider = "none"``)."""
    provider = provider_of(settings, http)
    return Payments(settings, calls, provider) if provider is not None else None
