"""Twilio Media Streams at ``/twilio/media``: a phone call's audio (inbound and outbound tracks) in.

The protocol lives in ``media.twilio``; this handler checks who is calling, opens the call on ``start``, and
ends it once: on ``stop``, when the socket goes, or when the server hangs up (the agent, the watchdog), which
closes the socket.
"""

from __future__ import annotations

import logging

from aiohttp import WSCloseCode, WSMsgType, web

from media.twilio import MAX_MESSAGE, Start, Stop, StreamError, TwilioStream, signed_by_twilio, stream_url
from signaling.middleware import CALLS, SOCKETS, client
from store.errors import Refused, Unauthenticated

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/twilio/media")
async def media_stream(request: web.Request) -> web.StreamResponse:
    """One Media Stream, signed with the account's auth token.

    Without an auth token set the endpoint is off (404, as if it did not exist): nothing could tell Twilio from
    anyone else, and a 401 would invite credentials that no one can present. An operator turns it on by setting
    the token (``--twilio-auth-token``).
    """
    calls = request.app[CALLS]
    token = calls.settings.twilio_auth_token
    if not token:
        log.warning("a Twilio Media Stream was refused: set the Twilio auth token to accept them")
        raise web.HTTPNotFound(text="Twilio Media Streams are not enabled on this server")
    header = request.headers.get("X-Twilio-Signature")
    if not signed_by_twilio(token, stream_url(calls.settings.public_url, request.raw_path), header):
        reason = f"{'wrong' if header else 'missing'} X-Twilio-Signature"
        calls.store.audit.add("twilio", "ingress.refused", None, f"{reason} from {client(request)}")
        raise Unauthenticated(reason)

    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)

    async def hang_up(reason: str) -> None:
        await close(ws, WSCloseCode.OK, reason)

    stream, call = TwilioStream(), None
    reason = "the stream closed without a stop"
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:  # a message over the size limit: aiohttp has closed with 1009
                reason = f"the stream failed: {msg.data}"
                break
            if msg.type != WSMsgType.TEXT:
                reason = "the stream sent a binary message"
                await close(ws, WSCloseCode.UNSUPPORTED_DATA, "send JSON text messages")
                break
            message = stream.receive(msg.data)
            if isinstance(message, Start):
                call, media = await calls.open_phone_call(message.call(), hang_up)
                stream.attach(media)
            elif isinstance(message, Stop):
                reason = "the call ended (Twilio stopped the stream)"
                break
    except StreamError as e:
        reason = f"the stream broke the protocol: {e}"
        calls.services.metrics.errors.labels("twilio").inc()
        await close(ws, WSCloseCode.POLICY_VIOLATION, str(e))
    except Refused as e:
        calls.store.audit.add("twilio", "ingress.refused", None, e.message)
        calls.services.metrics.errors.labels("twilio").inc()
        await close(ws, WSCloseCode.POLICY_VIOLATION, e.message)
    finally:
        if call is not None:
            await call.end(reason)
            await call.ended
        await close(ws, WSCloseCode.OK, "stream ended")
        request.app[SOCKETS].discard(ws)
    return ws


async def close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close once (later closes do nothing), with a reason that fits a close frame (123 bytes)."""
    await ws.close(code=code, message=reason.encode()[:123].decode(errors="ignore").encode())
