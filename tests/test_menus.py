"""The visual IVR: menu files and their checks, the navigation's state machine (no I/O), then the API against the
real server (no speech engines): links, single use, expiry, refusals, steps recorded, ID&V, the hand-off.

The same journey in real Chromium, with the agent's console, is in ``test_browser_menu.py``.
"""

from __future__ import annotations

import json
import logging
from datetime import date

import pytest
import yaml
from aiohttp import web

from journeys.menu_file import EXAMPLES, FieldErrors, MenuError, check_value, load_menus, parse_menu
from journeys.menus import MenuSession
from journeys.settings import JourneySettings, MenuSettings
from signaling.middleware import redact
from store.base import Customer
from store.errors import Conflict, Gone, Invalid
from store.security import hash_password, token_hash
from tests.server import TestServer

TODAY = date(2026, 11, 28)
PIN = "4321"


def example():
    return load_menus()["example"]


def session() -> MenuSession:
    return MenuSession(example(), lambda: TODAY)


def render(key: str, **params) -> str:
    return key


# -- menu files ----------------------------------------------------------------------------------------------------


def test_the_shipped_example_loads_and_uses_every_action_and_field_type():
    menu = example()
    assert menu.languages == ["en", "pt"]
    assert {a.type for a in menu.actions()} == {"show", "idv", "callback", "agent", "video"}
    assert {a.source for a in menu.actions() if a.type == "show"} == {"directory", "rest"}
    types = {f.type for s in menu.screens.values() for f in s.fields}
    assert types == {"digits", "text", "date", "amount", "choice"}


def test_a_json_menu_loads_and_two_menus_may_not_share_an_id(tmp_path):
    menu = {
        "id": "tiny",
        "title": "Tiny",
        "screens": {"main": {"title": "Hi", "options": [{"label": "Agent", "action": "agent"}]}},
    }
    (tmp_path / "tiny.json").write_text(json.dumps(menu))
    assert list(load_menus([tmp_path])) == ["tiny"]
    (tmp_path / "again.json").write_text(json.dumps(menu))
    with pytest.raises(MenuError, match=r"tiny\.json: menu id 'tiny' is also the id of .*again\.json"):
        load_menus([tmp_path])
    with pytest.raises(MenuError, match="no such file or folder"):
        load_menus([tmp_path / "missing"])


BROKEN = """
id: broken
title: {pt: "Sem inglês"}
screens:
  main:
    title: Main
    options:
      - label: Cards
        next: crads
      - label: Nothing
  form:
    title: Form
    fields:
      - name: pin
        label: PIN
        type: digts
      - name: last4
        label: Last four
        type: digits
        min_length: 6
        max_length: 4
        requried: true
      - name: ref
        label: Ref
        type: text
        pattern: "[A-Z"
      - name: when
        label: When
        type: date
        max: tomorrow
    action: {type: show, source: rest, url: "https://crm.example/{last_4}", fields: {balance: Balance}}
  other:
    title: Other
    options:
      - label: Queue
        action: {type: tranfer}
"""


def test_a_broken_menu_is_refused_with_every_problem_named_by_file_screen_and_field(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    with pytest.raises(MenuError) as e:
        load_menus([path])
    lines = str(e.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    text = str(e.value)
    assert "title: needs an English text (en)" in text
    assert "screen 'main': option 1: next: no screen 'crads'" in text
    assert "screen 'main': option 2: needs next (a screen) or action" in text
    assert "screen 'form': field 'pin': type: one of digits, text, date, amount, choice, not 'digts'" in text
    assert "(did you mean 'digits'?)" in text
    assert "screen 'form': field 'last4': min_length is more than max_length" in text
    assert "screen 'form': field 'last4': unknown key 'requried' (did you mean 'required'?)" in text
    assert "screen 'form': field 'ref': pattern: not a regular expression" in text
    assert "screen 'form': field 'when': max: a date (YYYY-MM-DD) or today" in text
    assert "screen 'form': url: {last_4} is no field of this menu (did you mean 'last4'?)" in text
    assert "screen 'other': option 1: action: type must be one of show, idv, callback, agent, video" in text


def test_bad_files_and_shapes_are_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("id: [unclosed\n")
    with pytest.raises(MenuError, match=r"bad\.yaml: not valid YAML"):
        load_menus([tmp_path / "bad.yaml"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(MenuError, match=r"bad\.json: not valid JSON"):
        load_menus([tmp_path / "bad.json"])
    with pytest.raises(MenuError, match="has both options and fields"):
        parse_menu(
            {
                "id": "x",
                "title": "X",
                "screens": {
                    "s": {
                        "title": "S",
                        "options": [{"label": "A", "next": "s"}],
                        "fields": [{"name": "a", "label": "A", "type": "text"}],
                        "next": "s",
                    }
                },
            }
        )
    with pytest.raises(MenuError, match="has fields but no next or action"):
        parse_menu(
            {
                "id": "x",
                "title": "X",
                "screens": {"s": {"title": "S", "fields": [{"name": "a", "label": "A", "type": "text"}]}},
            }
        )
    with pytest.raises(MenuError, match="start: no screen 'nope'"):
        parse_menu({"id": "x", "title": "X", "start": "nope", "screens": {"s": {"title": "S"}}})


def test_the_server_refuses_to_start_on_a_bad_menu_or_an_unknown_queue(tmp_path):
    (tmp_path / "menus").mkdir()
    (tmp_path / "menus" / "m.yaml").write_text(BROKEN)
    with pytest.raises(MenuError, match="crads"):
        TestServer(tmp_path / "a", journeys=JourneySettings(menus=MenuSettings(dirs=(tmp_path / "menus",))))
    (tmp_path / "menus" / "m.yaml").write_text(
        "id: m\ntitle: M\nscreens:\n  s:\n    title: S\n    options:\n"
        "      - {label: A, action: {type: agent, queue: vip}}\n"
    )
    with pytest.raises(MenuError, match="no queue 'vip' in the routing"):
        TestServer(tmp_path / "b", journeys=JourneySettings(menus=MenuSettings(dirs=(tmp_path / "menus",))))


def test_serve_takes_menus_by_flag_or_toml_table_and_stops_on_a_bad_one(tmp_path, capsys, monkeypatch):
    from cli.main import main

    monkeypatch.delenv("VOXGATE_CONFIG", raising=False)
    (tmp_path / "menus").mkdir()
    (tmp_path / "menus" / "m.yaml").write_text(BROKEN)
    config = tmp_path / "voxgate.toml"
    config.write_text(f'[menus]\ndir = "{tmp_path / "menus"}"\ncrm-token = "s3cret"\n')
    assert main(["config", "show", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert f'menus-dir = ["{tmp_path / "menus"}"]' in shown and 'menus-crm-token = "***"' in shown
    argv = ["serve", "--no-subtitles", "--data-dir", str(tmp_path / "data"), "--port", "0"]
    assert main([*argv, "--menus", str(tmp_path / "menus")]) == 2
    assert "m.yaml: screen 'main': option 1: next: no screen 'crads'" in capsys.readouterr().err
    assert main([*argv, "--config", str(config)]) == 2
    assert "no screen 'crads'" in capsys.readouterr().err


# -- values --------------------------------------------------------------------------------------------------------


def test_each_field_type_is_validated_and_normalised():
    menu = example()
    fields = {f.name: f for s in menu.screens.values() for f in s.fields}
    ok = lambda name, raw: check_value(fields[name], raw, TODAY)  # noqa: E731
    assert ok("last_digits", "12 34") == ("1234", None)
    assert ok("last_digits", "12a4")[1].key == "menu.digits"
    assert ok("last_digits", "123")[1].key == "menu.too_short"
    assert ok("last_digits", "")[1].key == "menu.required"
    assert ok("lost_on", "2026-11-27") == ("2026-11-27", None)
    assert ok("lost_on", "2026-11-29")[1].key == "menu.date_max"
    assert ok("lost_on", "28/11/2026")[1].key == "menu.date"
    assert ok("amount", "12,5") == ("12.50", None)
    assert ok("amount", "0")[1].key == "menu.amount_min"
    assert ok("amount", "1e3")[1].key == "menu.amount"
    assert ok("how", "stolen") == ("stolen", None)
    assert ok("how", "eaten")[1].key == "menu.choice"
    assert ok("merchant", "") == (None, None)  # optional
    problem = ok("reference", "ab123456")[1]
    assert problem.key == "menu.pattern" and problem.words["en"].startswith("Two capital letters")


# -- the state machine ---------------------------------------------------------------------------------------------


def test_navigation_records_each_step_and_goes_back():
    s = session()
    out = s.choose("cards")
    assert out.step == ("choice", {"screen": "main", "option": "cards", "label": "Cards"}) and out.run is None
    assert s.screen_id == "cards"
    s.choose("lost")
    with pytest.raises(FieldErrors) as e:
        s.enter({"last_digits": "12", "lost_on": "2026-11-20", "how": "lost"})
    assert set(e.value.problems) == {"last_digits"}
    assert s.screen_id == "lost_card" and s.values == {}
    out = s.enter({"last_digits": "1234", "lost_on": "2026-11-20", "how": "lost"})
    assert out.step[0] == "entry" and out.step[1]["values"]["last_digits"] == "1234"
    assert out.run.type == "agent"
    assert s.back().step == ("choice", {"screen": "cards", "back": True})
    s.back()
    assert s.screen_id == "main" and not s.view("en", render)["can_back"]
    with pytest.raises(Conflict):
        s.back()
    with pytest.raises(Invalid):
        s.choose("nope")
    with pytest.raises(Conflict):
        s.enter({"x": 1})  # a screen of options


def test_a_show_that_needs_verification_waits_for_idv_and_then_runs():
    s = session()
    out = s.choose("details")
    assert out.run.type == "idv" and s.mode == "idv"
    out = s.idv_finished("identified_and_verified", "C-100")
    assert out.step == ("action", {"action": "idv", "status": "identified_and_verified", "customer_id": "C-100"})
    assert out.run.type == "show" and out.run.source == "directory"
    s.shown([{"label": "Name", "value": "Alice"}])
    view = s.view("pt", render)
    assert view["mode"] == "result" and view["result"]["rows"][0]["value"] == "Alice"
    s.proceed()
    assert s.mode == "screen" and s.screen_id == "main"
    assert s.choose("details").run.type == "show"  # verified once: not asked again


def test_a_customer_not_verified_is_told_and_the_show_does_not_run():
    s = session()
    s.choose("details")
    out = s.idv_finished("identified_only", "C-100")
    assert out.run is None and s.view("en", render)["result"]["message"] == "menu.not_verified"


def test_nobody_free_offers_a_callback_and_a_hand_off_ends_the_menu():
    s = session()
    s.choose("talk")
    s.choose("agent")
    s.handed("agent", None, "menu.nobody")
    assert s.view("en", render)["result"]["offer"] == "callback"
    out = s.take_offer()
    assert out.run.type == "callback"
    s.handed("callback", "/callback?phone=1")
    assert s.mode == "done"
    with pytest.raises(Gone):
        s.choose("agent")


def test_the_view_is_in_the_customers_language_with_english_where_the_menu_has_none():
    s = session()
    view = s.view("pt", render)
    assert view["screen"]["title"] == "Como podemos ajudar?"
    assert [o["label"] for o in view["screen"]["options"]][:2] == ["Cartões", "Pagamentos"]
    assert s.view("de", render)["screen"]["title"] == "How can we help?"


# -- the API ---------------------------------------------------------------------------------------------------------


@pytest.fixture
async def crm():
    """The operator's CRM, as a "show" action reads it."""
    seen = []

    async def card(request: web.Request) -> web.Response:
        seen.append((request.match_info["id"], request.headers.get("Authorization")))
        return web.json_response({"balance": "£120.00", "limit": "£2,000.00", "internal": "x"})

    async def ref(request: web.Request) -> web.Response:
        seen.append((request.raw_path, None))
        return web.json_response({"status": "Shipped"})

    app = web.Application()
    app.router.add_get("/api/customers/{id}/card", card)
    app.router.add_get("/api/refs/{ref}", ref)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.fixture
async def menu_server(tmp_path, crm):
    """The example menu, with its CRM pointed at the stand-in; alice (available) and a customer with a PIN."""
    base, _ = crm
    folder = tmp_path / "menus"
    folder.mkdir()
    text = (EXAMPLES / "example.yaml").read_text().replace("https://crm.example.com", base)
    (folder / "example.yaml").write_text(text)
    settings = JourneySettings(menus=MenuSettings(dirs=(folder,), crm_token="crm-secret"))
    s = await TestServer(tmp_path / "data", journeys=settings).start()
    s.api_token = s.add_agent()
    s.store.customers.put(Customer("C-100", "Alice Example", ("+44 7700 900100",)), hash_password(PIN))
    yield s
    await s.stop()


async def new_menu(http, server, **fields) -> dict:
    body = {"kind": "menu", "menu": "example", "phone": "+44 7700 900100", **fields}
    headers = {"Authorization": f"Bearer {server.api_token}"}
    async with http.post(f"{server.base}/api/links", json=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        return await r.json()


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def post(http, url: str, body: dict) -> tuple[int, dict]:
    async with http.post(url, json=body) as r:
        return r.status, await r.json()


async def test_a_menu_link_opens_once_on_one_device(http, menu_server):
    created = await new_menu(http, menu_server, language="pt")
    assert created["link"]["kind"] == "menu" and created["link"]["detail"] == {"menu": "example"}
    token = token_of(created["url"])
    async with http.get(created["url"]) as r:
        assert r.status == 200 and 'lang="pt"' in await r.text() and "menu.js" in await r.text()
    async with http.get(f"{menu_server.base}/api/menu/{token}") as r:
        info = await r.json()
    assert info["phrase"] == created["link"]["phrase"] and info["title"] == "O seu banco"
    assert info["language"] == "pt" and info["texts"]["menu.back"] == "Voltar"
    assert menu_server.store.links.get(created["link"]["id"]).state == "opened"
    status, view = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    assert status == 200 and view["screen"]["title"] == "Como podemos ajudar?" and len(view["key"]) > 16
    assert menu_server.store.links.get(created["link"]["id"]).state == "connected"
    # A second device (or a second start) is refused, as a video link's would be.
    status, body = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    assert status == 410 and "used" in body["error"]
    async with http.get(f"{menu_server.base}/api/menu/{token}") as r:
        assert r.status == 410
    status, body = await post(http, f"{menu_server.base}/api/menu/{token}/step", {"key": "guess", "step": "back"})
    assert status == 403


async def test_refusals_are_clear(http, menu_server):
    headers = {"Authorization": f"Bearer {menu_server.api_token}"}
    for body, words in (
        ({"kind": "menu", "menu": "nope"}, "menu: one of example"),
        ({"kind": "menu", "colour": "red"}, "unknown fields: colour"),
        ({"kind": "menu", "expires_in": "soon"}, "expires_in"),
        ({"kind": "menu", "expires_in": 5}, "expiry must be between"),
        ({"kind": "menu", "language": "x1"}, "language"),
    ):
        async with http.post(f"{menu_server.base}/api/links", json=body, headers=headers) as r:
            assert r.status == 400 and words in (await r.json())["error"], body
    async with http.post(f"{menu_server.base}/api/links", json={"kind": "menu"}) as r:
        assert r.status == 401
    token = token_of((await new_menu(http, menu_server))["url"])
    _, view = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    key, step = view["key"], f"{menu_server.base}/api/menu/{token}/step"
    for body, status, words in (
        ({"key": key, "step": "fly"}, 400, "step: one of"),
        ({"key": key, "step": "choose", "option": "nope"}, 400, "no option 'nope'"),
        ({"key": key, "step": "enter", "values": {"a": 1}}, 409, "no fields"),
        ({"key": key, "step": "verify", "code": "1234"}, 409, "no identity check"),
        ({"key": key, "step": "back"}, 409, "first screen"),
    ):
        got, body_ = await post(http, step, body)
        assert got == status and words in body_["error"], body
    async with http.post(step, data="not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
    async with http.get(f"{menu_server.base}/api/menu/{'x' * 43}") as r:
        assert r.status == 404


async def test_an_unused_link_expires(http, menu_server):
    token = token_of((await new_menu(http, menu_server, expires_in=60))["url"])
    menu_server.now += 61
    status, body = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    assert status == 410 and "expired" in body["error"]


async def test_the_agent_may_revoke_a_menu_in_use(http, menu_server):
    created = await new_menu(http, menu_server)
    token = token_of(created["url"])
    _, view = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    headers = {"Authorization": f"Bearer {menu_server.api_token}"}
    async with http.post(f"{menu_server.base}/api/links/{created['link']['id']}/revoke", headers=headers) as r:
        assert r.status == 200
    status, body = await post(http, f"{menu_server.base}/api/menu/{token}/step", {"key": view["key"], "step": "back"})
    assert status == 410 and "cancelled" in body["error"]


async def test_a_started_menu_times_out(http, menu_server):
    token = token_of((await new_menu(http, menu_server))["url"])
    _, view = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    menu_server.now += MenuSettings().session_ttl + 1
    status, body = await post(http, f"{menu_server.base}/api/menu/{token}/step", {"key": view["key"], "step": "back"})
    assert status == 410 and "timed out" in body["error"]
    # One left unfinished ends when the next menu starts: nothing stays in memory, and the console sees it done.
    created = await new_menu(http, menu_server)
    await post(http, f"{menu_server.base}/api/menu/{token_of(created['url'])}/start", {})
    menu_server.now += MenuSettings().session_ttl + 1
    await post(http, f"{menu_server.base}/api/menu/{token_of((await new_menu(http, menu_server))['url'])}/start", {})
    assert menu_server.store.links.get(created["link"]["id"]).state == "ended"
    assert list(menu_server.node.journeys.menus.live) != [created["link"]["id"]]
    assert len(menu_server.node.journeys.menus.live) == 1


async def test_the_journey_is_recorded_step_by_step_without_the_pin(http, menu_server, crm, caplog):
    """Entry with a refused value, ID&V by PIN (identified by the calling number), the CRM's data, then an
    agent: each step in the store, as a customer event and live on the console; the PIN nowhere."""
    caplog.set_level(logging.DEBUG)
    server = menu_server
    alice = server.agent()
    console = server.calls.hub.subscribe(alice.id)
    created = await new_menu(http, server, customer_ref="claim 7")
    link_id, token = created["link"]["id"], token_of(created["url"])
    _, view = await post(http, f"{server.base}/api/menu/{token}/start", {})
    key = view["key"]
    step = f"{server.base}/api/menu/{token}/step"

    async def go(**body):
        status, out = await post(http, step, {"key": key, **body})
        assert status == 200, out
        return out

    await go(step="choose", option="cards")
    await go(step="choose", option="lost")
    status, bad = await post(http, step, {"key": key, "step": "enter", "values": {"last_digits": "12", "how": "x"}})
    assert status == 400 and bad["errors"] == {
        "last_digits": "Enter at least 4 characters.",
        "lost_on": "Please fill this in.",
        "how": "Choose one of the options.",
    }
    await go(step="back")
    view = await go(step="choose", option="balance")  # needs verifying: ID&V first
    assert view["mode"] == "idv" and view["idv"]["step"] == "code" and view["idv"]["code_kind"] == "pin"
    view = await go(step="verify", code="9731")
    assert view["mode"] == "idv" and view["idv"]["attempts_left"] == 2
    view = await go(step="verify", code=PIN)
    assert view["mode"] == "result" and view["idv_status"] == "identified_and_verified"
    assert view["result"]["rows"] == [
        {"label": "Balance", "value": "£120.00"},
        {"label": "Credit limit", "value": "£2,000.00"},
    ]
    assert crm[1] == [("C-100", "Bearer crm-secret")]
    await go(step="continue")
    nobody = await go(step="back")  # to main
    assert nobody["screen"]["id"] == "main"
    await go(step="choose", option="talk")
    view = await go(step="choose", option="agent")  # alice has no console open: nobody is free
    assert view["result"]["message"].startswith("All our agents are busy") and view["result"]["offer"] == "callback"
    server.calls.queues.arrive(alice)
    await go(step="back")
    view = await go(step="choose", option="agent")
    assert view["mode"] == "done" and view["result"]["kind"] == "redirect"
    video = server.store.links.by_token(token_hash(token_of(view["result"]["url"])))
    assert video.kind == "video" and video.agent_id == alice.id
    assert video.detail == {"from": link_id, "media": "audio"} and video.audio_only  # "agent": a voice call
    assert video.customer_ref == "C-100" and video.phone == "+44 7700 900100"
    assert server.store.links.get(link_id).state == "ended"
    status, _ = await post(http, step, {"key": key, "step": "back"})
    assert status == 410

    steps = server.store.steps.of(link_id)
    kinds = [(s.step, s.detail.get("option") or s.detail.get("action") or s.detail.get("screen")) for s in steps]
    assert kinds[:4] == [("action", "start"), ("choice", "cards"), ("choice", "lost"), ("choice", "cards")]
    assert ("entry", "idv") in kinds and ("action", "show") in kinds and kinds[-1] == ("action", "agent")
    idv = [s.detail for s in steps if s.detail.get("action") == "idv"]
    assert idv == [{"action": "idv", "status": "identified_and_verified", "customer_id": "C-100"}]
    assert steps[-1].detail["link_id"] == video.id and steps[-1].detail["agent"] == "alice"
    assert server.store.idv.get(link_id)["verified_by"] == "pin"
    events = server.store.events.recent(["customer:c-100", "phone:+447700900100"], 0)
    assert events and {e.type for e in events} == {"menu.choice"} and {e.source for e in events} == {f"menu:{link_id}"}
    # The console heard every step live, in order, then the video link (and the call's context reads the steps).
    heard = []
    while not console.empty():
        heard.append(console.get_nowait())
    menu_steps = [m["step"]["seq"] for m in heard if m and m.get("type") == "menu"]
    assert menu_steps == [s.seq for s in steps]
    assert any(m.get("type") == "link" and m["link"]["id"] == video.id for m in heard if m)
    context = server.calls.context_view(video)
    assert [s["seq"] for s in context["steps"]] == [s.seq for s in steps] and context["idv"]["verified_by"] == "pin"
    # The agent reads the menu's steps (theirs; or the menu a call of theirs came from).
    async with http.get(
        f"{server.base}/api/links/{link_id}/menu", headers={"Authorization": f"Bearer {server.api_token}"}
    ) as r:
        seen = await r.json()
    assert r.status == 200 and len(seen["steps"]) == len(steps) and seen["idv"]["status"] == "identified_and_verified"
    bob = server.add_agent("bob")  # neither the menu's agent nor the agent of a call it led to
    async with http.get(f"{server.base}/api/links/{link_id}/menu", headers={"Authorization": f"Bearer {bob}"}) as r:
        assert r.status == 404
    # No PIN: not in the steps, the events, the audit, the log, or anything the console heard.
    everything = json.dumps([s.detail for s in steps]) + json.dumps([e.detail for e in events])
    everything += json.dumps(server.store.audit.log()) + caplog.text + json.dumps(heard)
    assert PIN not in everything and "9731" not in everything


async def test_the_callback_action_links_to_the_booking_page_prefilled(http, menu_server):
    token = token_of((await new_menu(http, menu_server, language="pt"))["url"])
    _, view = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    key, step = view["key"], f"{menu_server.base}/api/menu/{token}/step"
    await post(http, step, {"key": key, "step": "choose", "option": "payments"})
    status, view = await post(http, step, {"key": key, "step": "choose", "option": "callback"})
    assert status == 200 and view["mode"] == "done"
    url = view["result"]["url"]
    assert url.startswith("/callback?") and "phone=%2B44+7700+900100" in url and "subject=Um+pagamento" in url
    assert "language=pt" in url


async def test_the_video_action_asks_for_the_camera_and_the_agent_action_does_not(http, menu_server):
    menu_server.calls.queues.arrive(menu_server.agent())
    token = token_of((await new_menu(http, menu_server))["url"])
    _, view = await post(http, f"{menu_server.base}/api/menu/{token}/start", {})
    key, step = view["key"], f"{menu_server.base}/api/menu/{token}/step"
    await post(http, step, {"key": key, "step": "choose", "option": "payments"})
    await post(http, step, {"key": key, "step": "choose", "option": "dispute"})
    status, view = await post(http, step, {"key": key, "step": "enter", "values": {"amount": "42.10"}})
    assert status == 200 and view["result"]["kind"] == "redirect", view
    call = menu_server.store.links.by_token(token_hash(token_of(view["result"]["url"])))
    assert call.is_call and not call.audio_only and "media" not in call.detail
    async with http.get(f"{menu_server.base}/api/join/{token_of(view['result']['url'])}") as r:
        assert (await r.json())["media"] == "video"


ORDER = """
id: orders
title: Orders
screens:
  main:
    title: Your order
    fields:
      - {name: ref, label: Order reference, type: text}
    action:
      type: show
      source: rest
      verified: false
      url: "BASE/api/refs/{ref}?from={phone}&n={never_entered}"
      fields: {status: Status}
"""


async def test_a_show_puts_entered_values_in_the_crm_url_quoted(tmp_path, http, crm):
    base, seen = crm
    folder = tmp_path / "menus"
    folder.mkdir()
    (folder / "orders.yaml").write_text(ORDER.replace("BASE", base).replace("&n={never_entered}", ""))
    server = await TestServer(tmp_path / "data", journeys=JourneySettings(menus=MenuSettings(dirs=(folder,)))).start()
    server.api_token = server.add_agent()
    try:
        token = token_of((await new_menu(http, server, menu="orders"))["url"])
        _, view = await post(http, f"{server.base}/api/menu/{token}/start", {})
        step = {"key": view["key"], "step": "enter", "values": {"ref": "a/b?c"}}
        status, view = await post(http, f"{server.base}/api/menu/{token}/step", step)
        assert status == 200 and view["result"]["rows"] == [{"label": "Status", "value": "Shipped"}]
        assert seen == [("/api/refs/a%2Fb%3Fc?from=%2B44%207700%20900100", None)]
    finally:
        await server.stop()
    with pytest.raises(MenuError, match=r"url: \{never_entered\} is no field of this menu"):
        parse_menu(yaml.safe_load(ORDER.replace("BASE", "https://crm.example")))


def test_link_tokens_in_menu_paths_are_redacted_from_logs():
    assert redact("/api/menu/SECRETTOKEN/step") == "/api/menu/…/step"
