"""The customer's side: the link's page, joining with media, and the steps of the identity check.

Customers are authenticated by the link token alone, and everything they do in
their call (hang up, identify, verify, consent) by the call key the offer returned.
"""

from __future__ import annotations

from aiohttp import web

from calls.access import customer_id
from identity.idv import LiveIdv
from media.webrtc import parse_offer
from signaling.middleware import CALLS, JOURNEYS, NO_STORE, WEB_DIR, client, json_body, page_headers, parse_json
from store.errors import Gone, Invalid

routes = web.RouteTableDef()


# The page a link opens, by its kind: each journey's own, read once.
PAGES = {
    kind: (WEB_DIR / name).read_text()
    for kind, name in {"video": "customer.html", "menu": "menu.html", "payment": "pay.html"}.items()
}


@routes.get("/j/{token}")
async def page(request: web.Request) -> web.Response:
    """The customer's page, in their language from the first byte (``<html lang>``). A GET never uses the link
    up: chat apps fetch URLs to preview them."""
    calls, token = request.app[CALLS], request.match_info["token"]
    try:
        link = await calls.customer_link(token, client(request))
    except Gone:
        if (place := _after_use(request, token)) is None:
            raise
        raise web.HTTPSeeOther(place, headers=page_headers()) from None
    language = calls.page_language(link, _accept_language(request))
    html = PAGES[link.kind].replace('<html lang="en">', f'<html lang="{language}">', 1)
    return web.Response(text=html, content_type="text/html", headers=page_headers())


def _after_use(request: web.Request, token: str) -> str | None:
    """Where the customer of a used link belongs, if its journey says (a payment's result page: Back from the
    provider's page lands here)."""
    payments = request.app[JOURNEYS].payments
    return payments.result_page(token) if payments is not None else None


@routes.get("/api/join/{token}")
async def join_info(request: web.Request) -> web.Response:
    info = await request.app[CALLS].join_info(request.match_info["token"], client(request), _accept_language(request))
    return web.json_response(info, headers=NO_STORE)


@routes.post("/api/join/{token}/offer")
async def offer(request: web.Request) -> web.Response:
    sdp = parse_offer(await json_body(request))
    token, who = request.match_info["token"], client(request)
    return web.json_response(await request.app[CALLS].customer_offer(token, sdp, who, _accept_language(request)))


def _accept_language(request: web.Request) -> str | None:
    return request.headers.get("Accept-Language")


async def _step(request: web.Request) -> tuple[LiveIdv, dict]:
    """The customer's live identity check and the JSON they sent (``call_key`` plus the step's field)."""
    body = await json_body(request)
    key = body.get("call_key", "")
    return request.app[CALLS].customer_idv(request.match_info["token"], key if isinstance(key, str) else ""), body


@routes.post("/api/join/{token}/identify")
async def identify(request: web.Request) -> web.Response:
    idv, body = await _step(request)
    return web.json_response(await idv.identify(customer_id(body.get("customer_id"))))


@routes.post("/api/join/{token}/verify")
async def verify(request: web.Request) -> web.Response:
    idv, body = await _step(request)
    return web.json_response(await idv.verify_code(str(body.get("code", ""))))


@routes.post("/api/join/{token}/skip")
async def skip(request: web.Request) -> web.Response:
    idv, _ = await _step(request)
    return web.json_response(await idv.skip())


@routes.post("/api/join/{token}/voiceprint-consent")
async def voiceprint_consent(request: web.Request) -> web.Response:
    idv, body = await _step(request)
    if not isinstance(body.get("agree"), bool):
        raise Invalid("agree: true or false")
    return web.json_response(idv.answer_consent(body["agree"]))


@routes.post("/api/join/{token}/hearing")
async def hearing(request: web.Request) -> web.Response:
    """The customer chooses what to hear of the agent (``{"hear": "original" | "translated" | "both"}``)."""
    body = await json_body(request)
    calls, key = request.app[CALLS], body.get("call_key", "")
    call = calls.customer_call(request.match_info["token"], key if isinstance(key, str) else "")
    return web.json_response(calls.set_hearing("customer", call, body.get("hear")))


@routes.post("/api/join/{token}/hangup")
async def hangup(request: web.Request) -> web.Response:
    # sendBeacon on page close posts text/plain, so accept any content type here.
    body = parse_json(await request.read() or b"{}")
    key = body.get("call_key")
    await request.app[CALLS].customer_hangup(request.match_info["token"], key if isinstance(key, str) else "")
    return web.json_response({"ok": True})
