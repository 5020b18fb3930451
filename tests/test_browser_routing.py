"""Context-aware routing end to end in real Chromium: a declined payment routes the customer to the cards queue.

The bank's system posts a declined card payment for a number, then its IVR sends that number a menu link. The
customer, on their phone, asks the menu for an agent: of the two agents with consoles open, the one with the
cards skill takes the call, not the one who has waited longer without it, and her console greets the call with
the reason, the event behind it and what the customer did in the menu. No speech engines.
"""

from __future__ import annotations

import pytest

from calls.context import Reason, RoutingSettings
from peers.browser import CHROMIUM, chromium_args
from tests.server import TestServer
from tests.test_workspace import readme_shot

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
NUMBER = "+44 7700 900123"
ROUTING = RoutingSettings(
    queues={"general": (), "cards": ("cards",)},
    reasons={
        "payment.declined": Reason(
            "payment.declined", "Declined card payment", "A card payment of theirs was declined just now.", "cards"
        )
    },
)


async def console_of(browser, base: str, name: str):
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{base}/console")
    await page.fill("#login-name", name)
    await page.fill("#login-password", "correct horse")
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#available-box:not([hidden])")
    return page


async def test_a_declined_payment_sends_the_customer_from_the_menu_to_the_cards_agent(tmp_path, data, chromium, http):
    server = await TestServer(tmp_path / "data", media_timeout=5.0, routing=ROUTING).start()
    server.add_agent("alice")
    server.add_agent("carla")
    server.store.agents.set_skills("carla", ("cards",))
    bank = {"Authorization": f"Bearer {server.add_agent('bank', role='system')}"}
    fake_audio = data / "asr/multilingual/test_pt.wav"
    try:
        async with chromium.async_playwright() as p:
            agents = await p.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(fake_audio))
            customers = await p.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(fake_audio))
            alice = await console_of(agents, server.base, "alice")  # first to wait, but without the skill
            carla = await console_of(agents, server.base, "carla")
            assert await carla.is_checked("#available")

            event = {"phone": NUMBER, "type": "payment.declined", "detail": {"amount": "£42.10", "merchant": "Rail"}}
            async with http.post(f"{server.base}/api/events", json=event, headers=bank) as r:
                assert r.status == 201
            menu = {"kind": "menu", "menu": "example", "phone": NUMBER}
            async with http.post(f"{server.base}/api/links", json=menu, headers=bank) as r:
                assert r.status == 201
                url = (await r.json())["url"]

            page = await (await customers.new_context(**PHONE)).new_page()
            await page.goto(url)
            await page.get_by_role("button", name="Talk to us").click()
            await page.get_by_role("button", name="Talk to an agent now").click()
            await page.wait_for_url(f"{server.base}/j/**")
            await page.check("#consent")
            await page.click("#start")

            await carla.wait_for_selector("#context:not([hidden])")
            reason = await carla.text_content("#context-reason")
            assert "Declined card payment" in reason and "declined just now" in reason
            assert await carla.get_attribute("#context-reason", "data-queue") == "cards"
            events = await carla.text_content("#context-events")
            assert "payment.declined" in events and "£42.10" in events
            await carla.wait_for_selector("#context-steps li:has-text('Chose “Talk to us”')")
            assert "handed to carla" in await carla.text_content("#context-steps")
            assert await carla.text_content("#context-idv") == "ID&V: not done"
            await readme_shot(carla.locator("#context"), tmp_path / "routing-context.png")
            video = [link for link in server.store.links.of_agent(server.agent("carla").id) if link.kind == "video"]
            assert len(video) == 1 and video[0].state == "connected"
            assert await alice.is_hidden("#strip") and server.store.links.of_agent(server.agent("alice").id) == []
            await agents.close()
            await customers.close()
    finally:
        await server.stop()
