"""The aiohttp application: routes, authentication, limits. Handlers stay thin; logic lives in ``Calls``.

Agents authenticate with a browser session (HttpOnly, SameSite=Strict cookie;
state-changing requests carry the session's CSRF token in ``X-CSRF-Token``) or
with their API token (``Authorization: Bearer``). Customers are authenticated by
the link token alone, and everything they do in their session (hang up,
identify, verify, consent) by the session key the offer returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from media.audio_io import AudioFormatError, read_pcm
from media.pipeline import Engines
from media.speech import net_speech
from models.base import pcm_to_float
from signaling.calls import CallError, Calls, Settings
from signaling.idv import IdvError, IdvFlow
from signaling.rooms import SdpError, parse_offer
from signaling.security import Vault, new_token, token_hash, verify_password
from signaling.store import Agent, Store
from signaling.subtitles import to_webvtt
from signaling.voiceid import Calibration, EnrolmentError, Progress, VoiceId

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_RECORDING = 16 * 1024 * 1024  # an uploaded enrolment recording: minutes of compressed audio
SESSION_COOKIE = "vg_session"
SESSION_TTL = 12 * 3600
WEB_DIR = Path(str(files("web")))

CALLS = web.AppKey("calls", Calls)
SECURE_COOKIES = web.AppKey("secure_cookies", bool)
SOCKETS = web.AppKey("sockets", set)
AGENT = web.RequestKey("agent", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: Settings,
    engines: Engines | None = None,
    *,
    secure_cookies: bool | None = None,
    calibration: Calibration | None = None,
) -> web.Application:
    """The app factory: one store, one vault, one ``Calls``; everything else hangs off them.

    ``engines`` (loaded once, shared by every call) turn on live subtitles; without them, video only.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.data_dir / "voxgate.db", clock=settings.clock)
    vault = Vault.from_file(settings.data_dir / "secret.key")
    # Model work runs in these threads; CTranslate2 and onnxruntime release the GIL while they compute.
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="engines") if engines else None
    calls = Calls(settings, store, vault, engines, executor)
    if engines is not None and engines.speaker is not None:
        calls.voice_id = VoiceId(store, vault, [engines.speaker], calibration or Calibration())
        # Live voice decisions get threads of their own: in the shared pool they queued behind Whisper decodes
        # (10 talking calls: 0.99 s p50 from the 3 s mark to the console, against 0.15 s for one call).
        calls.voice_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voiceid")
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors_middleware, auth_middleware])
    app[CALLS] = calls
    app[SECURE_COOKIES] = settings.public_url.startswith("https") if secure_cookies is None else secure_cookies
    app.router.add_routes(ROUTES)
    app.router.add_static("/static", WEB_DIR, show_index=False)
    app[SOCKETS] = set()
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_shutdown)
    return app


async def _lifecycle(app: web.Application):
    calls = app[CALLS]
    await calls.start()
    sweeper = asyncio.get_running_loop().create_task(calls.sweep_expired())
    yield
    sweeper.cancel()
    await calls.close()
    calls.store.close()
    for pool in (calls.executor, calls.voice_executor):
        if pool is not None:
            pool.shutdown(wait=False)


async def _shutdown(app: web.Application) -> None:
    """Before aiohttp waits for open requests: end live calls and close sockets, so nothing holds the exit."""
    await app[CALLS].close_rooms("server shutting down")
    for ws in list(app[SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


ROUTES = web.RouteTableDef()


# -- middlewares ---------------------------------------------------------------------------------------------------


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API errors are JSON with a message; no traceback ever reaches a client."""
    try:
        return await handler(request)
    except CallError as e:
        return _error(request, e.status, e.message)
    except IdvError as e:
        return _error(request, e.status, e.message)
    except (SdpError, EnrolmentError, AudioFormatError) as e:
        return _error(request, 400, str(e))
    except web.HTTPRequestEntityTooLarge:
        return _error(request, 413, f"request body larger than {MAX_BODY} bytes")
    except web.HTTPException as e:
        if e.status >= 400 and request.path.startswith("/api/"):
            return _error(request, e.status, e.text or e.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(request, 500, "internal error; it has been logged")


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/j/"):
        return customer_page(status, message)
    return web.json_response({"error": message}, status=status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve who the agent is, if anyone; ``agent_of`` enforces it where a handler acts as the agent."""
    store = request.app[CALLS].store
    request[AGENT] = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        agent = store.agent_by_api_token(token_hash(header[7:].strip()))
        if agent is None:
            raise CallError(401, "invalid API token")
        request[AGENT] = (agent, True)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        found = store.web_session(token_hash(cookie))
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
        raise CallError(401, "sign in first (or send Authorization: Bearer <API token>)")
    agent, csrf_ok = found
    if not csrf_ok:
        raise CallError(403, "missing or wrong X-CSRF-Token header")
    return agent


async def json_body(request: web.Request) -> dict:
    if request.content_type != "application/json":
        raise CallError(415, "send application/json")
    try:
        body = await request.json()
    except json.JSONDecodeError as e:
        raise CallError(400, f"body is not valid JSON: {e.msg}") from None
    if not isinstance(body, dict):
        raise CallError(400, "body must be a JSON object")
    return body


def client(request: web.Request) -> str:
    return request.remote or "unknown"


# -- pages ---------------------------------------------------------------------------------------------------------


@ROUTES.get("/")
async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console")


@ROUTES.get("/console")
async def console(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "console.html", headers=_page_headers())


@ROUTES.get("/j/{token}")
async def customer(request: web.Request) -> web.Response:
    """The customer's page. A GET never uses the link up: chat apps fetch URLs to preview them."""
    request.app[CALLS].customer_link(request.match_info["token"], client(request))
    return web.FileResponse(WEB_DIR / "customer.html", headers=_page_headers())


def customer_page(status: int, message: str) -> web.Response:
    titles = {404: "Link not found", 410: "Link no longer valid", 429: "Please wait"}
    html = (WEB_DIR / "notice.html").read_text().replace("{title}", titles.get(status, "Something went wrong"))
    return web.Response(
        text=html.replace("{message}", message), status=status, content_type="text/html", headers=_page_headers()
    )


def _page_headers() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the link token is in the URL: never leak it to another site
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        "Permissions-Policy": "camera=(self), microphone=(self)",
    }


# -- agent sign-in -------------------------------------------------------------------------------------------------


@ROUTES.post("/api/login")
async def login(request: web.Request) -> web.Response:
    calls = request.app[CALLS]
    body = await json_body(request)
    who = f"login:{client(request)}"
    if calls.guesses.blocked(who):
        raise CallError(429, "too many failed sign-ins; try again in a minute")
    found = calls.store.agent_login(str(body.get("name", "")))
    password = str(body.get("password", ""))
    # scrypt costs ~50 ms of CPU: run it off the event loop.
    ok = found is not None and await asyncio.to_thread(verify_password, password, found[1])
    if not ok:
        calls.guesses.fail(who)
        calls.store.audit(str(body.get("name", ""))[:64] or "?", "login.fail", None, client(request))
        raise CallError(401, "wrong name or password")
    agent = found[0]
    token, csrf = new_token(), new_token(16)
    calls.store.add_web_session(token_hash(token), agent.id, csrf, SESSION_TTL)
    calls.store.audit(agent.name, "login", None, client(request))
    response = web.json_response({"agent": _agent(agent), "csrf": csrf})
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


@ROUTES.post("/api/logout")
async def logout(request: web.Request) -> web.Response:
    agent = agent_of(request)
    request.app[CALLS].store.drop_web_session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    request.app[CALLS].store.audit(agent.name, "logout")
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@ROUTES.get("/api/me")
async def me(request: web.Request) -> web.Response:
    agent = agent_of(request)
    found = request.app[CALLS].store.web_session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    return web.json_response(
        {
            "agent": _agent(agent),
            "csrf": found[1] if found else None,
            "ice_servers": request.app[CALLS].settings.ice_servers(),
        }
    )


@ROUTES.put("/api/me")
async def update_me(request: web.Request) -> web.Response:
    """The agent's own settings: the language subtitles are translated into."""
    agent = agent_of(request)
    body = await json_body(request)
    language = body.get("language")
    calls = request.app[CALLS]
    if not isinstance(language, str) or not 2 <= len(language) <= 8:
        raise CallError(400, "language must be a language code such as 'en' or 'pt'")
    if calls.engines is not None and language not in calls.engines.asr.languages():
        raise CallError(400, f"speech recognition does not know the language {language!r}")
    calls.store.set_agent_language(agent.id, language)
    return web.json_response({"agent": {**_agent(agent), "language": language}})


def _agent(agent: Agent) -> dict:
    return {"id": agent.id, "name": agent.name, "language": agent.language}


# -- links and sessions (agent) ------------------------------------------------------------------------------------


@ROUTES.post("/api/links")
async def create_link(request: web.Request) -> web.Response:
    agent = agent_of(request)
    body = await json_body(request)
    allowed = {"customer_ref", "phone", "language", "reason", "expires_in"}
    if unknown := set(body) - allowed:
        raise CallError(400, f"unknown fields: {', '.join(sorted(unknown))}")
    expires_in = body.get("expires_in")
    if expires_in is not None and not isinstance(expires_in, (int, float)):
        raise CallError(400, "expires_in must be a number of seconds")
    result = request.app[CALLS].create_link(
        agent,
        customer_ref=body.get("customer_ref"),
        phone=body.get("phone"),
        language=body.get("language"),
        reason=body.get("reason"),
        ttl=expires_in,
    )
    return web.json_response(result, status=201)


@ROUTES.get("/api/links")
async def list_links(request: web.Request) -> web.Response:
    agent = agent_of(request)
    return web.json_response({"links": [link.to_dict() for link in request.app[CALLS].store.links_of(agent.id)]})


@ROUTES.get("/api/links/{id}")
async def get_link(request: web.Request) -> web.Response:
    calls, agent = request.app[CALLS], agent_of(request)
    link = calls.link_for_agent(agent, request.match_info["id"])
    return web.json_response({"link": link.to_dict(), "idv": calls.idv_record(agent, link.id)})


@ROUTES.post("/api/links/{id}/revoke")
async def revoke_link(request: web.Request) -> web.Response:
    link = request.app[CALLS].revoke(agent_of(request), request.match_info["id"])
    return web.json_response({"link": link.to_dict()})


@ROUTES.post("/api/sessions/{id}/agent-offer")
async def agent_offer(request: web.Request) -> web.Response:
    agent = agent_of(request)
    offer = parse_offer(await json_body(request))
    return web.json_response(await request.app[CALLS].agent_offer(agent, request.match_info["id"], offer))


@ROUTES.post("/api/sessions/{id}/end")
async def end_session(request: web.Request) -> web.Response:
    link = await request.app[CALLS].agent_end(agent_of(request), request.match_info["id"])
    return web.json_response({"link": link.to_dict()})


@ROUTES.post("/api/sessions/{id}/snapshots")
async def take_snapshot(request: web.Request) -> web.Response:
    snap = await request.app[CALLS].take_snapshot(agent_of(request), request.match_info["id"])
    return web.json_response({"snapshot": snap}, status=201)


@ROUTES.get("/api/sessions/{id}/snapshots")
async def list_snapshots(request: web.Request) -> web.Response:
    return web.json_response({"snapshots": request.app[CALLS].snapshots(agent_of(request), request.match_info["id"])})


@ROUTES.get("/api/snapshots/{id}")
async def get_snapshot(request: web.Request) -> web.Response:
    jpeg = request.app[CALLS].snapshot_jpeg(agent_of(request), request.match_info["id"])
    headers = {"Cache-Control": "no-store"}
    if request.query.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="snapshot-{request.match_info["id"]}.jpg"'
    return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)


@ROUTES.get("/api/sessions/{id}/idv")
async def session_idv(request: web.Request) -> web.Response:
    """The session's ID&V result (kept with it after the call): status, factors, reason, history."""
    record = request.app[CALLS].idv_record(agent_of(request), request.match_info["id"])
    if record is None:
        raise CallError(404, "this session had no identity check")
    return web.json_response(record)


@ROUTES.post("/api/sessions/{id}/idv/code")
async def session_ask_code(request: web.Request) -> web.Response:
    """Ask the customer for their PIN or a one-time code now, rather than wait for the voice."""
    flow = request.app[CALLS].agent_flow(agent_of(request), request.match_info["id"])
    return web.json_response(await flow.ask_code())


@ROUTES.post("/api/sessions/{id}/enrolment")
async def session_enrol(request: web.Request) -> web.Response:
    """Offer voice enrolment to the verified caller: their page asks for consent, then their speech is collected."""
    flow = request.app[CALLS].agent_flow(agent_of(request), request.match_info["id"])
    return web.json_response(flow.ask_consent())


@ROUTES.get("/api/sessions/{id}/transcript")
async def transcript(request: web.Request) -> web.Response:
    data, origin = request.app[CALLS].transcript(agent_of(request), request.match_info["id"])
    name = f"transcript-{request.match_info['id']}"
    if request.query.get("format", "json") == "vtt":
        return web.Response(
            text=to_webvtt(data, origin),
            content_type="text/vtt",
            headers={"Content-Disposition": f'attachment; filename="{name}.vtt"'},
        )
    return web.json_response(data, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


@ROUTES.get("/api/voiceprints/{customer}")
async def voiceprint_status(request: web.Request) -> web.Response:
    """Enrolment status and consent record; never the print itself."""
    agent_of(request)
    return web.json_response(_voice_id(request).status(request.match_info["customer"]))


@ROUTES.delete("/api/voiceprints/{customer}")
async def voiceprint_delete(request: web.Request) -> web.Response:
    agent = agent_of(request)
    if not _voice_id(request).delete(request.match_info["customer"], agent.name):
        raise CallError(404, "no voice print for this customer")
    return web.json_response({"deleted": True})


@ROUTES.post("/api/voiceprints/{customer}/opt-out")
async def voiceprint_opt_out(request: web.Request) -> web.Response:
    agent = agent_of(request)
    _voice_id(request).opt_out(request.match_info["customer"], agent.name)
    return web.json_response(_voice_id(request).status(request.match_info["customer"]))


@ROUTES.post("/api/voiceprints/{customer}/consent")
async def voiceprint_consent(request: web.Request) -> web.Response:
    """Record consent taken outside a call (who, when, the wording) and start an enrolment."""
    agent = agent_of(request)
    body = await json_body(request)
    wording = body.get("wording")
    if not isinstance(wording, str) or not 10 <= len(wording) <= 2000:
        raise CallError(400, "wording: the consent text the customer agreed to (10-2000 characters)")
    progress = _voice_id(request).consent(request.match_info["customer"], by=agent.name, wording=wording)
    return web.json_response(progress.to_dict(), status=201)


@ROUTES.post("/api/voiceprints/{customer}/recordings")
async def voiceprint_recording(request: web.Request) -> web.Response:
    """Add a recording (any audio format) to the customer's enrolment, or with ``?watchlist=REASON`` put the voice
    on the fraud watch list. Answers the progress: ``{"speech_seconds": 12.3, "needed": 20, "enrolled": false}``."""
    agent = agent_of(request)
    voice_id, customer = _voice_id(request), request.match_info["customer"]
    reason = request.query.get("watchlist")
    if reason is None and voice_id.store.enrolment(customer) is None:
        raise CallError(409, "no consent on record for this customer: POST .../consent first")
    audio = await _read_upload(request, MAX_RECORDING)
    calls = request.app[CALLS]
    vad = calls.engines.vad()

    def enrol() -> Progress:  # decode and embed: CPU work, off the loop
        speech = _speech_of(audio, vad)
        if reason is not None:
            return voice_id.watch(customer, speech, reason=reason, by=agent.name)
        return voice_id.add_speech(customer, speech)

    progress = await asyncio.get_running_loop().run_in_executor(calls.executor, enrol)
    return web.json_response(progress.to_dict())


@ROUTES.post("/api/voiceprints/{customer}/watchlist")
async def voiceprint_flag(request: web.Request) -> web.Response:
    """Flag an existing print as a known fraudster's."""
    agent = agent_of(request)
    reason = (await json_body(request)).get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise CallError(400, "reason: why this voice is on the watch list (a case number, say)")
    if not _voice_id(request).flag(request.match_info["customer"], reason=reason, by=agent.name):
        raise CallError(404, "no voice print for this customer")
    return web.json_response(_voice_id(request).status(request.match_info["customer"]))


async def _read_upload(request: web.Request, limit: int) -> bytes:
    """The request body up to ``limit`` bytes (this route's own limit, above the API's 64 KiB)."""
    if request.content_length is not None and request.content_length > limit:
        raise CallError(413, f"recording larger than {limit} bytes")
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise CallError(413, f"recording larger than {limit} bytes")
    if not data:
        raise CallError(400, "send the recording as the request body")
    return bytes(data)


def _speech_of(audio: bytes, vad) -> np.ndarray:
    """Net speech (float32, 16 kHz) of an uploaded recording; AudioFormatError says what is wrong with it."""
    with tempfile.NamedTemporaryFile(suffix=".audio") as f:
        f.write(audio)
        f.flush()
        try:
            return pcm_to_float(net_speech(read_pcm(f.name), vad))
        except AudioFormatError as e:
            raise AudioFormatError(str(e).replace(f.name, "the recording")) from None


def _voice_id(request: web.Request) -> VoiceId:
    voice_id = request.app[CALLS].voice_id
    if voice_id is None:
        raise CallError(409, "voice ID is off on this server (no speaker encoder loaded)")
    return voice_id


@ROUTES.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    agent = agent_of(request)
    link_id = request.query.get("link")
    if link_id:
        request.app[CALLS].link_for_agent(agent, link_id)
    rows = request.app[CALLS].store.audit_log(link_id)
    return web.json_response({"audit": rows if link_id else [r for r in rows if r["actor"] == agent.name]})


@ROUTES.get("/api/ws")
async def events(request: web.Request) -> web.WebSocketResponse:
    """The console's event stream: link states, stills, subtitles, ID&V and voice ID, as they happen."""
    agent = agent_of(request)
    calls = request.app[CALLS]
    links = calls.store.links_of(agent.id)
    idv = {link.id: record for link in links if (record := calls.store.idv(link.id))}
    hello = {"type": "hello", "links": [link.to_dict() for link in links], "idv": idv}
    return await _stream(request, agent.id, calls.hub.subscribe(agent.id), [hello])


async def _stream(request: web.Request, topic, queue: asyncio.Queue, first: list[dict]) -> web.WebSocketResponse:
    """A WebSocket of one Hub topic: ``first``, then the topic's events until ``None`` (the call ended) or the peer
    goes. Reading is what notices a peer that closed, so the handler never outlives its page."""
    calls = request.app[CALLS]
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
        calls.hub.unsubscribe(topic, queue)
        request.app[SOCKETS].discard(ws)
    return ws


# -- the customer --------------------------------------------------------------------------------------------------


@ROUTES.get("/api/join/{token}")
async def join_info(request: web.Request) -> web.Response:
    return web.json_response(
        request.app[CALLS].join_info(request.match_info["token"], client(request)),
        headers={"Cache-Control": "no-store"},
    )


@ROUTES.post("/api/join/{token}/offer")
async def join_offer(request: web.Request) -> web.Response:
    offer = parse_offer(await json_body(request))
    result = await request.app[CALLS].customer_offer(request.match_info["token"], offer, client(request))
    return web.json_response(result)


@ROUTES.get("/api/join/{token}/ws")
async def join_events(request: web.Request) -> web.WebSocketResponse:
    """The customer page's events: subtitles of both sides as they are spoken, and identity-check steps."""
    topic, queue, now = request.app[CALLS].customer_events(request.match_info["token"], request.query.get("key", ""))
    return await _stream(request, topic, queue, now)


async def _customer_step(request: web.Request) -> tuple[IdvFlow, dict]:
    """The customer's live identity check and the JSON they sent (``session_key`` plus the step's field)."""
    body = await json_body(request)
    key = body.get("session_key", "")
    return request.app[CALLS].customer_flow(request.match_info["token"], key if isinstance(key, str) else ""), body


@ROUTES.post("/api/join/{token}/identify")
async def join_identify(request: web.Request) -> web.Response:
    flow, body = await _customer_step(request)
    return web.json_response(await flow.identify(str(body.get("customer_id", ""))))


@ROUTES.post("/api/join/{token}/verify")
async def join_verify(request: web.Request) -> web.Response:
    flow, body = await _customer_step(request)
    return web.json_response(await flow.verify_code(str(body.get("code", ""))))


@ROUTES.post("/api/join/{token}/skip")
async def join_skip(request: web.Request) -> web.Response:
    flow, _ = await _customer_step(request)
    return web.json_response(await flow.skip())


@ROUTES.post("/api/join/{token}/voiceprint-consent")
async def join_consent(request: web.Request) -> web.Response:
    flow, body = await _customer_step(request)
    if not isinstance(body.get("agree"), bool):
        raise CallError(400, "agree: true or false")
    return web.json_response(flow.answer_consent(body["agree"]))


@ROUTES.post("/api/join/{token}/hangup")
async def join_hangup(request: web.Request) -> web.Response:
    # sendBeacon on page close posts text/plain, so accept any content type here.
    try:
        body = json.loads(await request.text() or "{}")
    except json.JSONDecodeError:
        raise CallError(400, "body is not valid JSON") from None
    key = body.get("session_key", "") if isinstance(body, dict) else ""
    await request.app[CALLS].customer_hangup(request.match_info["token"], key, client(request))
    return web.json_response({"ok": True})
