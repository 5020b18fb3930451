"""Callbacks (``journeys.callbacks``): booked by a customer's page or an app, followed on a status page, taken by
agents in the console.

The booking and the status page are public: the page's token (in its URL) is the customer's only credential.
Agents act with their session or API token, as everywhere.
"""

from __future__ import annotations

from aiohttp import web

from journeys.callbacks import Callbacks
from signaling.middleware import (
    CALLS,
    JOURNEYS,
    NO_STORE,
    WEB_DIR,
    agent_of,
    check_origin,
    client,
    json_body,
    page_headers,
)
from signaling.sockets import stream
from store.errors import NotFound

routes = web.RouteTableDef()


def service(request: web.Request) -> Callbacks:
    callbacks = request.app[JOURNEYS].callbacks
    if callbacks is None:
        raise NotFound("callbacks are off on this server")
    return callbacks


def _page() -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "callback.html", headers=page_headers())


@routes.get("/callback")
async def booking_page(request: web.Request) -> web.FileResponse:
    service(request)
    return _page()


@routes.get("/callback/{token}")
async def status_page(request: web.Request) -> web.FileResponse:
    """The same page: its script reads the token from the URL, and the status from the API."""
    service(request)
    return _page()


# -- the customer, or their bank's app -------------------------------------------------------------------------------


@routes.post("/api/callbacks")
async def book(request: web.Request) -> web.Response:
    callbacks = service(request)
    cb, url = await callbacks.book(await json_body(request), client(request))
    return web.json_response({"callback": callbacks.customer_view(cb), "status_url": url}, status=201)


@routes.get("/api/callbacks/texts")
async def texts(request: web.Request) -> web.Response:
    """The pages' words in ``?language=`` (a menu's hand-off gives it), else the browser's language."""
    words = service(request).page_texts(request.query.get("language"), request.headers.get("Accept-Language"))
    return web.json_response(words)


@routes.get("/api/callback/{token}")
async def status(request: web.Request) -> web.Response:
    callbacks = service(request)
    cb = await callbacks.by_token(request.match_info["token"], client(request))
    return web.json_response({"callback": callbacks.customer_view(cb)}, headers=NO_STORE)


@routes.post("/api/callback/{token}/reschedule")
async def reschedule(request: web.Request) -> web.Response:
    callbacks, body = service(request), await json_body(request)
    cb = await callbacks.reschedule(request.match_info["token"], body.get("window"), client(request))
    return web.json_response({"callback": callbacks.customer_view(cb)})


@routes.post("/api/callback/{token}/cancel")
async def cancel(request: web.Request) -> web.Response:
    callbacks = service(request)
    cb = await callbacks.cancel(request.match_info["token"], client(request))
    return web.json_response({"callback": callbacks.customer_view(cb)})


@routes.get("/api/callback/{token}/ws")
async def events(request: web.Request) -> web.WebSocketResponse:
    """The status page's live changes: the callback as it is now, then each change."""
    check_origin(request)
    topic, queue, now = await service(request).subscribe(request.match_info["token"], client(request))
    return await stream(request, topic, queue, now)


# -- agents ----------------------------------------------------------------------------------------------------------


@routes.get("/api/callbacks")
async def queue(request: web.Request) -> web.Response:
    """The open callbacks of the queues the agent may take, soonest first."""
    return web.json_response({"callbacks": service(request).open_for(agent_of(request))})


@routes.post("/api/callbacks/{id}/claim")
async def claim(request: web.Request) -> web.Response:
    """Call now: 409 when another agent took it first. The answer carries the customer's secret word."""
    callbacks = service(request)
    cb, word = await callbacks.claim(agent_of(request), request.match_info["id"])
    return web.json_response(_with_secret(callbacks, cb, word), headers=NO_STORE)


@routes.get("/api/callbacks/{id}/secret")
async def secret(request: web.Request) -> web.Response:
    """The word again, for the agent calling (a console that reloaded)."""
    callbacks, agent = service(request), agent_of(request)
    word = callbacks.secret(agent, request.match_info["id"])
    cb = request.app[CALLS].store.callbacks.get(request.match_info["id"])
    return web.json_response(_with_secret(callbacks, cb, word), headers=NO_STORE)


@routes.post("/api/callbacks/{id}/done")
async def done(request: web.Request) -> web.Response:
    callbacks = service(request)
    cb = callbacks.finish(agent_of(request), request.match_info["id"], answered=True)
    return web.json_response({"callback": callbacks.agent_view(cb)})


@routes.post("/api/callbacks/{id}/no-answer")
async def no_answer(request: web.Request) -> web.Response:
    callbacks = service(request)
    cb = callbacks.finish(agent_of(request), request.match_info["id"], answered=False)
    return web.json_response({"callback": callbacks.agent_view(cb)})


def _with_secret(callbacks: Callbacks, cb, word: str) -> dict:
    return {"callback": callbacks.agent_view(cb), "secret": word, "read_back": f"Your secret is {word}"}
