"""Context-aware routing: customer events from other systems, the likely reason, skill queues and who is free.

A declined payment posted by the bank's system makes the customer's next phone call go to the cards queue's free
agent (not the general one), whose console greets it with the reason; an agent away, busy, or without the
skill is passed over; the one who has waited longest goes first; events outside the window are forgotten.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from calls.context import RoutingSettings, load_routing
from peers.twilio import TwilioPeer
from store.base import Customer
from tests.server import TestServer
from tests.test_server import wait_for

TOKEN = "twilio-auth-token-of-the-test-account"
CALLER = "+44 7700 900123"
ROUTING = """
window_minutes = 30
[queues]
general = []
cards = ["cards"]
[reasons."payment.declined"]
label = "Declined card payment"
greeting = "A card payment of theirs was declined in the last half hour."
queue = "cards"
"""


@pytest.fixture
async def server(tmp_path):
    (tmp_path / "routing.toml").write_text(ROUTING)
    s = TestServer(
        tmp_path / "data", twilio_auth_token=TOKEN, media_timeout=2.0, routing=load_routing(tmp_path / "routing.toml")
    )
    await s.start()
    s.tokens = {name: s.add_agent(name) for name in ("gina", "carla", "cody")}
    s.tokens["bank"] = s.add_agent("bank", role="system")
    s.store.agents.set_skills("carla", ("cards",))
    s.store.agents.set_skills("cody", ("cards", "loans"))
    yield s
    await s.stop()


def bearer(server: TestServer, name: str) -> dict:
    return {"Authorization": f"Bearer {server.tokens[name]}"}


class Console:
    """An agent's console socket: what it was told."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.events = ws, []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            self.events.append(json.loads(msg.data))

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def console(http, server, name) -> Console:
    ws = await http.ws_connect(f"{server.base}/api/ws", headers=bearer(server, name))
    c = Console(ws)
    await wait_for(lambda: c.of("hello"))
    return c


async def post_event(http, server, who, body) -> tuple[int, dict]:
    async with http.post(f"{server.base}/api/events", json=body, headers=bearer(server, who)) as r:
        return r.status, await r.json()


async def phone_call(http, server, caller=CALLER, **params) -> TwilioPeer:
    url = "ws" + server.base.removeprefix("http") + "/twilio/media"
    peer = await TwilioPeer.connect(http, url, TOKEN)
    await peer.start({"caller": caller, **params})
    return peer


def live_of(server, name) -> list:
    agent = server.agent(name)
    return [c for c in server.calls.live.values() if c.link.agent_id == agent.id]


async def test_a_declined_payment_routes_the_next_call_to_the_cards_queue_with_its_reason(server, http):
    consoles = {name: await console(http, server, name) for name in ("gina", "carla", "cody")}
    status, body = await post_event(
        http, server, "bank", {"phone": "+447700900123", "type": "payment.declined", "detail": {"amount": "£42.10"}}
    )
    assert status == 201, body
    assert body["event"]["subject"] == "phone:+447700900123" and body["event"]["source"] == "api:bank"

    peer = await phone_call(http, server)
    await wait_for(lambda: live_of(server, "carla") or live_of(server, "cody"))
    taken = "carla" if live_of(server, "carla") else "cody"
    assert not live_of(server, "gina")  # no cards skill
    c = consoles[taken]
    await wait_for(lambda: c.of("context"))
    greeting = c.of("context")[-1]
    assert greeting["reason"]["label"] == "Declined card payment" and greeting["reason"]["queue"] == "cards"
    assert greeting["events"][0]["type"] == "payment.declined"
    assert greeting["events"][0]["detail"] == {"amount": "£42.10"}

    # The next declined customer goes to the other cards agent: the one busy on a call is passed over.
    await post_event(http, server, "bank", {"phone": "+44 7700 900999", "type": "payment.declined"})
    second = await phone_call(http, server, caller="+44 7700 900999")
    other = "cody" if taken == "carla" else "carla"
    await wait_for(lambda: live_of(server, other))
    # A caller with no recent event goes to the general queue: anyone free (gina; both cards agents are busy).
    third = await phone_call(http, server, caller="+44 7700 900555", queue="general")
    await wait_for(lambda: live_of(server, "gina"))
    context = consoles["gina"].of("context")[-1]
    assert context["reason"] is None and context["events"] == []
    for p in (peer, second, third):
        await p.ws.close()
    for c in consoles.values():
        await c.close()


async def test_nobody_free_in_the_queue_falls_back_to_the_platforms_mapping(tmp_path, http):
    s = TestServer(tmp_path / "data", twilio_auth_token=TOKEN, media_timeout=2.0, queues={"sales": "gina"})
    await s.start()
    try:
        s.add_agent("gina")
        s.tokens = {}
        peer = await phone_call(http, s, queue="sales")  # nobody's console is open: the mapping decides
        await wait_for(lambda: live_of(s, "gina"))
        await peer.ws.close()
    finally:
        await s.stop()


async def test_away_agents_are_passed_over_and_the_longest_waiting_goes_first(server, http):
    queues = server.calls.queues
    carla, cody, gina = (server.agent(n) for n in ("carla", "cody", "gina"))
    assert queues.first_available("cards") is None  # nobody has a console open
    consoles = {name: await console(http, server, name) for name in ("carla", "cody", "gina")}
    first = queues.first_available("cards")
    server.now += 5
    second = queues.first_available("cards")
    assert {first.id, second.id} == {carla.id, cody.id}  # the first taken waits again: the other goes next
    server.now += 5
    assert queues.first_available("cards").id == first.id
    async with http.post(
        f"{server.base}/api/me/availability", json={"available": False}, headers=bearer(server, "cody")
    ) as r:
        assert r.status == 200 and (await r.json())["available"] is False
    server.now += 5
    assert [queues.first_available("cards").id for _ in range(2)] == [carla.id, carla.id]
    assert queues.first_available("general").id in (gina.id, carla.id)
    assert queues.queues_of(cody) == ["general", "cards"] and queues.queues_of(gina) == ["general"]
    await consoles["carla"].close()
    await wait_for(lambda: not queues.available(carla.id))
    assert queues.first_available("cards") is None
    for name in ("cody", "gina"):
        await consoles[name].close()


async def test_agents_on_other_nodes_count_as_the_other_nodes_tell(server, http):
    """What another node shares at its heartbeat (``Queues.snapshot`` there) joins this node's view of the queues."""
    queues = server.calls.queues
    carla, cody = server.agent("carla"), server.agent("cody")
    carla_here = await console(http, server, "carla")
    long_ago = time.time() - 600
    other = {"present": {str(cody.id): {"away": False, "since": long_ago}}, "busy": [], "taken": {}}
    queues.others = lambda: [other]
    assert queues.first_available("cards").id == cody.id  # on the other node, and waiting longest
    taken = queues.snapshot()["taken"]
    assert set(taken) == {str(cody.id)}  # told to the others, so cody's wait starts again there too
    assert queues.first_available("cards").id == carla.id  # cody's turn is over
    other["busy"] = [carla.id]  # a call of carla's lives on the other node
    assert queues.first_available("cards").id == cody.id and queues.status(carla)["busy"] is True
    other["busy"], other["taken"] = [], {str(carla.id): time.time() + 60}  # the other node gave carla work
    assert queues.first_available("cards").id == cody.id
    assert queues.snapshot()["present"][str(carla.id)]["since"] > time.time()  # carla's own node takes it in
    other["present"][str(cody.id)]["away"] = True
    queues.others = lambda: [other]
    assert queues.first_available("cards").id == carla.id
    await carla_here.close()


async def test_events_are_checked_kept_for_the_window_and_found_by_the_directory(server, http):
    status, body = await post_event(http, server, "gina", {"phone": CALLER, "type": "payment.declined"})
    assert status == 403  # an agent is not another system
    for bad, why in (
        ({"type": "payment.declined"}, "customer_id or phone"),
        ({"phone": CALLER, "type": "Payment Declined"}, "type"),
        ({"phone": CALLER, "type": "x", "detail": {"blob": "a" * 3000}}, "detail"),
        ({"phone": CALLER, "type": "x", "detail": [1]}, "detail"),
        ({"customer_id": "\u202eevil", "type": "x"}, "customer id"),
    ):
        status, body = await post_event(http, server, "bank", bad)
        assert status == 400 and why in body["error"], (bad, body)

    # A customer known by id; their call comes from a number the directory has for them.
    server.store.customers.put(Customer("C-77", "Ana", ("+351 912 000 111",)))
    await post_event(http, server, "bank", {"customer_id": "c-77", "type": "signin.failed"})
    server.now += 60
    await post_event(http, server, "bank", {"customer_id": "C-77", "type": "payment.declined"})
    context = server.calls.context.of(None, "+351912000111")
    assert [e.type for e in context.events] == ["payment.declined", "signin.failed"]  # newest first
    assert context.reason.queue == "cards"
    server.now += 31 * 60  # past the window: forgotten for routing
    assert server.calls.context.of("C-77", None).events == []
    assert [a["action"] for a in server.store.audit.log(actor="bank")] == ["event.add", "event.add"]


def test_a_routing_file_is_checked_when_loaded(tmp_path):
    path = tmp_path / "routing.toml"
    for text, why in (
        ('[queues]\ngeneral = []\n[reasons."payment.declined"]\nlabel = "x"\nqueue = "card"', "no queue 'card'"),
        ('[reasons."payment.declined"]\nqueue = "general"', "missing 'label'"),
        ("[queues]\ngeneral = []\nspeed = 3", "speed"),
        ("colour = 1", "unknown settings: colour"),
        ("[queues", "Expected"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=why):
            load_routing(path)
    path.write_text(ROUTING)
    settings = load_routing(path)
    assert settings.window == 1800 and settings.queues == {"general": (), "cards": ("cards",)}
    assert settings.reasons["payment.declined"].greeting.startswith("A card payment")
    assert RoutingSettings().queues == {"general": ()}


async def test_route_takes_the_queue_asked_for_else_the_reasons_else_the_default(server, http):
    consoles = [await console(http, server, name) for name in ("gina", "carla")]
    calls = server.calls
    assert calls.route(None, CALLER)[1] == "general"
    await post_event(http, server, "bank", {"phone": CALLER, "type": "payment.declined"})
    agent, queue = calls.route(None, CALLER)
    assert (agent.name, queue) == ("carla", "cards")
    assert calls.route(None, CALLER, "general")[1] == "general"  # the customer's own choice wins
    with pytest.raises(Exception, match="no queue 'loans'"):
        calls.route(None, CALLER, "loans")
    for c in consoles:
        await c.close()


async def test_a_journey_this_server_does_not_run_is_refused_clearly(tmp_path, http):
    from journeys.settings import CallbackSettings, JourneySettings, MenuSettings

    off = JourneySettings(menus=MenuSettings(enabled=False), callbacks=CallbackSettings(enabled=False))
    s = await TestServer(tmp_path / "data", journeys=off).start()  # and no payment provider: the default
    try:
        headers = {"Authorization": f"Bearer {s.add_agent('alice')}"}
        for kind in ("menu", "payment"):
            async with http.post(f"{s.base}/api/links", json={"kind": kind}, headers=headers) as r:
                assert r.status == 400 and "a journey this server runs" in (await r.json())["error"]
        for path, says in (("/api/payments", "payments are off"), ("/api/callbacks", "callbacks are off")):
            async with http.get(f"{s.base}{path}", headers=headers) as r:
                assert r.status == 404 and says in (await r.json())["error"]
        async with http.post(f"{s.base}/api/menu/{'x' * 43}/state", json={}) as r:
            assert r.status == 404 and "visual IVR is off" in (await r.json())["error"]
    finally:
        await s.stop()
