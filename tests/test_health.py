"""The health endpoints, on the real server: what a load balancer or orchestrator sees, without signing in."""

from __future__ import annotations

import asyncio
import time

from tests.server import TestServer


async def get(http, server: TestServer, path: str, **kwargs) -> tuple[int, dict, dict]:
    async with http.get(server.base + path, **kwargs) as r:
        return r.status, dict(r.headers), await r.json()


async def test_healthz_answers_without_auth_and_is_not_cached(server, http):
    status, headers, body = await get(http, server, "/healthz")
    assert (status, body) == (200, {"status": "ok"})
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].startswith("application/json")


async def test_a_fresh_video_only_server_is_ready(server, http):
    status, headers, body = await get(http, server, "/readyz")
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert body["status"] == "ready"
    checks = body["checks"]
    assert checks["store"] == {"ok": True}
    assert checks["engines"] == {"ok": True, "loaded": False}
    assert checks["capacity"] == {"ok": True, "live": 0, "max": 20}
    loop = checks["event_loop"]
    assert loop["ok"] is True
    assert isinstance(loop["lag_s"], float) and 0 <= loop["lag_s"] < 1.0
    assert isinstance(loop["max_lag_s"], float) and loop["lag_s"] <= loop["max_lag_s"] < 1.0


async def test_a_signed_in_agent_sees_the_same(server, http):
    """The auth middleware resolves an agent if one is sent; the probes neither need nor refuse one."""
    headers = {"Authorization": f"Bearer {server.api_token}"}
    assert (await get(http, server, "/healthz", headers=headers))[0] == 200
    assert (await get(http, server, "/readyz", headers=headers))[0] == 200


async def test_probes_are_not_rate_limited(server, http):
    statuses = await asyncio.gather(*(get(http, server, "/readyz") for _ in range(50)))
    assert {status for status, _, _ in statuses} == {200}


async def test_unready_when_the_store_cannot_be_reached(tmp_path, http):
    server = await TestServer(tmp_path / "data").start()
    try:
        server.store.close()
        status, headers, body = await get(http, server, "/readyz")
        assert status == 503, body
        assert headers["Cache-Control"] == "no-store"
        assert body["status"] == "unready"
        # The error's class only: never a message that could carry the database's path.
        assert body["checks"]["store"] == {"ok": False, "error": "ProgrammingError"}
        assert str(tmp_path) not in str(body)
        assert body["checks"]["capacity"]["ok"] is True
        # Alive all the same: an orchestrator must not restart a node whose database is away.
        status, _, body = await get(http, server, "/healthz")
        assert (status, body) == (200, {"status": "ok"})
    finally:
        await server.stop()  # shutdown closes the store again: that must not raise


async def test_unready_at_the_call_limit(tmp_path, http):
    server = await TestServer(tmp_path / "data", max_calls=0).start()
    try:
        status, _, body = await get(http, server, "/readyz")
        assert status == 503, body
        assert body["status"] == "unready"
        assert body["checks"]["capacity"] == {"ok": False, "live": 0, "max": 0}
        assert body["checks"]["store"]["ok"] is True
    finally:
        await server.stop()


async def test_unready_when_live_calls_fill_the_server(tmp_path, http):
    """Counted as calls are admitted (before their media), the same count that refuses the next offer."""
    server = await TestServer(tmp_path / "data", max_calls=2).start()
    try:
        slots = [server.calls.slots.take(1), server.calls.slots.take(2)]
        status, _, body = await get(http, server, "/readyz")
        assert status == 503 and body["checks"]["capacity"] == {"ok": False, "live": 2, "max": 2}
        slots[0].release()
        status, _, body = await get(http, server, "/readyz")
        assert status == 200 and body["checks"]["capacity"] == {"ok": True, "live": 1, "max": 2}
    finally:
        await server.stop()


async def test_a_stalled_event_loop_is_reported(server, http):
    """A stall (blocking work on the loop) shows for a while after it ends, not only while it lasts."""
    time.sleep(1.5)  # blocks the loop the server runs on, as a careless handler would
    status, _, body = await get(http, server, "/readyz")
    loop = body["checks"]["event_loop"]
    assert status == 503, body
    assert loop["ok"] is False and loop["max_lag_s"] >= 1.0
    assert isinstance(loop["lag_s"], float)
