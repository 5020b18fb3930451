"""Several nodes: a live call's requests are served by the node that holds its media, whichever node they reach.

A load balancer may send any request to any node. Most need no particular one (the store and the events are
shared), but a live call's media is in one process: the agent's WebRTC offer, a still, ending the call, the
customer's ID&V steps and event stream; so is a visual IVR menu's session (its steps and state), on the node that
started it. The node that receives such a request asks the cluster which node owns the call (or menu) and, when
it is another, *proxies* it there (a WebSocket too) and relays the answer. A redirect would need the browser to
reach every node by name and carry its cookie across origins; the proxy keeps one origin.

The owner trusts a forwarded request (its origin already checked at the edge, never forwarded again) only with
a valid ``X-VoxGate-Node`` header: the sending node's id, the time, and an HMAC of both with the method and path,
keyed from the secret every node shares. Authentication is not delegated: the agent's cookie or token travels
with the request and the owner checks it against the shared store, as for any request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time

import aiohttp
from aiohttp import WSMsgType, web

from calls.service import CallService
from signaling.middleware import CALLS, JOURNEYS, MAX_BODY, SOCKETS, Handler, check_origin
from signaling.sockets import cancel
from store.security import token_hash

NODE_HEADER = "X-VoxGate-Node"
FORWARD_HEADERS = (
    "Authorization",
    "Cookie",
    "X-CSRF-Token",
    "Content-Type",
    "Accept",
    "Accept-Language",
    "User-Agent",
    "Origin",
)
MAX_SKEW = 30.0  # seconds a forwarded request's signature stays good

_CALL = re.compile(r"^/api/(?:calls|links)/(?P<id>[0-9a-f]{12})/|^/whip/(?P<whip>[0-9a-f]{12})/")
_CUSTOMER = re.compile(r"^/api/join/(?P<token>[^/]+)/(?:ws|identify|verify|skip|voiceprint-consent|hangup)$")
_MENU = re.compile(r"^/api/menu/(?P<token>[^/]+)/(?:state|step)$")


def _signature(key: bytes, node: str, at: str, method: str, path: str) -> str:
    return hmac.new(key, f"{node}|{at}|{method}|{path}".encode(), hashlib.sha256).hexdigest()


def forwarded(request: web.Request) -> bool:
    """Did this request come from another node of the cluster (checked, so its origin was checked there)?"""
    return bool(request.get("voxgate.forwarded"))


@web.middleware
async def routing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    calls: CallService = request.app[CALLS]
    if calls.cluster is None:
        return await handler(request)
    if NODE_HEADER in request.headers:
        if not _verified(request, calls):
            raise web.HTTPForbidden(text="bad node signature")
        request["voxgate.forwarded"] = True
        return await handler(request)
    call_id = _call_of(request, calls)
    if call_id is None or _here(request, calls, call_id):
        return await handler(request)
    owner = await calls.cluster.locate(call_id)
    if owner is None:
        return await handler(request)  # nobody's, or gone: this node answers (not live, ended, ...)
    if request.headers.get("Upgrade", "").lower() == "websocket":
        check_origin(request)
        return await _proxy_socket(request, calls, owner)
    return await _proxy(request, calls, owner)


def _call_of(request: web.Request, calls: CallService) -> str | None:
    """The id of the call, or menu session, a request is for: its owner must serve it. None: any node may."""
    if m := _CALL.match(request.path):
        return m["id"] or m["whip"]
    if m := _CUSTOMER.match(request.path) or _MENU.match(request.path):
        return _link_of(calls, m["token"])
    return None


def _link_of(calls: CallService, token: str) -> str | None:
    link = calls.store.links.by_token(token_hash(token)) if 20 <= len(token) <= 64 else None
    return link.id if link is not None else None


def _here(request: web.Request, calls: CallService, call_id: str) -> bool:
    """This node holds the call's media, or the menu's session."""
    menus = request.app[JOURNEYS].menus
    return call_id in calls.live or (menus is not None and call_id in menus.live)


def _verified(request: web.Request, calls: CallService) -> bool:
    node, _, rest = request.headers[NODE_HEADER].partition(";")
    at, _, signature = rest.partition(";")
    try:
        fresh = abs(time.time() - float(at)) <= MAX_SKEW
    except ValueError:
        return False
    expected = _signature(calls.services.vault.derive("cluster"), node, at, request.method, request.path_qs)
    return fresh and hmac.compare_digest(expected, signature)


def _headers(request: web.Request, calls: CallService) -> dict[str, str]:
    assert calls.cluster is not None
    headers = {name: request.headers[name] for name in FORWARD_HEADERS if name in request.headers}
    node, at = calls.cluster.node_id, f"{time.time():.3f}"
    signature = _signature(calls.services.vault.derive("cluster"), node, at, request.method, request.path_qs)
    headers[NODE_HEADER] = f"{node};{at};{signature}"
    headers["X-Forwarded-For"] = request.remote or "unknown"
    return headers


_CLIENT = web.AppKey("node client", aiohttp.ClientSession)


def _session(request: web.Request) -> aiohttp.ClientSession:
    """One client per app for talking to the other nodes (made on first use, closed with the app)."""
    session = request.app.get(_CLIENT)
    if session is None or session.closed:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), cookie_jar=aiohttp.DummyCookieJar())
        request.app[_CLIENT] = session
    return session


async def close_client(app: web.Application) -> None:
    if (session := app.get(_CLIENT)) is not None:
        await session.close()


async def _proxy(request: web.Request, calls: CallService, owner: str) -> web.Response:
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
    try:
        async with _session(request).request(
            request.method, owner + request.path_qs, data=body or None, headers=_headers(request, calls)
        ) as answer:
            data = await answer.read()
            keep = {k: v for k, v in answer.headers.items() if k in ("Content-Type", "Content-Disposition")}
            return web.Response(status=answer.status, body=data, headers=keep)
    except (TimeoutError, aiohttp.ClientError):
        raise web.HTTPBadGateway(text="the node holding this call did not answer") from None


async def _proxy_socket(request: web.Request, calls: CallService, owner: str) -> web.WebSocketResponse:
    """A WebSocket relayed both ways between the browser and the owner, until either side closes."""
    url = owner.replace("http", "ws", 1) + request.path_qs
    try:
        upstream = await _session(request).ws_connect(url, headers=_headers(request, calls), heartbeat=20)
    except aiohttp.WSServerHandshakeError as e:  # the owner refused it (a wrong key, say): its answer, not ours
        return web.json_response({"error": e.message}, status=e.status)  # type: ignore[return-value]
    except (TimeoutError, aiohttp.ClientError):
        raise web.HTTPBadGateway(text="the node holding this call did not answer") from None
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)

    async def pipe(source, sink) -> None:
        async for msg in source:
            if msg.type == WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            else:
                break
        await sink.close()

    tasks = [asyncio.ensure_future(pipe(upstream, ws)), asyncio.ensure_future(pipe(ws, upstream))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel(tasks)
        await upstream.close()
        await ws.close()
        request.app[SOCKETS].discard(ws)
    return ws
