"""Agents signing in and out, and their own settings."""

from __future__ import annotations

from aiohttp import web

from calls.service import CallService
from signaling.middleware import CALLS, SECURE_COOKIES, SESSION_COOKIE, agent_of, client, json_body
from store.base import Agent
from store.errors import Invalid
from store.security import new_token, token_hash

SESSION_TTL = 12 * 3600

routes = web.RouteTableDef()


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    calls: CallService = request.app[CALLS]
    await calls.access.check_address(client(request))
    body = await json_body(request)
    name, password = body.get("name"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not 0 < len(name) <= 64 or len(password) > 1024:
        raise Invalid("send your name and password")
    agent = await calls.access.sign_in(name, password, client(request))
    token, csrf = new_token(), new_token(16)
    calls.store.agents.add_web_session(token_hash(token), agent.id, csrf, SESSION_TTL)
    response = web.json_response(_me(calls, agent, csrf))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_TTL,
        httponly=True,
        samesite="Strict",
        secure=request.app[SECURE_COOKIES],
        path="/",
    )
    return response


@routes.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    agent = agent_of(request)
    store = request.app[CALLS].store
    store.agents.drop_web_session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    store.audit.add(agent.name, "logout")
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    agent = agent_of(request)
    calls = request.app[CALLS]
    found = calls.store.agents.web_session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    return web.json_response(_me(calls, agent, found[1] if found else None))


def _me(calls: CallService, agent: Agent, csrf: str | None) -> dict:
    """What the console starts from, whether it has just signed in or reloads."""
    return {
        "agent": agent_view(agent),
        "csrf": csrf,
        "ice_servers": calls.settings.ice_servers(),
        "languages": sorted(calls.engines.asr.languages()) if calls.engines is not None else [],
        "routes": language_routes(calls, agent.language),
        "presence": calls.queues.status(agent),
        "queues": calls.queues.queues_of(agent),
    }


@routes.put("/api/me")
async def update_me(request: web.Request) -> web.Response:
    """The agent's own settings: the language subtitles are translated into."""
    agent = agent_of(request)
    body = await json_body(request)
    updated = request.app[CALLS].set_agent_language(agent, body.get("language"))
    return web.json_response(
        {"agent": agent_view(updated), "routes": language_routes(request.app[CALLS], updated.language)}
    )


@routes.post("/api/me/availability")
async def availability(request: web.Request) -> web.Response:
    """The agent is available for work from the queues (``{"available": true}``) or away; only while a console of
    theirs is open do they count at all."""
    agent, calls = agent_of(request), request.app[CALLS]
    body = await json_body(request)
    if not isinstance(body.get("available"), bool):
        raise Invalid("available: true or false")
    calls.queues.set_away(agent, not body["available"])
    calls.store.audit.add(agent.name, "agent.available" if body["available"] else "agent.away")
    return web.json_response(calls.queues.status(agent))


@routes.post("/api/events")
async def add_event(request: web.Request) -> web.Response:
    """Another system tells of something the customer did (``{"customer_id" | "phone", "type", "detail"}``): for
    the routing window, a call or callback from them is greeted with the likely reason and routed by it."""
    event = request.app[CALLS].record_event(agent_of(request), await json_body(request))
    return web.json_response({"event": event}, status=201)


def language_routes(calls: CallService, language: str) -> dict[str, dict[str, str | None]]:
    """For each language the console offers, the tier of the translation into the agent's ``language``
    (``to_agent``: what the agent reads) and out of it (``from_agent``: what the customer reads)."""
    engines = calls.engines
    if engines is None or engines.router is None:
        return {}
    tiers = engines.router.tiers(language, engines.asr.languages())
    return {other: {"to_agent": into, "from_agent": out} for other, (into, out) in tiers.items()}


def agent_view(agent: Agent) -> dict:
    return {
        "id": agent.id,
        "name": agent.name,
        "display_name": agent.display_name,
        "language": agent.language,
        "role": agent.role,
        "skills": list(agent.skills),
    }
