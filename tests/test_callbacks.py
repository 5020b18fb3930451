"""Callbacks with the customer's secret word, through the real server's API (no speech engines: fast).

A customer (or their bank's app) books a callback; agents of the callback's queue see it, one takes it ("Call now",
exactly one of two at once wins) and is shown the word to read back; the status page and the SMS webhook (a local
stand-in receiver that checks the signature) hear every change. The word never leaves the vault except for that
agent: not in any answer to the customer, in logs, or in the audit log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web

from calls.context import Reason, RoutingSettings
from journeys.callbacks import day_namer, last4, span
from journeys.menus import handoff_ref
from journeys.settings import CallbackSettings, JourneySettings
from journeys.signatures import signature_header
from store.security import token_hash
from tests.server import TestServer
from tests.test_server import wait_for

WORD = "marmalade"
PHONE = "+44 20 7946 0018"


def booking(server: TestServer, start_in: float = 3600.0, length: float = 1800.0, **fields) -> dict:
    body = {
        "phone": PHONE,
        "window": {"start": server.now + start_in, "end": server.now + start_in + length},
        "subject": "My card was declined at the till",
        "secret": WORD,
    }
    return {**body, **fields}


async def make(tmp_path, routing: RoutingSettings | None = None, **settings) -> TestServer:
    extra = {"routing": routing} if routing is not None else {}
    journeys = JourneySettings(callbacks=CallbackSettings(**settings))
    s = await TestServer(tmp_path / "data", journeys=journeys, **extra).start()
    s.tokens = {name: s.add_agent(name) for name in ("alice", "bob") if s.agent(name) is None}  # once per store
    return s


@pytest.fixture
async def server(tmp_path):
    s = await make(tmp_path)
    yield s
    await s.stop()


def bearer(server: TestServer, name: str = "alice") -> dict:
    return {"Authorization": f"Bearer {server.tokens[name]}"}


async def book(http, server: TestServer, body: dict | None = None, status: int = 201) -> dict:
    async with http.post(f"{server.base}/api/callbacks", json=body or booking(server)) as r:
        text = await r.text()
        assert r.status == status, text
        return json.loads(text)


async def post(http, server: TestServer, path: str, name: str = "alice", status: int = 200, **body) -> dict:
    async with http.post(f"{server.base}{path}", json=body, headers=bearer(server, name) if name else {}) as r:
        text = await r.text()
        assert r.status == status, text
        return json.loads(text)


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_booking_the_status_page_and_the_queue(server, http):
    answer = await book(http, server)
    cb, url = answer["callback"], answer["status_url"]
    assert WORD not in json.dumps(answer)
    assert cb["state"] == "booked" and cb["status"] == "Booked" and cb["phone"] == "…0018"
    assert url.startswith(f"{server.base}/callback/") and len(token_of(url)) >= 43
    assert server.store.callbacks.by_token(token_hash(token_of(url))).id == cb["id"]  # only the hash is kept
    assert WORD.encode() not in server.store.callbacks.secret(cb["id"])  # sealed

    async with http.get(url) as r:  # the page
        assert r.status == 200 and "callback.js" in await r.text()
    async with http.get(f"{server.base}/api/callback/{token_of(url)}") as r:
        status = await r.json()
        assert status["callback"]["state"] == "booked" and WORD not in json.dumps(status)

    async with http.get(f"{server.base}/api/callbacks", headers=bearer(server)) as r:
        [queued] = (await r.json())["callbacks"]
    assert queued["subject"] == "My card was declined at the till" and queued["phone"] == "+442079460018"
    assert queued["window_start"] == server.now + 3600 and queued["queue"] == "general"
    assert WORD not in json.dumps(queued)
    async with http.get(f"{server.base}/api/callbacks") as r:
        assert r.status == 401  # the queue is the agents'

    [event] = server.store.events.recent(["phone:+442079460018"], 0)
    assert event.type == "callback.booked" and event.detail["callback_id"] == cb["id"]
    assert [(a["actor"], a["action"]) for a in server.store.audit.log(cb["id"])] == [("customer", "callback.book")]


async def test_iso_8601_windows(server, http):
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(server.now + 7200))
    end = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(server.now + 9000))
    cb = (await book(http, server, booking(server, window={"start": start, "end": end})))["callback"]
    assert cb["window_start"] == int(server.now + 7200) and cb["window_end"] == int(server.now + 9000)


@pytest.mark.parametrize(
    "fields, says, text",
    [
        ({"phone": None}, "phone", "callback.error_phone"),
        ({"phone": "020 7946 0018"}, "phone", "callback.error_phone"),  # no country code
        ({"phone": "+44 12"}, "phone", "callback.error_phone"),
        ({"phone": "+44 20 7946 0018 ext 3"}, "phone", "callback.error_phone"),
        ({"window": None}, "window", None),
        ({"window": {"start": 0}}, "window", None),
        ({"window": {"start": "2026-12-01T14:00:00", "end": "2026-12-01T15:00:00"}}, "time zone", None),
        ({"window": {"start": "tomorrow", "end": "later"}}, "ISO 8601", None),
        ({"window": {"start": True, "end": 5}}, "window.start", None),
        ({"subject": ""}, "subject", "callback.error_subject"),
        ({"subject": "x" * 201}, "subject", "callback.error_subject"),
        ({"subject": "line\nbreak"}, "subject", "callback.error_subject"),
        ({"secret": "ab"}, "secret", "callback.error_secret"),
        ({"secret": "x" * 41}, "secret", "callback.error_secret"),
        ({"secret": "declined"}, "not in the subject", "callback.error_secret_in_subject"),
        ({"secret": 1234}, "secret", "callback.error_secret"),
        ({"language": "english!"}, "language", None),
        ({"customer_id": "x" * 65}, "customer id", None),
        ({"agent": "bob"}, "unknown fields", None),
    ],
)
async def test_bookings_are_checked(server, http, fields, says, text):
    """The refusal names the field; one the booking page can cause names its words in the page's catalogue."""
    body = {k: v for k, v in booking(server, **fields).items() if v is not None}
    answer = await book(http, server, body, status=400)
    assert says in answer["error"] and answer.get("text") == text
    assert text is None or text.startswith("callback.") and text in server.calls.services.texts.texts("pt")


@pytest.mark.parametrize(
    "start_in, length, says, text",
    [
        (-3600, 1800, "future", "callback.error_window_past"),
        (3600, 600, "at least 15 minutes", "callback.error_window_short"),
        (29 * 86400, 3600, "within 14 days", "callback.error_window_far"),
    ],
)
async def test_windows_are_checked(server, http, start_in, length, says, text):
    answer = await book(http, server, booking(server, start_in, length), status=400)
    assert says in answer["error"] and answer["text"] == text


async def test_rate_limits_per_address_and_per_number(tmp_path, http):
    server = await make(tmp_path, per_address=4, per_number=2, daily_per_number=3)
    try:
        await book(http, server)
        await book(http, server)
        answer = await book(http, server, status=429)  # the number's hourly limit
        assert "this number" in answer["error"] and answer["text"] == "callback.error_number"
        await book(http, server, booking(server, phone="+1 415 555 0100"))  # the address's fourth try...
        answer = await book(http, server, booking(server, phone="+1 415 555 0101"), status=429)  # ...was its last
        assert "this address" in answer["error"] and answer["text"] == "callback.error_throttled"
    finally:
        await server.stop()


async def test_a_number_is_capped_per_day_across_restarts(tmp_path, http):
    server = await make(tmp_path, per_number=100, daily_per_number=2)
    try:
        await book(http, server)
        await book(http, server)
        await book(http, server, status=429)
    finally:
        await server.stop()
    again = await make(tmp_path, per_number=100, daily_per_number=2)  # the same store: the count survives
    try:
        answer = await book(http, again, status=429)
        assert "today" in answer["error"] and answer["text"] == "callback.error_today"
        again.now += 86400 + 60  # a day later, the number may book again
        await book(http, again)
    finally:
        await again.stop()


async def test_unknown_status_tokens_are_throttled(server, http):
    statuses = []
    for i in range(21):
        async with http.get(f"{server.base}/api/callback/{'x' * 30}{i}") as r:
            statuses.append(r.status)
    assert statuses[:20] == [404] * 20 and statuses[20] == 429


async def test_concurrent_claims_have_one_winner(server, http):
    cb = (await book(http, server))["callback"]
    path = f"/api/callbacks/{cb['id']}/claim"
    answers = await asyncio.gather(
        *(http.post(f"{server.base}{path}", json={}, headers=bearer(server, name)) for name in ("alice", "bob"))
    )
    by_status = {r.status: (r, await r.json()) for r in answers}
    assert sorted(by_status) == [200, 409]
    won, lost = by_status[200][1], by_status[409][1]
    assert won["secret"] == WORD and won["read_back"] == f"Your secret is {WORD}"
    assert WORD not in json.dumps(lost) and "is calling this customer already" in lost["error"]
    winner = won["callback"]["agent"]
    loser = "bob" if winner == "alice" else "alice"
    async with http.get(f"{server.base}/api/callbacks/{cb['id']}/secret", headers=bearer(server, loser)) as r:
        assert r.status == 403 and WORD not in await r.text()
    async with http.get(f"{server.base}/api/callbacks/{cb['id']}/secret", headers=bearer(server, winner)) as r:
        assert (await r.json())["secret"] == WORD
    await post(http, server, f"/api/callbacks/{cb['id']}/done", loser, status=409)


class Listener:
    """A WebSocket's messages as they come (a console's or a status page's)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.events = ws, []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            self.events.append(json.loads(message.data))

    def states(self) -> list[str]:
        return [e["callback"]["state"] for e in self.events if e["type"] == "callback"]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def test_transitions_stream_to_consoles_and_the_status_page(server, http):
    answer = await book(http, server)
    cb, token = answer["callback"], token_of(answer["status_url"])
    console = Listener(await http.ws_connect(f"{server.base}/api/ws", headers=bearer(server, "bob")))
    page = Listener(await http.ws_connect(f"{server.base}/api/callback/{token}/ws"))
    await wait_for(lambda: page.states() == ["booked"])
    base = f"/api/callbacks/{cb['id']}"
    for attempt in (1, 2, 3):  # three tries without an answer end it
        claimed = await post(http, server, f"{base}/claim")
        assert claimed["callback"]["state"] == "calling" and claimed["callback"]["attempts"] == attempt
        after = (await post(http, server, f"{base}/no-answer"))["callback"]
        assert after["state"] == ("no_answer" if attempt == 3 else "booked")
    await post(http, server, f"{base}/claim", status=409)
    expected = ["calling", "booked", "calling", "booked", "calling", "no_answer"]
    await wait_for(lambda: page.states() == ["booked", *expected])
    await wait_for(lambda: console.states() == expected)
    assert all(WORD not in json.dumps(e) for e in page.events + console.events)
    assert page.events[-1]["callback"]["status"] == "We could not reach you"
    contexts = [e for e in console.events if e["type"] == "context" and e.get("callback_id")]
    assert not contexts  # the context went to the agent who called (alice), not bob
    await console.close()
    await page.close()

    actions = [(a["actor"], a["action"], a["detail"]) for a in server.store.audit.log(cb["id"])]
    assert actions[:4] == [
        ("customer", "callback.book", "queue=general"),
        ("alice", "callback.claim", "attempt 1"),
        ("alice", "callback.secret_view", None),
        ("alice", "callback.no_answer", "attempt 1 of 3"),
    ]
    assert actions[-1] == ("alice", "callback.no_answer", "attempt 3 of 3, final")

    done = (await book(http, server, booking(server, phone="+1 415 555 0100")))["callback"]
    await post(http, server, f"/api/callbacks/{done['id']}/claim", "bob")
    await post(http, server, f"/api/callbacks/{done['id']}/done", "alice", status=409)  # not hers
    assert (await post(http, server, f"/api/callbacks/{done['id']}/done", "bob"))["callback"]["state"] == "done"
    assert server.store.audit.log(done["id"])[-1]["action"] == "callback.done"


async def test_reschedule_only_while_booked_and_cancel(server, http):
    answer = await book(http, server)
    cb, token = answer["callback"], token_of(answer["status_url"])
    url = f"{server.base}/api/callback/{token}"
    later = {"start": server.now + 86400, "end": server.now + 86400 + 3600}
    async with http.post(f"{url}/reschedule", json={"window": later}) as r:
        moved = (await r.json())["callback"]
        assert r.status == 200 and moved["window_start"] == later["start"] and moved["state"] == "booked"
    async with http.post(f"{url}/reschedule", json={"window": {"start": server.now, "end": server.now + 60}}) as r:
        assert r.status == 400
    await post(http, server, f"/api/callbacks/{cb['id']}/claim")
    async with http.post(f"{url}/reschedule", json={"window": later}) as r:
        assert r.status == 409 and "only a booked callback" in (await r.json())["error"]
    async with http.post(f"{url}/cancel") as r:  # while the agent is calling: they may still say no
        assert r.status == 200 and (await r.json())["callback"]["state"] == "cancelled"
    async with http.post(f"{url}/cancel") as r:
        assert r.status == 409
    async with http.post(f"{url}/reschedule", json={"window": later}) as r:
        assert r.status == 409
    await post(http, server, f"/api/callbacks/{cb['id']}/done", status=409)
    async with http.get(f"{server.base}/api/callbacks", headers=bearer(server)) as r:
        assert (await r.json())["callbacks"] == []
    actions = [(a["actor"], a["action"]) for a in server.store.audit.log(cb["id"])]
    assert ("customer", "callback.reschedule") in actions and actions[-1] == ("customer", "callback.cancel")


async def test_the_secret_is_never_logged_or_audited(server, http, caplog):
    caplog.set_level(logging.DEBUG)
    answer = await book(http, server)
    cb, token = answer["callback"], token_of(answer["status_url"])
    async with http.get(f"{server.base}/api/callback/{token}") as r:
        assert WORD not in await r.text()
    claimed = await post(http, server, f"/api/callbacks/{cb['id']}/claim")
    assert claimed["secret"] == WORD
    await post(http, server, f"/api/callbacks/{cb['id']}/done")
    assert WORD not in caplog.text and "7946 0018" not in caplog.text and "79460018" not in caplog.text
    assert token not in caplog.text  # the status page's token is redacted from the access log
    for row in server.store.audit.log(cb["id"]):
        assert WORD not in json.dumps(row)


async def test_a_reason_routes_the_callback_to_its_queue(tmp_path, http):
    reason = Reason("payment.declined", "Declined card payment", "A card payment was declined.", "cards")
    routing = RoutingSettings(queues={"general": (), "cards": ("cards",)}, reasons={"payment.declined": reason})
    server = await make(tmp_path, routing=routing)
    try:
        server.store.agents.set_skills("bob", ("cards",))
        server.calls.context.record(None, PHONE, "payment.declined", {"amount": 1999}, "test")
        cb = (await book(http, server))["callback"]
        async with http.get(f"{server.base}/api/callbacks", headers=bearer(server, "alice")) as r:
            assert (await r.json())["callbacks"] == []  # alice has not the cards skill
        async with http.get(f"{server.base}/api/callbacks", headers=bearer(server, "bob")) as r:
            [queued] = (await r.json())["callbacks"]
        assert queued["queue"] == "cards" and queued["reason"] == "Declined card payment"
        await post(http, server, f"/api/callbacks/{cb['id']}/claim", "alice", status=404)
        console = Listener(await http.ws_connect(f"{server.base}/api/ws", headers=bearer(server, "bob")))
        await post(http, server, f"/api/callbacks/{cb['id']}/claim", "bob")
        await wait_for(lambda: any(e["type"] == "context" for e in console.events))
        context = next(e for e in console.events if e["type"] == "context")
        assert context["callback_id"] == cb["id"] and context["reason"]["label"] == "Declined card payment"
        await console.close()
    finally:
        await server.stop()


async def menu_hand_off(http, server: TestServer) -> dict:
    """A customer takes a menu's "Call me back about a payment": the query the menu sends them to /callback with."""
    link = {"kind": "menu", "menu": "example", "phone": PHONE, "customer_ref": "C-100", "language": "pt"}
    created = await post(http, server, "/api/links", status=201, **link)
    token = token_of(created["url"])
    key = (await post(http, server, f"/api/menu/{token}/start", name=""))["key"]
    for option in ("payments", "callback"):
        view = await post(http, server, f"/api/menu/{token}/step", name="", key=key, step="choose", option=option)
    assert view["result"]["kind"] == "redirect" and view["result"]["url"].startswith("/callback?")
    return dict(parse_qsl(urlsplit(view["result"]["url"]).query))


async def test_a_menu_hands_its_query_to_the_booking(server, http):
    query = await menu_hand_off(http, server)
    menu_id = query["from"].split(".")[0]  # the menu link's id, signed by the server
    assert query == {
        "phone": PHONE,
        "customer_id": "C-100",
        "subject": "Um pagamento",
        "language": "pt",
        "from": query["from"],
    }
    assert server.store.links.get(menu_id).kind == "menu"
    cb = (await book(http, server, {**booking(server), **query}))["callback"]
    assert cb["subject"] == "Um pagamento" and cb["language"] == "pt"
    assert server.store.callbacks.get(cb["id"]).origin == menu_id
    assert server.store.audit.log(cb["id"])[0]["detail"] == f"queue=general from={menu_id}"
    again = await book(http, server, {**booking(server), **query}, status=409)
    assert "booked its callback already" in again["error"]  # one menu, one callback

    console = Listener(await http.ws_connect(f"{server.base}/api/ws", headers=bearer(server, "bob")))
    await post(http, server, f"/api/callbacks/{cb['id']}/claim", "bob")
    await wait_for(lambda: any(e["type"] == "context" and e.get("callback_id") for e in console.events))
    context = next(e for e in console.events if e["type"] == "context" and e.get("callback_id"))
    await console.close()
    steps = [(s["step"], s["detail"].get("option") or s["detail"].get("action")) for s in context["steps"]]
    assert steps == [("action", "start"), ("choice", "payments"), ("choice", "callback"), ("action", "callback")]
    assert all(s["link_id"] == menu_id for s in context["steps"]) and context["idv"] is None


async def test_the_booking_page_speaks_the_menu_language(server, http):
    async with http.get(f"{server.base}/api/callbacks/texts?language=pt") as r:
        answer = await r.json()
    assert answer["language"] == "pt" and answer["texts"]["callback.title"] == "Marcar uma chamada"
    assert all(key.startswith("callback.") for key in answer["texts"])
    async with http.get(f"{server.base}/api/callbacks/texts?language=zz", headers={"Accept-Language": "de"}) as r:
        assert (await r.json())["language"] == "de"


STATUS_PAGE_KEYS = {"callback.status_title", "callback.state_booked", "callback.state_no_answer", "callback.window"}
STATUS_PAGE_KEYS |= {"callback.another_time", "callback.reschedule", "callback.cancel", "callback.error_not_found"}


async def test_the_status_page_and_the_sms_speak_the_callbacks_language(server, http):
    answer = await book(http, server, booking(server, language="pt"))
    async with http.get(f"{server.base}/api/callback/{token_of(answer['status_url'])}") as r:
        cb = (await r.json())["callback"]
    assert cb["language"] == "pt" and cb["status"] == "Marcada"
    for language in ("en", "pt", "es", "fr", "de"):
        async with http.get(f"{server.base}/api/callbacks/texts?language={language}") as r:
            words = (await r.json())["texts"]
        assert STATUS_PAGE_KEYS <= words.keys() and not any(".sms_" in key for key in words), language
        assert language == "en" or words["callback.state_booked"] != "Booked", language

    callbacks = server.node.journeys.callbacks
    stored = server.store.callbacks.get(cb["id"])
    text = callbacks.sms_text(stored, "booked")
    assert text.startswith(f"{server.calls.settings.company}: a sua chamada está marcada para ") and "UTC" in text
    assert not any(f"{day} " in text for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
    german = span(1764597600, 1764599400, day_namer(server.calls.services.texts, "de"))
    assert german == "Mo., 1. Dez., 14:00-14:30 UTC"
    italian = (await book(http, server, booking(server, phone="+39 06 1234 5678", language="it")))["callback"]
    assert italian["status"] == "Booked"  # no catalogue: English


async def test_a_booking_without_a_menu_has_no_steps(server, http):
    cb = (await book(http, server))["callback"]
    [event] = server.store.events.recent(["phone:+442079460018"], 0)
    assert event.detail == {"callback_id": cb["id"], "subject": "My card was declined at the till"}
    claimed = await post(http, server, f"/api/callbacks/{cb['id']}/claim")
    assert claimed["callback"]["queue"] == "general"
    context = server.node.journeys.callbacks.context_view(server.store.callbacks.get(cb["id"]))
    assert context["steps"] == [] and context["idv"] is None


async def test_queue_and_from_are_checked(server, http):
    video = await post(http, server, "/api/links", status=201, phone=PHONE)
    for fields, says in [
        ({"queue": "nope"}, "queue: one of the routing's queues (general)"),
        ({"queue": 5}, "queue: one of"),
        ({"from": "000000000000"}, "from: the id of the menu link"),
        ({"from": video["link"]["id"]}, "from: the id of the menu link"),  # unsigned: anyone can name a link
        ({"from": handoff_ref(server.node.calls.services.vault, video["link"]["id"])}, "from: the id"),  # no menu
        ({"from": video["link"]["id"] + ".0123456789abcdef0123456789abcdef"}, "from: the id of the menu link"),
        ({"from": ["x"]}, "from: the id of the menu link"),
    ]:
        answer = await book(http, server, booking(server, **fields), status=400)
        assert says in answer["error"], (fields, answer)
    assert server.store.callbacks.open() == []


async def test_a_queue_asked_for_wins_over_the_likely_reason(tmp_path, http):
    reason = Reason("payment.declined", "Declined card payment", "A card payment was declined.", "cards")
    routing = RoutingSettings(queues={"general": (), "cards": ("cards",)}, reasons={"payment.declined": reason})
    server = await make(tmp_path, routing=routing)
    try:
        server.calls.context.record(None, PHONE, "payment.declined", {"amount": 1999}, "test")
        asked = (await book(http, server, booking(server, queue="general")))["callback"]
        likely = (await book(http, server))["callback"]
        plain = (await book(http, server, booking(server, phone="+1 415 555 0101", queue="cards")))["callback"]
        queues = {cb.id: cb.queue for cb in server.store.callbacks.open()}
        assert queues == {asked["id"]: "general", likely["id"]: "cards", plain["id"]: "cards"}
    finally:
        await server.stop()


class SmsGateway:
    """A stand-in for the operator's SMS sender: checks each message's signature, fails the first on purpose."""

    def __init__(self, secret: str, fail_first: int = 1) -> None:
        self.secret, self.fail_first, self.messages, self.tries = secret, fail_first, [], 0
        app = web.Application()
        app.router.add_post("/sms", self.receive)
        self.runner = web.AppRunner(app)

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/sms"  # type: ignore[union-attr]

    async def receive(self, request: web.Request) -> web.Response:
        self.tries += 1
        body = await request.read()
        parts = dict(p.split("=", 1) for p in request.headers["X-VoxGate-Signature"].split(","))
        expected = hmac.new(self.secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(parts["v1"], expected) or abs(time.time() - int(parts["t"])) > 300:
            return web.Response(status=401)
        if self.tries <= self.fail_first:
            return web.Response(status=503)
        self.messages.append(json.loads(body))
        return web.Response(status=204)


async def test_sms_webhook_is_signed_retried_and_in_order(tmp_path, http):
    gateway = SmsGateway("shh-its-a-secret")
    url = await gateway.start()
    server = await make(tmp_path, sms_webhook=url, sms_secret="shh-its-a-secret", sms_retries=3)
    try:
        answer = await book(http, server)
        cb = answer["callback"]
        await post(http, server, f"/api/callbacks/{cb['id']}/claim")
        await post(http, server, f"/api/callbacks/{cb['id']}/done")
        await wait_for(lambda: len(gateway.messages) == 3)
        assert [m["status"] for m in gateway.messages] == ["booked", "calling", "done"]
        assert gateway.tries == 4  # the first try was refused, and retried
        first = gateway.messages[0]
        assert first["callback_id"] == cb["id"] and first["phone"] == "+442079460018"
        assert first["status_url"] == answer["status_url"] and WORD not in json.dumps(gateway.messages)
        assert "booked for" in first["text"] and "UTC" in first["text"]
        async with http.get(first["status_url"].replace("/callback/", "/api/callback/")) as r:
            assert (await r.json())["callback"]["state"] == "done"
    finally:
        await server.stop()
        await gateway.runner.cleanup()


async def test_a_failing_sms_webhook_never_blocks_and_logs_four_digits(tmp_path, http, caplog):
    gateway = SmsGateway("right-secret")
    url = await gateway.start()
    server = await make(tmp_path, sms_webhook=url, sms_secret="wrong-secret", sms_retries=2, sms_timeout=1.0)
    try:
        started = time.monotonic()
        await book(http, server)
        assert time.monotonic() - started < 0.5  # the booking did not wait for the webhook
        await wait_for(lambda: "SMS webhook failed 2 times" in caplog.text, timeout=5.0)
        assert "HTTP 401" in caplog.text and "…0018" in caplog.text and "79460018" not in caplog.text
        assert gateway.messages == []
    finally:
        await server.stop()
        await gateway.runner.cleanup()


def test_signature_and_texts():
    body = b'{"status": "booked"}'
    t = "1764000000"
    assert (
        signature_header("k", body, int(t))
        == f"t={t},v1=" + hmac.new(b"k", t.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    assert span(1764597600, 1764599400) == "Mon 1 Dec, 14:00-14:30 UTC"
    assert span(1764597600, 1764597600 + 86400) == "Mon 1 Dec, 14:00-Tue 2 Dec 14:00 UTC"
    assert last4("+44 20 7946 0018") == "…0018"


def test_the_callbacks_table_of_a_config_file(tmp_path, monkeypatch):
    from cli import config
    from cli.main import _callback_settings, _parser, _subparser

    secret = tmp_path / "sms.secret"
    secret.write_text("from-a-file\n")
    file = tmp_path / "voxgate.toml"
    file.write_text(
        '[callbacks]\nmax-days = 7\nper-number = 2\nqueue = "general"\nmin-window-minutes = 30\n'
        f'sms-webhook = "https://sms.example.com/send"\nsms-secret-file = "{secret}"\n'
    )
    argv = ["serve", "--config", str(file), "--callbacks-attempts", "5"]
    parser = _parser()
    args = config.resolve(_subparser(parser, "serve"), parser.parse_args(argv), argv[1:], {})
    s = _callback_settings(args)
    assert (s.enabled, s.max_days, s.per_number, s.queue, s.min_window, s.attempts) == (True, 7, 2, "general", 1800, 5)
    assert (s.sms_webhook, s.sms_secret) == ("https://sms.example.com/send", "from-a-file")
    shown = config.show(_subparser(parser, "serve"), args)
    assert "from-a-file" not in shown and 'callbacks-sms-secret = "***"' in shown
    argv = ["serve", "--callbacks-sms-webhook", "https://sms.example.com/send"]
    with pytest.raises(SystemExit, match="needs --callbacks-sms-secret"):
        _callback_settings(config.resolve(_subparser(parser, "serve"), parser.parse_args(argv), argv[1:], {}))


async def test_callbacks_can_be_off(tmp_path, http):
    server = await make(tmp_path, enabled=False)
    try:
        await book(http, server, status=404)
        async with http.get(f"{server.base}/callback") as r:
            assert r.status == 404
    finally:
        await server.stop()
