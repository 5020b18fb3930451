"""WebSockets: the console's event stream, and each customer page's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable

from aiohttp import WSCloseCode, WSMsgType, web

from signaling.middleware import CALLS, SOCKETS, agent_of, check_origin, still_signed_in

SESSION_CHECK = 10.0  # seconds between checks that a console's agent is still signed in
HELLO_LINKS = 200  # the latest links a console starts with (its live calls always); older ones by /api/links

routes = web.RouteTableDef()


@routes.get("/api/ws")
async def console_events(request: web.Request) -> web.WebSocketResponse:
    """The console's event stream: link states, stills, subtitles, ID&V and voice ID, as they happen."""
    check_origin(request)
    agent = agent_of(request)
    calls = request.app[CALLS]
    live = [calls.store.links.get(call.id) for call in calls.live.values() if call.link.agent_id == agent.id]
    links = list({link.id: link for link in live + calls.store.links.of_agent(agent.id, HELLO_LINKS)}.values())
    idv = {link.id: record for link in links if (record := calls.store.idv.get(link.id))}
    hello = {"type": "hello", "links": [link.to_dict() for link in links], "idv": idv}
    contexts = [calls.context_view(link) for link in live if link is not None]
    calls.queues.arrive(agent)  # a console open: the agent counts for the queues until its last one closes
    try:
        first = [hello, *contexts]
        return await stream(request, agent.id, calls.hub.subscribe(agent.id), first, still_signed_in(request))
    finally:
        calls.queues.leave(agent)


@routes.get("/api/join/{token}/ws")
async def customer_events(request: web.Request) -> web.WebSocketResponse:
    """The customer page's events: subtitles of both sides as they are spoken, and identity-check steps."""
    check_origin(request)
    calls = request.app[CALLS]
    topic, queue, now = calls.subscribe_customer(request.match_info["token"], request.query.get("key", ""))
    return await stream(request, topic, queue, now)


async def stream(
    request: web.Request,
    topic: Hashable,
    queue: asyncio.Queue,
    first: list[dict],
    signed_in: Callable[[], bool] | None = None,
) -> web.WebSocketResponse:
    """A WebSocket of one Hub topic: ``first``, then the topic's events until ``None`` (the call ended), the peer
    goes, or ``signed_in`` says the agent's credential no longer holds. Reading is what notices a peer that
    closed, so the handler never outlives its page."""
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

    async def check() -> None:
        while signed_in is not None:
            await asyncio.sleep(SESSION_CHECK)
            if not signed_in():
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"signed out")
                return

    tasks = [asyncio.get_running_loop().create_task(work()) for work in (pump, check)]
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        await cancel(tasks)
        hub.unsubscribe(topic, queue)
        request.app[SOCKETS].discard(ws)
    return ws


async def cancel(tasks: list[asyncio.Task]) -> None:
    """Stop a socket's tasks and wait for them: a peer gone mid-send is not an error."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, RuntimeError):
            await task
