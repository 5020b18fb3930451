"""Pay by link at the web edge: the customer's page and result page, the provider's webhooks, the agent's list.

The customer is authenticated by the link token to read the payment and hand off to the provider (under
``/api/join/``, so logs redact the token), and by the key the hand-off returned to read the outcome. Providers are
authenticated by their webhook signatures. What each step does lives in ``journeys.payments.Payments``.
"""

from __future__ import annotations

from aiohttp import web

from journeys.payments import MAX_WEBHOOK, Payments
from signaling.middleware import JOURNEYS, NO_STORE, WEB_DIR, agent_of, client, page_headers
from store.errors import NotFound, TooLarge

routes = web.RouteTableDef()


def _payments(request: web.Request) -> Payments:
    payments = request.app[JOURNEYS].payments
    if payments is None:
        raise NotFound("payments are off on this server (no provider configured)")
    return payments


@routes.get("/api/join/{token}/payment")
async def info(request: web.Request) -> web.Response:
    """What the customer's page shows (amount, who asks, the phrase); reading it marks the link opened."""
    found = await _payments(request).open(
        request.match_info["token"], client(request), request.headers.get("Accept-Language")
    )
    return web.json_response(found, headers=NO_STORE)


@routes.post("/api/join/{token}/payment")
async def start(request: web.Request) -> web.Response:
    """The customer taps Pay: the provider's page URL, and the key to read the outcome with (the link is used)."""
    return web.json_response(await _payments(request).start(request.match_info["token"], client(request)))


@routes.get("/pay/done")
async def done_page(request: web.Request) -> web.FileResponse:
    """Where the provider sends the customer back: the page reads the outcome from the server with its key."""
    return web.FileResponse(WEB_DIR / "pay.html", headers=page_headers())


@routes.get("/api/pay/status")
async def status(request: web.Request) -> web.Response:
    """``?link=ID`` with ``X-Payment-Key``: the outcome as the provider last told it."""
    found = _payments(request).status(request.query.get("link", ""), request.headers.get("X-Payment-Key", ""))
    return web.json_response(found, headers=NO_STORE)


async def _webhook(request: web.Request, source: str) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_WEBHOOK:
        raise TooLarge(f"webhook body larger than {MAX_WEBHOOK} bytes")
    payment = await _payments(request).webhook(source, await request.read(), request.headers)
    return web.json_response({"received": True, "state": payment.state if payment else None})


@routes.post("/webhooks/stripe")
async def stripe_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "stripe")


@routes.post("/webhooks/payments")
async def redirect_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "redirect")


@routes.get("/api/payments")
async def mine(request: web.Request) -> web.Response:
    """The agent's recent payment links and their states (the console's panel, on loading)."""
    agent = agent_of(request)
    return web.json_response(_payments(request).of_agent(agent))


@routes.get("/api/payments/{id}")
async def one(request: web.Request) -> web.Response:
    agent = agent_of(request)
    return web.json_response(_payments(request).for_agent(agent, request.match_info["id"]))
