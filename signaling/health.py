"""Health endpoints for a load balancer or orchestrator: is the process alive, and should it get new calls?

``/healthz`` only proves the process answers (restart it when it does not); ``/readyz`` says whether new calls
should be sent here (take it out of rotation, not restart it, when it does not). Both are public and cheap: they
need no agent, touch the store only with one trivial query, and are never cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

from aiohttp import web

from signaling.middleware import CALLS, NO_STORE

log = logging.getLogger(__name__)

MAX_LAG = 1.0  # seconds: a loop this late is stalling every call's media and sockets


class LoopLag:
    """How late the event loop runs: a ticker sleeps ``interval`` and measures how late it woke up.

    A lag that happened a few seconds ago matters too (a probe that arrives just after a stall would miss it), so
    the worst lag of the last ``window`` seconds is kept beside the latest.
    """

    def __init__(self, interval: float = 0.25, window: float = 10.0) -> None:
        self.interval, self.window = interval, window
        self._lags: deque[tuple[float, float]] = deque()  # (when, lag), oldest first
        self._due: float | None = None  # when the ticker should wake next
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def last(self) -> float:
        """The latest lag; a wake-up overdue right now counts, so a starved ticker cannot look fine."""
        latest = self._lags[-1][1] if self._lags else 0.0
        overdue = time.monotonic() - self._due if self._due is not None else 0.0
        return max(latest, overdue, 0.0)

    def worst(self) -> float:
        """The worst lag of the last ``window`` seconds, the current one included."""
        return max([lag for _, lag in self._lags] + [self.last()])

    async def _tick(self) -> None:
        while True:
            self._due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            self._record(time.monotonic())

    def _record(self, now: float) -> None:
        self._lags.append((now, max(0.0, now - (self._due or now))))
        while self._lags and self._lags[0][0] < now - self.window:
            self._lags.popleft()


LOOP_LAG = web.AppKey("loop_lag", LoopLag)


def install(app: web.Application) -> None:
    """Run the loop-lag ticker while the app runs (``/readyz`` reads it)."""
    app[LOOP_LAG] = LoopLag()

    async def ticker(app: web.Application) -> AsyncIterator[None]:
        app[LOOP_LAG].start()
        yield
        await app[LOOP_LAG].stop()

    app.cleanup_ctx.append(ticker)


routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: answering at all is the check (no store, no auth), so a slow database never gets us restarted."""
    return web.json_response({"status": "ok"}, headers=NO_STORE)


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: 503 while any check fails, so the balancer sends new calls elsewhere."""
    checks = {
        "store": store_check(request.app),
        "engines": engines_check(request.app),
        "event_loop": loop_check(request.app),
        "capacity": capacity_check(request.app),
    }
    if request.app[CALLS].cluster is not None:
        checks["cluster"] = await cluster_check(request.app)
    ready = all(check["ok"] for check in checks.values())
    body = {"status": "ready" if ready else "unready", "checks": checks}
    return web.json_response(body, status=200 if ready else 503, headers=NO_STORE)


def store_check(app: web.Application) -> dict:
    """The error's class name only: its message may name a file or a connection string."""
    try:
        app[CALLS].store.ping()
    except Exception as e:
        log.warning("readiness: the store did not answer (%s)", type(e).__name__)
        return {"ok": False, "error": type(e).__name__}
    return {"ok": True}


async def cluster_check(app: web.Application) -> dict:
    """Several nodes: Redis carries the events, the limits and the calls' owners; without it, no new calls here."""
    cluster = app[CALLS].cluster
    try:
        await asyncio.wait_for(cluster.ping(), 2.0)
    except Exception as e:
        log.warning("readiness: Redis did not answer (%s)", type(e).__name__)
        return {"ok": False, "node": cluster.node_id, "error": type(e).__name__}
    return {"ok": True, "node": cluster.node_id}


def engines_check(app: web.Application) -> dict:
    """A video-only server (started without engines) needs none; one started with them needs a recogniser that
    knows at least one language (they are loaded and warmed up before the server starts, never lazily)."""
    engines = app[CALLS].engines
    if engines is None:
        return {"ok": True, "loaded": False}
    languages = len(engines.asr.languages())
    return {"ok": languages > 0, "loaded": True, "languages": languages}


def loop_check(app: web.Application) -> dict:
    lag = app.get(LOOP_LAG)
    if lag is None or not lag.running:
        return {"ok": False, "error": "the loop-lag ticker is not running"}
    worst = lag.worst()
    return {"ok": worst < MAX_LAG, "lag_s": round(lag.last(), 4), "max_lag_s": round(worst, 4)}


def capacity_check(app: web.Application) -> dict:
    """Full when live calls reach the server's limit: a new call here would be refused (503) anyway."""
    calls = app[CALLS]
    live, limit = calls.slots.held(), calls.settings.max_calls
    return {"ok": live < limit, "live": live, "max": limit}
