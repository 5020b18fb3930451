"""A local stand-in for a payment provider, for tests and demos: Stripe Checkout's API and the generic redirect one.

It speaks what VoxGate's adapters use, as the real services do: ``POST /v1/checkout/sessions`` (Bearer secret key,
form-encoded parameters with Stripe's bracket nesting, ``Idempotency-Key``, Stripe's limits on ``expires_at``),
``POST /v1/checkout/sessions/{id}/expire``, a hosted page at its own origin where a card is typed, and events
POSTed to the merchant's webhook signed as Stripe signs them (``Stripe-Signature: t=…,v1=…``). The generic
protocol: a signed redirect in, a card form, signed JSON webhooks out. Stripe's test cards decide the outcome:
4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined. As on Stripe's page, a declined card is an attempt: the
page says so and takes another card until the session is paid or expired (``payment_intent.payment_failed`` per
decline; the generic protocol's ``declined``). A number that is neither is refused on the page itself, as Stripe's
form checks numbers before sending them. Each page has a back link to the merchant's ``cancel_url``. Card numbers
stay in this process (as they stay at the real provider): nothing here logs or sends them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

PAID, DECLINED = "4242424242424242", "4000000000000002"
_BRACKETS = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")


def sign(secret: str, timestamp: int, payload: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def unflatten(form: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding to nested objects: ``a[0][b]=1`` is ``{"a": [{"b": "1"}]}`` (numeric keys: lists)."""
    root: dict = {}
    for key, value in form:
        parts = [m.group(1) or m.group(2) for m in _BRACKETS.finditer(key)]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> web.Response:
    error = {"type": kind, "message": message, **({"param": param} if param else {})}
    return web.json_response({"error": error}, status=status)


@dataclass
class Delivery:
    """One webhook sent: its event type, the merchant's answer."""

    url: str
    type: str
    status: int
    body: bytes


@dataclass
class PaymentStandIn:
    """The provider, on a port of its own: ``base`` once started. ``webhook_url``: where Stripe events go;
    ``redirect_webhook_url``: where the generic protocol's go."""

    secret_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(12))
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_hex(16))
    redirect_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    webhook_url: str | None = None
    redirect_webhook_url: str | None = None
    extra_signing_secrets: list[str] = field(default_factory=list)  # rolling a secret: several v1 values
    sessions: dict[str, dict] = field(default_factory=dict)
    redirects: dict[str, dict] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)  # each create request's headers (no key) and parameters
    deliveries: list[Delivery] = field(default_factory=list)
    base: str = ""

    def __post_init__(self) -> None:
        self._idempotent: dict[str, tuple[dict, dict]] = {}
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()  # events sent after answering (an expiry's)

    # -- life --------------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self.create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self.get_session)
        app.router.add_post("/v1/checkout/sessions/{id}/expire", self.expire_session)
        app.router.add_get("/c/pay/{id}", self.checkout_page)
        app.router.add_post("/c/pay/{id}", self.checkout_submit)
        app.router.add_get("/redirect/pay", self.redirect_page)
        app.router.add_post("/redirect/pay", self.redirect_submit)
        return app

    async def start(self) -> PaymentStandIn:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self._http = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- Stripe's API ------------------------------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {self.secret_key}")

    async def create_session(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Invalid API Key provided")
        form = parse_qsl(await request.text(), keep_blank_values=True)
        params = unflatten(form)
        key = request.headers.get("Idempotency-Key")
        self.requests.append({"idempotency_key": key, "form": dict(form)})
        if key and key in self._idempotent:
            earlier, session = self._idempotent[key]
            if earlier != params:
                return _error(
                    400, "Keys for idempotent requests can only be used with the same parameters", "idempotency_error"
                )
            return web.json_response(session)
        problem = _check(params)
        if problem:
            return _error(400, problem[1], param=problem[0])
        session = self._new_session(params)
        if key:
            self._idempotent[key] = (params, session)
        return web.json_response(session)

    def _new_session(self, params: dict) -> dict:
        item = params["line_items"][0]
        price = item["price_data"]
        session_id = "cs_test_" + secrets.token_hex(16)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": int(price["unit_amount"]) * int(item.get("quantity", "1")),
            "currency": price["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "payment_intent": None,
            "success_url": params["success_url"],
            "cancel_url": params["cancel_url"],
            "expires_at": int(params["expires_at"]) if "expires_at" in params else int(time.time()) + 86400,
            "url": f"{self.base}/c/pay/{session_id}",
            "livemode": False,
        }
        session["_intent_metadata"] = params.get("payment_intent_data", {}).get("metadata", {})
        session["_name"] = price["product_data"]["name"]
        self.sessions[session_id] = session
        return _public(session)

    async def get_session(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Invalid API Key provided")
        session = self.sessions.get(request.match_info["id"])
        return web.json_response(_public(session)) if session else _error(404, "No such checkout.session")

    async def expire_session(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Invalid API Key provided")
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "No such checkout.session")
        if session["status"] != "open":
            return _error(
                400, f"Only Checkout Sessions with a status of open can be expired (it is {session['status']})"
            )
        session["status"] = "expired"
        task = asyncio.get_running_loop().create_task(self._stripe_event("checkout.session.expired", _public(session)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(_public(session))

    # -- Stripe's hosted page ----------------------------------------------------------------------------------

    async def checkout_page(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _page("Not found", "<p>No such payment page.</p>", 404)
        return self._checkout_form(session, request.path)

    def _checkout_form(self, session: dict, action: str, error: str | None = None) -> web.Response:
        if session["status"] != "open":
            return _page("Payment page closed", f"<p>This payment page has {session['status']}.</p>", 410)
        money = f"{session['currency'].upper()} {session['amount_total'] / 100:.2f}"
        form = _card_form(action, money, html.escape(session["_name"]), session["cancel_url"], error)
        return _page("Pay (stand-in Stripe Checkout)", form)

    async def checkout_submit(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None or session["status"] != "open":
            return _page("Payment page closed", "<p>This payment page can no longer take a payment.</p>", 410)
        card = "".join(c for c in (await request.post()).get("card", "") if c.isdigit())  # type: ignore[union-attr]
        if card not in (PAID, DECLINED):  # checked on Stripe's page before anything is sent
            return self._checkout_form(session, request.path, "Your card number is incorrect.")
        intent = session.get("_intent")
        if intent is None:  # Checkout makes one PaymentIntent, on the first submission, and reuses it
            intent = session["_intent"] = {
                "id": "pi_test_" + secrets.token_hex(12),
                "object": "payment_intent",
                "amount": session["amount_total"],
                "currency": session["currency"],
                "metadata": session["_intent_metadata"],
                "status": "processing",
                "last_payment_error": None,
            }
            session["payment_intent"] = intent["id"]
            await self._stripe_event("payment_intent.created", intent)
        if card == PAID:
            intent.update(status="succeeded", last_payment_error=None)
            session.update(status="complete", payment_status="paid")
            await self._stripe_event("checkout.session.completed", _public(session))
            raise web.HTTPSeeOther(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]))
        error = {"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."}
        intent.update(status="requires_payment_method", last_payment_error=error)
        await self._stripe_event("payment_intent.payment_failed", intent)
        return self._checkout_form(session, request.path, f"{error['message']} Try another card.")

    async def _stripe_event(self, kind: str, obj: dict) -> None:
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": kind,
            "livemode": False,
            "data": {"object": obj},
        }
        body = json.dumps(event).encode()
        t = int(time.time())
        signatures = ",".join(f"v1={sign(s, t, body)}" for s in [self.webhook_secret, *self.extra_signing_secrets])
        await self._deliver(self.webhook_url, kind, body, {"Stripe-Signature": f"t={t},{signatures}"})

    # -- the generic redirect protocol -------------------------------------------------------------------------

    async def redirect_page(self, request: web.Request) -> web.Response:
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        t, signature = params.pop("t", ""), params.pop("signature", "")
        query = urlencode(sorted(params.items()))
        if not t.isdigit() or abs(time.time() - int(t)) > 600:
            return _page("Refused", "<p>This payment request is stale.</p>", 400)
        if not hmac.compare_digest(signature, sign(self.redirect_secret, int(t), query.encode())):
            return _page("Refused", "<p>This payment request is not signed by the merchant.</p>", 400)
        ref = params["reference"]
        known = self.redirects.setdefault(ref, {**params, "status": "open"})
        if known["status"] != "open":
            return _page("Payment page closed", "<p>This payment has been made already.</p>", 410)
        await self._redirect_event(known, "opened")
        return _redirect_form(known)

    async def redirect_submit(self, request: web.Request) -> web.Response:
        payment = self.redirects.get(request.query.get("reference", ""))
        if payment is None or payment["status"] != "open":
            return _page("Payment page closed", "<p>This payment can no longer be made.</p>", 410)
        card = "".join(c for c in (await request.post()).get("card", "") if c.isdigit())  # type: ignore[union-attr]
        if card not in (PAID, DECLINED):
            return _redirect_form(payment, "Your card number is incorrect.")
        await self._redirect_event(payment, "details_entered")
        if card == PAID:
            payment["status"] = "succeeded"
            await self._redirect_event(payment, "succeeded")
            raise web.HTTPSeeOther(payment["return_url"])
        attempt = "att_" + secrets.token_hex(8)
        await self._redirect_event(payment, "declined", "card_declined", attempt)
        return _redirect_form(payment, "Your card was declined. Try another card.")

    async def _redirect_event(
        self, payment: dict, status: str, reason: str | None = None, attempt: str | None = None
    ) -> None:
        event = {"reference": payment["reference"], "status": status, "amount": int(payment["amount"])}
        event["currency"] = payment["currency"]
        if reason:
            event["reason"] = reason
        if attempt:
            event["attempt"] = attempt
        body = json.dumps(event).encode()
        t = int(time.time())
        await self._deliver(
            self.redirect_webhook_url, status, body, {"X-Signature": f"t={t},v1={sign(self.redirect_secret, t, body)}"}
        )

    async def _deliver(self, url: str | None, kind: str, body: bytes, headers: dict[str, str]) -> None:
        """Posted before the customer is sent back, so a test sees the merchant's state settled (the real services
        deliver in the background, and retry on failure: the merchant must not depend on the order)."""
        if url is None or self._http is None:
            return
        headers = {"Content-Type": "application/json", **headers}
        async with self._http.post(url, data=body, headers=headers) as r:
            self.deliveries.append(Delivery(url, kind, r.status, body))


def _check(params: dict) -> tuple[str, str] | None:
    """Stripe's own refusals for what VoxGate sends: the parameter at fault and why."""
    if params.get("mode") != "payment":
        return "mode", "mode must be payment"
    for name in ("success_url", "cancel_url"):
        if not params.get(name, "").startswith(("http://", "https://")):
            return name, f"Not a valid URL: {name}"
    items = params.get("line_items")
    if not isinstance(items, list) or len(items) != 1:
        return "line_items", "line_items: one item expected"
    price = items[0].get("price_data", {})
    if not price.get("currency") or not price.get("product_data", {}).get("name"):
        return "line_items[0][price_data]", "currency and product_data[name] are required"
    if not str(price.get("unit_amount", "")).isdigit() or int(price["unit_amount"]) <= 0:
        return "line_items[0][price_data][unit_amount]", "unit_amount must be a positive integer"
    if "expires_at" in params:
        if not params["expires_at"].isdigit():
            return "expires_at", "expires_at must be a unix timestamp"
        ahead = int(params["expires_at"]) - time.time()
        if not 1800 - 10 <= ahead <= 86400:
            return "expires_at", "The `expires_at` timestamp must be between 30 minutes and 24 hours from now"
    return None


def _public(session: dict) -> dict:
    return {k: v for k, v in session.items() if not k.startswith("_")}


def _redirect_form(payment: dict, error: str | None = None) -> web.Response:
    money = f"{payment['currency'].upper()} {int(payment['amount']) / 100:.2f}"
    action = f"/redirect/pay?reference={payment['reference']}"
    what = html.escape(payment.get("description", ""))
    return _page("Pay (stand-in provider)", _card_form(action, money, what, payment["cancel_url"], error))


def _card_form(action: str, money: str, what: str, cancel_url: str, error: str | None = None) -> str:
    """The card form; after a decline, with the error above it (the customer tries another card); a back link that
    leaves without paying, to the merchant's ``cancel_url``."""
    alert = f'<p role="alert" id="error" class="error">{html.escape(error)}</p>' if error else ""
    return f"""<p><a id="cancel" href="{html.escape(cancel_url)}">&larr; Back</a></p>{alert}
<p class="amount" id="amount">{money}</p><p>{what}</p>
<form method="post" action="{html.escape(action)}">
<label>Card number <input id="card" name="card" inputmode="numeric" autocomplete="cc-number" required></label>
<label>Expiry <input id="expiry" name="expiry" placeholder="MM / YY" required></label>
<label>CVC <input id="cvc" name="cvc" inputmode="numeric" required></label>
<button id="pay" type="submit">Pay {money}</button></form>"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>*{{box-sizing:border-box}}body{{font-family:system-ui;max-width:28rem;margin:1rem auto;padding:0 1rem}}
label{{display:block;margin:.6rem 0}}
input{{display:block;width:100%;font-size:1.1rem;padding:.4rem}}button{{font-size:1.2rem;padding:.7rem;width:100%}}
.amount{{font-size:1.6rem;font-weight:bold}}.error{{color:#b00020}}</style></head>
<body><h1>{html.escape(title)}</h1>{body}</body></html>"""
    return web.Response(text=page, status=status, content_type="text/html")
