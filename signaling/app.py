"""The aiohttp application factory: routes, middleware, static files and the server's lifecycle.

Handlers stay thin (one module per resource: ``agents``, ``calls``,
``customers``, ``voiceprints``, ``sockets``, and one per phone ingress:
``audiohook``, ``twilio``, ``whip``); what they do lives in
``calls.CallService`` and ``identity.VoiceId``, built by the composition root
(the CLI) and handed in here.

Agents authenticate with a browser session (HttpOnly, SameSite=Strict cookie;
state-changing requests carry the session's CSRF token in ``X-CSRF-Token``) or
with their API token (``Authorization: Bearer``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import WSCloseCode, web

from calls.service import CallService
from identity.voiceid import VoiceId
from journeys import Journeys
from signaling import (
    agents,
    audiohook,
    callbacks,
    calls,
    customers,
    health,
    menus,
    metrics,
    payments,
    sockets,
    twilio,
    voiceprints,
    whip,
)
from signaling.middleware import (
    CALLS,
    JOURNEYS,
    MAX_BODY,
    SECURE_COOKIES,
    SOCKETS,
    VOICE_ID,
    WEB_DIR,
    auth_middleware,
    common_headers,
    errors_middleware,
    page_headers,
)
from signaling.routing import close_client, routing_middleware

STATIC_TYPES = (".js", ".css", ".svg", ".png", ".ico", ".woff2")  # never the package's own .py files


def create_app(
    service: CallService,
    voice_id: VoiceId | None = None,
    journeys: Journeys | None = None,
    *,
    secure_cookies: bool | None = None,
    on_cleanup: Callable[[], Awaitable[None]] | None = None,
) -> web.Application:
    """``on_cleanup`` releases what the composition root built (store, threads, HTTP client) after the last request."""
    middlewares = [errors_middleware, routing_middleware, auth_middleware]
    app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
    app[CALLS] = service
    app[VOICE_ID] = voice_id
    app[JOURNEYS] = journeys or Journeys()
    public_https = service.settings.public_url.startswith("https")
    app[SECURE_COOKIES] = public_https if secure_cookies is None else secure_cookies
    app[SOCKETS] = set()
    modules = (
        agents,
        calls,
        customers,
        voiceprints,
        sockets,
        audiohook,
        twilio,
        whip,
        health,
        metrics,
        menus,
        callbacks,
        payments,
    )
    for module in modules:
        app.router.add_routes(module.routes)
    health.install(app)
    metrics.install(app)
    app.router.add_routes(pages)
    app.on_response_prepare.append(common_headers)

    async def lifecycle(app: web.Application):
        await service.start()
        sweeper = asyncio.get_running_loop().create_task(service.sweep_expired())
        yield
        sweeper.cancel()
        await service.close()
        await close_client(app)
        if on_cleanup is not None:
            await on_cleanup()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(_shutdown)
    return app


async def _shutdown(app: web.Application) -> None:
    """Before aiohttp waits for open requests: end menus and live calls (the journeys first: their claims go
    before the cluster does) and close sockets, so nothing holds the exit."""
    await app[JOURNEYS].close()
    await app[CALLS].close()
    for ws in list(app[SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


pages = web.RouteTableDef()


@pages.get("/")
async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console")


@pages.get("/console")
async def console(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "console.html", headers=page_headers())


@pages.get("/favicon.ico")
async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "favicon.ico", headers={"Cache-Control": "max-age=86400"})


@pages.get("/static/{name}")
async def static(request: web.Request) -> web.FileResponse:
    """The pages' scripts, styles and images: one folder, known file types only."""
    path = WEB_DIR / request.match_info["name"]
    if not path.name.endswith(STATIC_TYPES) or path.parent != WEB_DIR or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)
