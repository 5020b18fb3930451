"""WHIP (RFC 9725) at ``/whip``: any WebRTC sender (a gateway, an SBC, GStreamer, OBS) streams a call in.

``POST /whip?agent=&queue=&caller=&language=&id=`` with the SDP offer (``application/sdp``) and
``Authorization: Bearer <token>`` answers ``201 Created``: the SDP answer, and in ``Location`` the session's
URL, on which ``DELETE`` (with the same token) hangs up. The first audio track is the caller; a second, if
sent, is the agent's side of the call (our extension: the RFC allows one track per kind). Nothing is sent
back. The server puts every ICE candidate in its answer and supports neither trickle ICE nor ICE restarts, so
``PATCH`` is ``405``. Every answer, refusals included, carries the CORS headers a browser sender needs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from aiohttp import web
from aiortc import RTCSessionDescription

from calls.call import Call
from media.phone import PhoneCall
from media.webrtc import SdpError, parse_offer
from signaling.middleware import CALLS, Handler, client, error_response, status_of
from store.errors import NotFound, Refused, Unauthenticated
from store.security import token_hash

routes = web.RouteTableDef()

ENDPOINT = "/whip"
SESSION = "/whip/{call_id}/{secret}"
ENDPOINT_METHODS = "OPTIONS, GET, POST"
SESSION_METHODS = "OPTIONS, GET, DELETE"
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Location"}  # bearer tokens, no cookies

# A session's URL carries a MAC of its call id and its sender's token under this process's key: unguessable,
# bound to the token that opened it, and nothing to store (the calls live in this process too).
_SESSION_KEY = secrets.token_bytes(32)


def _whip(handler: Handler) -> Handler:
    """Refusals as the JSON errors of the rest of the API, with CORS headers and, for a 401, the challenge."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Refused as e:
            response = error_response(request, status_of(e), e.message)
            if isinstance(e, Unauthenticated):
                response.headers["WWW-Authenticate"] = 'Bearer realm="whip"'
        except SdpError as e:
            response = error_response(request, 400, str(e))
        response.headers.update(CORS)
        return response

    return answer


def _sender(request: web.Request) -> str:
    """The hash of the request's bearer token if it is a WHIP token of this server; otherwise 401, audited."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    presented = token_hash(token.strip()) if scheme.lower() == "bearer" and token.strip() else ""
    calls = request.app[CALLS]
    known = False
    for candidate in calls.settings.whip_tokens:  # all compared, so the time taken says nothing
        known |= hmac.compare_digest(candidate, presented)
    if not known:
        reason = "unknown bearer token" if presented else "no bearer token"
        calls.store.audit.add("whip", "ingress.refused", None, f"{reason} from {client(request)}")
        raise Unauthenticated("a valid WHIP bearer token is required (Authorization: Bearer <token>)")
    return presented


def _secret(call_id: str, sender: str) -> str:
    mac = hmac.new(_SESSION_KEY, f"{call_id}:{sender}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _session(request: web.Request) -> Call:
    """The live call of the session URL, for the token that opened it; 404 for anything else (only a WHIP call's
    session was ever given a MAC)."""
    sender = _sender(request)
    call_id, secret = request.match_info["call_id"], request.match_info["secret"]
    call = request.app[CALLS].live.get(call_id)
    if not hmac.compare_digest(_secret(call_id, sender).encode(), secret.encode()) or call is None:
        raise NotFound("no such WHIP session (it may have ended)")
    return call


async def _offer(request: web.Request) -> RTCSessionDescription:
    try:
        sdp = (await request.read()).decode()
    except UnicodeDecodeError:
        raise SdpError("malformed SDP offer: not UTF-8 text") from None
    offer = parse_offer({"type": "offer", "sdp": sdp})  # its size, and the shape of an SDP
    if "\nm=audio " not in offer.sdp:
        raise SdpError("the SDP offer has no audio: a WHIP session here carries a call's audio")
    return offer


@routes.post(ENDPOINT)
@_whip
async def publish(request: web.Request) -> web.Response:
    """A sender's offer: the call is made (or refused before anything is) and answered."""
    sender = _sender(request)
    if request.content_type != "application/sdp":
        return error_response(request, 415, "send the SDP offer as Content-Type: application/sdp")
    offer = await _offer(request)
    query = request.query
    info = PhoneCall(
        "whip",
        external_id=query.get("id") or None,
        caller=query.get("caller") or None,
        agent=query.get("agent") or None,
        queue=query.get("queue") or None,
        language=query.get("language") or None,
    )
    call, answer = await request.app[CALLS].open_whip_call(info, offer)
    location = f"{ENDPOINT}/{call.id}/{_secret(call.id, sender)}"
    return web.Response(status=201, text=answer, content_type="application/sdp", headers={"Location": location})


@routes.delete(SESSION)
@_whip
async def hang_up(request: web.Request) -> web.Response:
    """The sender ends the session: the call ends, its last words still reach the transcript."""
    await _session(request).end("the WHIP sender ended the session")
    return web.Response(status=200)


@routes.patch(SESSION)
@_whip
async def patch(request: web.Request) -> web.Response:
    """Trickle ICE and ICE restarts: neither is supported (our answer holds every candidate), so the method isn't."""
    _session(request)
    response = error_response(request, 405, "this server supports neither trickle ICE nor ICE restarts")
    response.headers["Allow"] = SESSION_METHODS
    return response


@routes.get(ENDPOINT)
@routes.get(SESSION)
@_whip
async def nothing_to_show(request: web.Request) -> web.Response:
    """The RFC's resources have no representation: 2xx and no content (a session answers only while it lives)."""
    if "secret" in request.match_info:
        _session(request)
    return web.Response(status=204)


@routes.route("OPTIONS", ENDPOINT)
@routes.route("OPTIONS", SESSION)
@_whip
async def preflight(request: web.Request) -> web.Response:
    """CORS preflight, and what a sender may do here: offers go to the endpoint as ``application/sdp``."""
    methods = SESSION_METHODS if "secret" in request.match_info else ENDPOINT_METHODS
    headers = {
        "Allow": methods,
        "Accept-Post": "application/sdp",
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Max-Age": "86400",
    }
    return web.Response(status=200, headers=headers)
