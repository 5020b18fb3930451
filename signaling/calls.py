"""Links and their calls, as the agent sees them: create, list, revoke, join with media, stills, ID&V, transcript."""

from __future__ import annotations

from aiohttp import web

from calls.access import Permission
from calls.service import LINK_FIELDS, link_options, snapshot_view
from calls.subtitles import to_webvtt
from media.webrtc import parse_offer
from signaling.middleware import CALLS, JOURNEYS, agent_of, json_body
from store.errors import Invalid, NotFound, refuse_unknown

routes = web.RouteTableDef()

MEDIA = ("video", "audio")  # what a call's link asks the customer for: camera and microphone, or the microphone


@routes.post("/api/links")
async def create_link(request: web.Request) -> web.Response:
    """A one-time link: a call (``kind`` "video", the default; ``media`` "audio" asks for the microphone only), or a
    journey's (``menu``, ``payment``), whose service checks its own fields."""
    agent = agent_of(request)
    body = await json_body(request)
    if (kind := body.get("kind", "video")) != "video":
        journeys = request.app[JOURNEYS]
        journey = {"menu": journeys.menus, "payment": journeys.payments}.get(kind) if isinstance(kind, str) else None
        if journey is None:
            raise Invalid("kind: 'video', 'menu' or 'payment' (a journey this server runs)")
        link, url, qr_svg = await journey.create(agent, body)
        return web.json_response({"link": link.to_dict(), "url": url, "qr_svg": qr_svg}, status=201)
    refuse_unknown(body, {"kind", "media", *LINK_FIELDS})
    if (media := body.get("media", "video")) not in MEDIA:
        raise Invalid("media: 'video' (camera and microphone, the default) or 'audio' (the microphone only)")
    link, url, qr_svg = await request.app[CALLS].create_link(
        agent, **link_options(body), detail={"media": media} if media == "audio" else None
    )
    return web.json_response({"link": link.to_dict(), "url": url, "qr_svg": qr_svg}, status=201)


@routes.get("/api/links")
async def list_links(request: web.Request) -> web.Response:
    """The agent's links, newest first, 50 at a time: ``?before=CREATED`` pages back through the history."""
    agent = agent_of(request)
    try:
        before = float(request.query["before"]) if "before" in request.query else None
    except ValueError:
        raise Invalid("before must be a time in seconds") from None
    links = request.app[CALLS].store.links.of_agent(agent.id, before=before)
    return web.json_response({"links": [link.to_dict() for link in links]})


@routes.get("/api/links/{id}")
async def get_link(request: web.Request) -> web.Response:
    calls, agent = request.app[CALLS], agent_of(request)
    link = calls.link_for_agent(agent, request.match_info["id"])
    return web.json_response({"link": link.to_dict(), "idv": calls.idv_record(agent, link.id)})


@routes.post("/api/links/{id}/revoke")
async def revoke_link(request: web.Request) -> web.Response:
    link = request.app[CALLS].revoke(agent_of(request), request.match_info["id"])
    return web.json_response({"link": link.to_dict()})


@routes.post("/api/calls/{id}/escalate")
async def escalate(request: web.Request) -> web.Response:
    """A video link for the caller of a live phone call, pre-filled from the call."""
    agent = agent_of(request)
    link, url, qr_svg = await request.app[CALLS].escalate(agent, request.match_info["id"])
    return web.json_response({"link": link.to_dict(), "url": url, "qr_svg": qr_svg}, status=201)


@routes.post("/api/calls/{id}/agent-offer")
async def agent_offer(request: web.Request) -> web.Response:
    agent = agent_of(request)
    offer = parse_offer(await json_body(request))
    return web.json_response(await request.app[CALLS].agent_offer(agent, request.match_info["id"], offer))


@routes.post("/api/calls/{id}/end")
async def end_call(request: web.Request) -> web.Response:
    link = await request.app[CALLS].agent_end(agent_of(request), request.match_info["id"])
    return web.json_response({"link": link.to_dict()})


@routes.post("/api/calls/{id}/watching")
async def watching(request: web.Request) -> web.Response:
    """The console reports the customer's media on screen (``{"watching": true}``) or no longer: the customer's
    page tells them whether the agent can see them from this, and only from this."""
    body = await json_body(request)
    if not isinstance(body.get("watching"), bool):
        raise Invalid("watching: true or false")
    request.app[CALLS].set_watched(agent_of(request), request.match_info["id"], body["watching"])
    return web.json_response({"watching": body["watching"]})


@routes.post("/api/calls/{id}/language")
async def customer_language(request: web.Request) -> web.Response:
    """Mid-call, the agent corrects the customer's language (``{"language": "pt"}``), or changes their own
    (``{"language": "es", "speaker": "agent"}``)."""
    body = await json_body(request)
    speaker = body.get("speaker", "customer")
    link = request.app[CALLS].set_spoken_language(
        agent_of(request), request.match_info["id"], body.get("language"), speaker
    )
    return web.json_response({"link": link.to_dict(), "language": body["language"], "speaker": speaker})


@routes.post("/api/calls/{id}/hearing")
async def agent_hearing(request: web.Request) -> web.Response:
    """The agent chooses what to hear of the customer (``{"hear": "original" | "translated" | "both"}``)."""
    body = await json_body(request)
    calls = request.app[CALLS]
    call = calls.live_call(agent_of(request), request.match_info["id"])
    return web.json_response(calls.set_hearing("agent", call, body.get("hear")))


@routes.post("/api/calls/{id}/snapshots")
async def take_snapshot(request: web.Request) -> web.Response:
    agent = agent_of(request)
    snap = await request.app[CALLS].take_snapshot(agent, request.match_info["id"])
    return web.json_response({"snapshot": snapshot_view(snap, agent)}, status=201)


@routes.get("/api/calls/{id}/snapshots")
async def list_snapshots(request: web.Request) -> web.Response:
    agent = agent_of(request)
    snaps = request.app[CALLS].snapshots(agent, request.match_info["id"])
    return web.json_response({"snapshots": [snapshot_view(s, agent) for s in snaps]})


@routes.get("/api/snapshots/{id}")
async def get_snapshot(request: web.Request) -> web.Response:
    jpeg = request.app[CALLS].snapshot_jpeg(agent_of(request), request.match_info["id"])
    headers = {"Cache-Control": "no-store"}
    if request.query.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="snapshot-{request.match_info["id"]}.jpg"'
    return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)


@routes.get("/api/calls/{id}/context")
async def call_context(request: web.Request) -> web.Response:
    """Why the customer is likely calling, their recent events, and what they did in the menu that led here."""
    calls = request.app[CALLS]
    return web.json_response(calls.context_view(calls.link_for_agent(agent_of(request), request.match_info["id"])))


@routes.get("/api/calls/{id}/idv")
async def call_idv(request: web.Request) -> web.Response:
    """The call's ID&V result (kept with it after the call): status, factors, reason, history."""
    record = request.app[CALLS].idv_record(agent_of(request), request.match_info["id"])
    if record is None:
        raise NotFound("this call had no identity check")
    return web.json_response(record)


@routes.post("/api/calls/{id}/idv/code")
async def ask_code(request: web.Request) -> web.Response:
    """Ask the customer for their PIN or a one-time code now, rather than wait for the voice."""
    idv = request.app[CALLS].agent_idv(agent_of(request), request.match_info["id"])
    return web.json_response(await idv.ask_code())


@routes.post("/api/calls/{id}/enrolment")
async def offer_enrolment(request: web.Request) -> web.Response:
    """Offer voice enrolment to the verified caller: their page asks for consent, then their speech is collected."""
    idv = request.app[CALLS].agent_idv(agent_of(request), request.match_info["id"])
    return web.json_response(idv.ask_consent())


@routes.get("/api/calls/{id}/transcript")
async def transcript(request: web.Request) -> web.Response:
    data, origin = await request.app[CALLS].transcript(agent_of(request), request.match_info["id"])
    name = f"transcript-{request.match_info['id']}"
    if request.query.get("format", "json") == "vtt":
        return web.Response(
            text=to_webvtt(data, origin),
            content_type="text/vtt",
            headers={"Content-Disposition": f'attachment; filename="{name}.vtt"'},
        )
    return web.json_response(data, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


@routes.get("/api/audit")
async def audit(request: web.Request) -> web.Response:
    """The audit log: ``?link=ID`` for one call's rows, ``?actor=NAME`` for one person's, the latest 1,000 rows.
    Supervisors, fraud analysts and admins read it all; an agent reads their own calls' rows and their own."""
    agent, calls = agent_of(request), request.app[CALLS]
    link_id, actor = request.query.get("link"), request.query.get("actor")
    if not calls.access.may(agent, Permission.AUDIT_READ):
        if link_id:
            calls.link_for_agent(agent, link_id)
        elif actor not in (None, agent.name):
            calls.access.require(agent, Permission.AUDIT_READ)
        else:
            actor = agent.name
    return web.json_response({"audit": calls.store.audit.log(link_id, actor)})
