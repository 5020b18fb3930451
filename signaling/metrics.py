"""Prometheus metrics at ``/metrics``: on the public port for a bearer token, or on a loopback port of their own.

Which it is, is the operator's (``--metrics-token``, ``--metrics-port``): with neither, ``/metrics`` is not
served at all. The metrics say how many calls are live and how fast subtitles are, nothing about whom.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from signaling.health import LOOP_LAG
from signaling.middleware import CALLS, bearer
from store.errors import NotFound, Unauthenticated

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    token = request.app[CALLS].settings.metrics_token
    if token is None:
        raise NotFound("metrics are not served on this port")
    if not hmac.compare_digest((bearer(request) or "").encode(), token.encode()):
        raise Unauthenticated("metrics need Authorization: Bearer <metrics token>")
    return _exposition(request.app)


def install(app: web.Application) -> None:
    """The loop-lag gauge, and the loopback-only metrics port when one is set."""
    calls = app[CALLS]
    calls.services.metrics.gauge(
        "voxgate_event_loop_lag_seconds", "How late the event loop ran, worst of the last 10 s", _lag(app)
    )
    if calls.settings.metrics_port is not None:
        app.cleanup_ctx.append(_metrics_port)


def _lag(app: web.Application):
    return lambda: {"": app[LOOP_LAG].worst()} if LOOP_LAG in app else {}


async def _metrics_port(app: web.Application) -> AsyncIterator[None]:
    """A second listener, on 127.0.0.1 only, that serves nothing but the metrics (for a scraper on this host)."""

    async def serve(_: web.Request) -> web.Response:
        return _exposition(app)

    side = web.Application()
    side.router.add_get("/metrics", serve)
    runner = web.AppRunner(side, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", app[CALLS].settings.metrics_port).start()
    yield
    await runner.cleanup()


def _exposition(app: web.Application) -> web.Response:
    body = app[CALLS].services.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
