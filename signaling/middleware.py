"""Middleware and request helpers: domain refusals to HTTP statuses, who the agent is, JSON bodies, headers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from aiohttp import web

from calls.service import CallService
from identity.voiceid import VoiceId
from media.audio_io import AudioFormatError
from media.webrtc import SdpError
from store.base import Agent
from store.errors import (
    AtCapacity,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Refused,
    Throttled,
    TooLarge,
    Unauthenticated,
)
from store.security import token_hash

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
SESSION_COOKIE = "vg_session"
WEB_DIR = Path(str(files("web")))

CALLS = web.AppKey("calls", CallService)
VOICE_ID = web.AppKey("voice_id", object)  # VoiceId, or None when no speaker encoder is loaded
SECURE_COOKIES = web.AppKey("secure_cookies", bool)
SOCKETS = web.AppKey("sockets", set)
AGENT = web.RequestKey("agent", object)
# Where contact-centre platforms stream calls: they authenticate by their own protocol's means, never as an agent.
INGRESS_PATHS = ("/audiohook", "/twilio/", "/whip")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The one place where a domain refusal becomes an HTTP status.
STATUS: dict[type[Refused], int] = {
    Invalid: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    TooLarge: 413,
    Throttled: 429,
    AtCapacity: 503,
}


def status_of(e: Refused) -> int:
    return next(code for kind, code in STATUS.items() if isinstance(e, kind))


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API errors are JSON with a message; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except Refused as e:
        return error_response(request, status_of(e), e.message)
    except (SdpError, AudioFormatError) as e:
        return error_response(request, 400, str(e))
    except web.HTTPRequestEntityTooLarge:
        return error_response(request, 413, f"request body larger than {MAX_BODY} bytes")
    except web.HTTPException as e:
        if e.status >= 400 and request.path.startswith("/api/"):
            return error_response(request, e.status, e.text or e.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(request, 500, "internal error; it has been logged")


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/j/"):
        return notice_page(status, message)
    return web.json_response({"error": message}, status=status)


def notice_page(status: int, message: str) -> web.Response:
    """What a customer sees for a link that cannot be used: a page, not JSON."""
    titles = {404: "Link not found", 410: "Link no longer valid", 429: "Please wait"}
    html = (WEB_DIR / "notice.html").read_text().replace("{title}", titles.get(status, "Something went wrong"))
    return web.Response(
        text=html.replace("{message}", message), status=status, content_type="text/html", headers=page_headers()
    )


def page_headers() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the link token is in the URL: never leak it to another site
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        "Permissions-Policy": "camera=(self), microphone=(self)",
    }


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve who the agent is, if anyone; ``agent_of`` enforces it where a handler acts as the agent."""
    agents = request.app[CALLS].store.agents
    request[AGENT] = None
    if request.path.startswith(INGRESS_PATHS):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        agent = agents.by_api_token(token_hash(header[7:].strip()))
        if agent is None:
            raise Unauthenticated("invalid API token")
        request[AGENT] = (agent, True)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        found = agents.web_session(token_hash(cookie))
        if found is not None:
            agent, csrf = found
            safe = request.method in ("GET", "HEAD", "OPTIONS") or request.headers.get("X-CSRF-Token") == csrf
            request[AGENT] = (agent, safe)
    return await handler(request)


def agent_of(request: web.Request) -> Agent:
    """The signed-in agent. A cookie alone does not let another site act as them: unsafe methods need the
    session's CSRF token. Customer routes never call this, so an agent's cookie does not get in their way."""
    found = request[AGENT]
    if found is None:
        raise Unauthenticated("sign in first (or send Authorization: Bearer <API token>)")
    agent, csrf_ok = found
    if not csrf_ok:
        raise Forbidden("missing or wrong X-CSRF-Token header")
    return agent


def voice_id_of(request: web.Request) -> VoiceId:
    voice_id = request.app[VOICE_ID]
    if voice_id is None:
        raise Conflict("voice ID is off on this server (no speaker encoder loaded)")
    return voice_id


async def json_body(request: web.Request) -> dict:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    try:
        body = await request.json()
    except json.JSONDecodeError as e:
        raise Invalid(f"body is not valid JSON: {e.msg}") from None
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    return body


def client(request: web.Request) -> str:
    return request.remote or "unknown"
