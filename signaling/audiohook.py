"""Genesys Cloud AudioHook at ``/audiohook``: a phone call's audio (both channels) in, transcripts back.

The request that opens the WebSocket is checked before the upgrade: the AudioHook headers must be there (else
400), ``X-API-KEY`` must be one the operator configured and, when that key has a client secret, the request's
HTTP message signature must verify (else 401, audited without the key or the signature). The protocol itself
lives in ``media.audiohook``; this handler carries its messages, admits the call on ``open`` and ends it on
``close``, on a protocol error or when the socket is lost.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import weakref

from aiohttp import WSMsgType, web

from calls.call import Call
from calls.service import CallService
from media.audiohook import MAX_TEXT, AudioHookSession, Open, ProtocolError, State, Step
from media.events import Event
from media.httpsig import SignatureError, SignedRequest, Verifier
from media.phone import PhoneMedia
from signaling.middleware import CALLS, SOCKETS
from store.errors import Invalid, Refused, Unauthenticated

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

HEADERS = ("audiohook-organization-id", "audiohook-session-id", "audiohook-correlation-id")
GRACE = 5.0  # seconds the platform has to close its side after our disconnect or closed
_verifiers: weakref.WeakKeyDictionary[web.Application, Verifier] = weakref.WeakKeyDictionary()


@routes.get("/audiohook")
async def audiohook(request: web.Request) -> web.WebSocketResponse:
    calls, headers = request.app[CALLS], request.headers
    missing = [h for h in HEADERS if not headers.get(h)]
    if missing:
        raise Invalid(f"not an AudioHook request: missing {', '.join(missing)}")
    try:
        session = AudioHookSession(headers["audiohook-session-id"], headers["audiohook-organization-id"])
    except ProtocolError as e:
        raise Invalid(str(e)) from None
    _authenticate(request, calls)
    ws = web.WebSocketResponse(max_msg_size=4 * MAX_TEXT)  # the protocol's limits are checked per message
    if not ws.can_prepare(request).ok:
        raise Invalid("AudioHook needs a WebSocket upgrade")
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    try:
        await AudioHookStream(ws, session, calls).run()
    finally:
        request.app[SOCKETS].discard(ws)
    return ws


def _authenticate(request: web.Request, calls: CallService) -> None:
    """A configured API key, and a good signature when the key has a secret; else 401, audited."""
    key = request.headers.get("x-api-key", "")
    try:
        found = [s for k, s in calls.settings.audiohook_keys.items() if hmac.compare_digest(k.encode(), key.encode())]
        if not key or not found:
            raise SignatureError("unknown API key" if key else "no X-API-KEY")
        if found[0] is not None:
            signed = SignedRequest(request.raw_path, request.host, request.headers)
            _verifier(request.app, calls).verify(signed, key, found[0])
    except SignatureError as e:
        session = request.headers.get("audiohook-session-id", "")[:64]
        calls.store.audit.add("audiohook", "ingress.refused", None, f"{e} (session {session}, {request.remote})")
        raise Unauthenticated("AudioHook request not authorised") from None


async def _nothing(reason: str) -> None:
    """A connection probe's media ends with nothing to close."""


def _verifier(app: web.Application, calls: CallService) -> Verifier:
    """One per server: its replay cache remembers the nonces of every request it verified."""
    if app not in _verifiers:
        _verifiers[app] = Verifier(clock=lambda: calls.settings.clock())
    return _verifiers[app]


class AudioHookStream:
    """One AudioHook WebSocket: its session, the call it admits, and one writer so messages keep their order."""

    def __init__(self, ws: web.WebSocketResponse, session: AudioHookSession, calls: CallService) -> None:
        self.ws, self.session, self.calls = ws, session, calls
        self.call: Call | None = None
        self._out: asyncio.Queue[dict | None] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task | None = None

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._act(self.session.receive_text(msg.data))
                elif msg.type == WSMsgType.BINARY:
                    await self._act(self.session.receive_audio(msg.data))
                else:
                    break
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self.call is not None:
                await self.call.end("the platform's AudioHook stream was lost")
                await self.call.finished
            self._out.put_nowait(None)
            await self._writer
            await self.ws.close()

    async def _act(self, step: Step) -> None:
        self._send(*step.send)
        if step.open is not None:
            await self._admit(step.open)
        if step.end is not None:
            if self.call is not None:
                await self.call.end(step.end)
            self._close_soon()
        if step.close is not None:
            if self.call is not None:  # the last words' transcripts go out before closed
                await self.call.end(f"the platform closed the stream ({step.close})")
                await self.call.finished
            self._send(self.session.closed())
            self._close_soon()

    async def _admit(self, opening: Open) -> None:
        if opening.probe:  # answered as a call would be, but nobody hears it and nothing is recorded
            self.calls.store.audit.add("audiohook", "probe", None, f"organization {opening.organization_id}")
            self._send(self.session.accept(PhoneMedia(opening.conversation_id, _nothing)))
            return
        try:
            self.call, media = await self.calls.open_phone_call(opening.phone_call(), hangup=self._hang_up)
        except Refused as e:
            self.calls.store.audit.add("audiohook", "call.refused", None, e.message)
            self.calls.services.metrics.errors.labels("audiohook").inc()
            self._send(self.session.refuse(e.message))
            self._close_soon()
            return
        except Exception:
            log.exception("AudioHook %s: the call could not be opened", self.session.id)
            self._send(self.session.refuse("the server could not take the call; the error has been logged"))
            self._close_soon()
            return
        self._send(self.session.accept(media))
        if self.call.subtitles is not None:
            self.call.subtitles.listen(self._transcript)

    def _transcript(self, leg: str, event: Event) -> None:
        self._send(self.session.transcript(leg, event))

    async def _hang_up(self, reason: str) -> None:
        """The server ends the call (the agent, the watchdog): the platform is told, and closes its side."""
        message = self.session.hang_up(reason)
        if message is not None and not self.ws.closed:
            self._send(message)
            self._close_soon()

    def _send(self, *messages: dict | None) -> None:
        for message in messages:
            if message is not None:
                self._out.put_nowait(message)

    async def _write(self) -> None:
        while (message := await self._out.get()) is not None:
            try:
                await self.ws.send_str(json.dumps(message))
            except (ConnectionError, RuntimeError):  # the platform is gone: nothing more can reach it
                log.debug("AudioHook %s: a %s message was not delivered", self.session.id, message["type"])

    def _close_soon(self) -> None:
        """Close the socket if the platform has not closed its side within the grace (a close in progress waits)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(GRACE, self._close_now)

    def _close_now(self) -> None:
        if self.session.state in (State.ENDING, State.DISCONNECTING, State.CLOSED) and not self.ws.closed:
            self._closing = asyncio.get_running_loop().create_task(self.ws.close())
