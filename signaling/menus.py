"""The visual IVR's customer API (``/api/menu/{token}``) and what the agent reads of a menu link.

The customer is authenticated by the link token to read the menu and start it (which uses the link up on that
device), and by the key ``start`` returned for every step after. What a step does lives in
``journeys.menus.MenuService``.
"""

from __future__ import annotations

from aiohttp import web

from journeys.menu_file import FieldErrors
from journeys.menus import MenuService
from signaling.middleware import JOURNEYS, NO_STORE, agent_of, client, json_body
from store.errors import NotFound

routes = web.RouteTableDef()


def _menus(request: web.Request) -> MenuService:
    menus = request.app[JOURNEYS].menus
    if menus is None:
        raise NotFound("the visual IVR is off on this server")
    return menus


def _language(request: web.Request) -> str | None:
    return request.headers.get("Accept-Language")


@routes.get("/api/menu/{token}")
async def info(request: web.Request) -> web.Response:
    """The company, the security phrase and the menu's title, in the customer's language (marks the link opened)."""
    found = await _menus(request).info(request.match_info["token"], client(request), _language(request))
    return web.json_response(found, headers=NO_STORE)


@routes.post("/api/menu/{token}/start")
async def start(request: web.Request) -> web.Response:
    """Use the link up on this device: the key for the steps, and the first screen."""
    view = await _menus(request).start(request.match_info["token"], client(request), _language(request))
    return web.json_response(view, headers=NO_STORE)


@routes.post("/api/menu/{token}/state")
async def state(request: web.Request) -> web.Response:
    body = await json_body(request)
    view = await _menus(request).state(request.match_info["token"], body.get("key"))
    return web.json_response(view, headers=NO_STORE)


@routes.post("/api/menu/{token}/step")
async def step(request: web.Request) -> web.Response:
    """``{"key", "step": "choose", "option"}``, ``"enter", "values"``, ``"back"``, ``"continue"``, ``"identify",
    "customer_id"``, ``"verify", "code"`` or ``"skip"``. Refused values come back by field, in the page's words."""
    body = await json_body(request)
    try:
        view = await _menus(request).step(request.match_info["token"], body)
    except FieldErrors as e:
        return web.json_response({"error": e.message, "errors": e.messages}, status=400)
    return web.json_response(view, headers=NO_STORE)


@routes.get("/api/links/{id}/menu")
async def for_agent(request: web.Request) -> web.Response:
    """A menu link's steps and ID&V: for its agent, or the agent of a call the menu handed on."""
    return web.json_response(_menus(request).for_agent(agent_of(request), request.match_info["id"]))
