"""Middleware and request helpers: domain refusals to HTTP statuses, who the agent is, JSON bodies, headers."""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from calls.service import CallService
from identity.voiceid import VoiceId
from journeys import Journeys
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
NOTICE = (WEB_DIR / "notice.html").read_text()

CALLS = web.AppKey("calls", CallService)
JOURNEYS = web.AppKey("journeys", Journeys)
VOICE_ID = web.AppKey("voice_id", object)  # VoiceId, or None when no speaker encoder is loaded
SECURE_COOKIES = web.AppKey("secure_cookies", bool)
SOCKETS = web.AppKey("sockets", set)
AGENT = web.RequestKey("agent", object)
# Where contact-centre platforms stream calls (they authenticate by their own protocol's means, never as an agent),
# and the probes of load balancers (which must answer whatever a probe sends, and while the store is down).
INGRESS_PATHS = ("/audiohook", "/twilio/", "/whip", "/healthz", "/readyz", "/metrics")
# Link tokens and WHIP session secrets ride in paths, and call keys in query strings: what a log line may show of a
# request is redacted.
_SECRET_IN_PATH = re.compile(
    r"(/j/|/api/join/|/api/menu/|/callback/|/whip/[^/?#]+/)[^/?#]+|([?&](?:key|token|call_key)=)[^&#]*"
)
LOOPBACK = ("localhost", "127.0.0.1", "::1")
BACKLOG = 1024  # connections the kernel may queue before we accept them (aiohttp's default is 128)

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
    """API errors are JSON with a message; no traceback ever reaches a client. Refused media offers and phone
    ingress, and our own failures, are counted for the metrics."""
    try:
        return await handler(request)
    except Refused as e:
        return _failed(request, status_of(e), e.message, e.text)
    except (SdpError, AudioFormatError) as e:
        return _failed(request, 400, str(e))
    except web.HTTPRequestEntityTooLarge:
        return _failed(request, 413, f"request body larger than {MAX_BODY} bytes")
    except web.HTTPException as e:
        if e.status >= 400 and request.path.startswith("/api/"):
            return _failed(request, e.status, e.text or e.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, redact(request.path_qs))
        request.app[CALLS].services.metrics.errors.labels("internal").inc()
        return error_response(request, 500, "internal error; it has been logged")


def _failed(request: web.Request, status: int, message: str, text: str | None = None) -> web.Response:
    if kind := _media_kind(request.path):
        request.app[CALLS].services.metrics.errors.labels(kind).inc()
    return error_response(request, status, message, text)


def _media_kind(path: str) -> str | None:
    """Which media ingress a path is, if any: a contact-centre platform's stream, or a WebRTC offer."""
    if platform := next((name for name in ("whip", "audiohook", "twilio") if path.startswith(f"/{name}")), None):
        return platform
    return "webrtc" if path.endswith(("/offer", "/agent-offer")) else None


def error_response(request: web.Request, status: int, message: str, text: str | None = None) -> web.Response:
    """JSON with the message. A customer reads their refusals in their own words (``text``, a key of the
    catalogue; else the message), and on their link's URL as a page. JSON carries the key too, for a page that
    holds its own catalogue (a callback's pages speak the booking's language, not the browser's)."""
    customer = request.path.startswith(("/j/", "/api/join/", "/api/menu/"))
    if not customer:
        return web.json_response({"error": message} | ({"text": text} if text else {}), status=status)
    texts = request.app[CALLS].services.texts
    language = texts.choose(None, request.headers.get("Accept-Language"))
    words = texts.render(language, text) if text else message
    if request.path.startswith("/j/"):
        title = {404: "notice.invalid", 410: "notice.invalid", 429: "notice.wait"}.get(status, "notice.error")
        return notice_page(status, texts.render(language, title), words, language)
    return web.json_response({"error": message, "message": words} | ({"text": text} if text else {}), status=status)


def notice_page(status: int, title: str, message: str, language: str = "en") -> web.Response:
    """What a customer sees for a link that cannot be used: a page in their language, not JSON."""
    values = {"{lang}": language, "{title}": html.escape(title), "{message}": html.escape(message)}
    page = re.sub("|".join(re.escape(k) for k in values), lambda m: values[m.group(0)], NOTICE)
    return web.Response(text=page, status=status, content_type="text/html", headers=page_headers())


async def common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, files and errors too: no server banner, no content sniffing, HTTPS only once seen."""
    response.headers["Server"] = "VoxGate"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.secure or request.app[SECURE_COOKIES]:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"


def redact(path: str) -> str:
    """A request path or URL as logs may show it: link tokens and call keys cut out."""
    return _SECRET_IN_PATH.sub(lambda m: (m.group(1) or m.group(2)) + "…", path)


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log, with link tokens and call keys redacted from every line."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)  # off (the default level): no line is even formatted

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %d %.3fs",
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            response.body_length,
            time,
        )


def check_origin(request: web.Request) -> None:
    """A browser may open our WebSockets only from our own pages (the public URL, or the page's own address on
    this machine): another site's page would otherwise read a signed-in agent's events with their cookie."""
    origin = request.headers.get("Origin")
    if origin is None or request.get("voxgate.forwarded"):
        return  # not a browser (it has no victim's cookie to ride on), or checked by the node it reached first
    public = urlsplit(request.app[CALLS].settings.public_url)
    allowed = {f"{public.scheme}://{public.netloc}"}
    if request.url.host in LOOPBACK:
        allowed.add(f"{request.scheme}://{request.host}")
    if origin.rstrip("/") not in allowed:
        raise Forbidden("this page may not open VoxGate's event stream (its origin is not VoxGate's)")


NO_STORE = {"Cache-Control": "no-store"}  # an answer with a customer's or a call's state: never from a cache


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
    if (token := bearer(request)) is not None:
        agent = agents.by_api_token(token_hash(token))
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


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``, if the request carries one."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else None


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


def still_signed_in(request: web.Request) -> Callable[[], bool]:
    """Is the credential this request came with still good? For long-lived sockets: an agent disabled, removed
    or reset (``voxgate agent ...``, from any process) loses them too, not only their next request."""
    agents = request.app[CALLS].store.agents
    if (token := bearer(request)) is not None:
        api = token_hash(token)
        return lambda: agents.by_api_token(api) is not None
    session = token_hash(request.cookies.get(SESSION_COOKIE, ""))
    return lambda: agents.web_session(session) is not None


def voice_id_of(request: web.Request) -> VoiceId:
    voice_id = request.app[VOICE_ID]
    if voice_id is None:
        raise Conflict("voice ID is off on this server (no speaker encoder loaded)")
    return voice_id


async def json_body(request: web.Request) -> dict:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    return parse_json(await request.read())


def parse_json(raw: bytes) -> dict:
    """A JSON object from a body, or the reason it is not one: never an error of ours (a 500) on odd input."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except UnicodeDecodeError:
        raise Invalid("body is not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise Invalid(f"body is not valid JSON: {e.msg}") from None
    except RecursionError:
        raise Invalid("body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    try:  # \ud800 parses to a lone surrogate, which no store, log or socket can encode: refuse it here
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("text must be valid Unicode (a lone surrogate was sent)") from None
    return body


def client(request: web.Request) -> str:
    return request.remote or "unknown"
