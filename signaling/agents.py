"""Agents signing in and out, and their own settings."""

from __future__ import annotations

import asyncio

from aiohttp import web

from calls.service import CallService
from signaling.middleware import CALLS, SECURE_COOKIES, SESSION_COOKIE, agent_of, client, json_body
from store.base import Agent
from store.errors import Throttled, Unauthenticated
from store.security import new_token, token_hash, verify_password

SESSION_TTL = 12 * 3600

routes = web.RouteTableDef()


@routes.post("/api/login")
async def login(request: web.Request) -> web.Response:
    calls: CallService = request.app[CALLS]
    body = await json_body(request)
    who = f"login:{client(request)}"
    if calls.guesses.blocked(who):
        raise Throttled("too many failed sign-ins; try again in a minute")
    store = calls.store
    found = store.agents.login(str(body.get("name", "")))
    password = str(body.get("password", ""))
    # scrypt costs ~50 ms of CPU: run it off the event loop.
    ok = found is not None and await asyncio.to_thread(verify_password, password, found[1])
    if not ok:
        calls.guesses.fail(who)
        store.audit.add(str(body.get("name", ""))[:64] or "?", "login.fail", None, client(request))
        raise Unauthenticated("wrong name or password")
    agent = found[0]
    token, csrf = new_token(), new_token(16)
    store.agents.add_web_session(token_hash(token), agent.id, csrf, SESSION_TTL)
    store.audit.add(agent.name, "login", None, client(request))
    response = web.json_response({"agent": agent_view(agent), "csrf": csrf})
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
    return web.json_response(
        {"agent": agent_view(agent), "csrf": found[1] if found else None, "ice_servers": calls.settings.ice_servers()}
    )


@routes.put("/api/me")
async def update_me(request: web.Request) -> web.Response:
    """The agent's own settings: the language subtitles are translated into."""
    agent = agent_of(request)
    body = await json_body(request)
    updated = request.app[CALLS].set_agent_language(agent, body.get("language"))
    return web.json_response({"agent": agent_view(updated)})


def agent_view(agent: Agent) -> dict:
    return {"id": agent.id, "name": agent.name, "language": agent.language}
