"""WebSockets: the console's event stream, and each customer page's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable

from aiohttp import WSMsgType, web

from signaling.middleware import CALLS, SOCKETS, agent_of

routes = web.RouteTableDef()


@routes.get("/api/ws")
async def console_events(request: web.Request) -> web.WebSocketResponse:
    """The console's event stream: link states, stills, subtitles, ID&V and voice ID, as they happen."""
    agent = agent_of(request)
    calls = request.app[CALLS]
    links = calls.store.links.of_agent(agent.id)
    idv = {link.id: record for link in links if (record := calls.store.idv.get(link.id))}
    hello = {"type": "hello", "links": [link.to_dict() for link in links], "idv": idv}
    return await stream(request, agent.id, calls.hub.subscribe(agent.id), [hello])


@routes.get("/api/join/{token}/ws")
async def customer_events(request: web.Request) -> web.WebSocketResponse:
    """The customer page's events: subtitles of both sides as they are spoken, and identity-check steps."""
    calls = request.app[CALLS]
    topic, queue, now = calls.subscribe_customer(request.match_info["token"], request.query.get("key", ""))
    return await stream(request, topic, queue, now)


async def stream(
    request: web.Request, topic: Hashable, queue: asyncio.Queue, first: list[dict]
) -> web.WebSocketResponse:
    """A WebSocket of one Hub topic: ``first``, then the topic's events until ``None`` (the call ended) or the peer
    goes. Reading is what notices a peer that closed, so the handler never outlives its page."""
    hub = request.app[CALLS].hub
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)

    async def pump() -> None:
        for message in first:
            await ws.send_json(message)
        while (message := await queue.get()) is not None:
            await ws.send_json(message)
        await ws.close()

    sender = asyncio.get_running_loop().create_task(pump())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, RuntimeError):
            await sender
        hub.unsubscribe(topic, queue)
        request.app[SOCKETS].discard(ws)
    return ws
