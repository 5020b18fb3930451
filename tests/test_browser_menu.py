"""The visual IVR end to end in real Chromium: the customer on their phone, agent alice on the console.

The customer opens a menu link at phone size, confirms who they are with their PIN to see their details, reports
a lost card (a refused value first, shown beside its field, then a good one), and is handed to alice, who is
available: they land on the video page of alice's new link and start the call. Alice's console follows every
choice live, then shows the call with what the customer did in the menu and their ID&V status. No speech engines.
"""

from __future__ import annotations

import json
import time

import pytest
from axe_playwright_python.async_playwright import Axe

from peers.browser import CHROMIUM, chromium_args
from store.base import Customer
from store.security import hash_password
from tests.server import TestServer
from tests.test_browser import signed_in_console
from tests.test_workspace import readme_shot

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
NUMBER = "+44 7700 900100"
PIN = "4321"


async def serious(page) -> list[str]:
    results = await Axe().run(page)
    return [f"{v['id']}: {v['help']}" for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def panel_says(text: str) -> str:
    return f"document.getElementById('menus-panel').textContent.includes({json.dumps(text)})"


async def test_a_customer_navigates_the_menu_verifies_and_reaches_an_available_agent(tmp_path, data, chromium, http):
    started = time.monotonic()
    server = await TestServer(tmp_path / "data", media_timeout=5.0).start()
    api_token = server.add_agent()
    server.store.customers.put(Customer("C-100", "Alice Example", (NUMBER,)), hash_password(PIN))
    fake_audio = data / "asr/multilingual/test_pt.wav"
    try:
        async with chromium.async_playwright() as p:
            agent_browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(fake_audio))
            customer_browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(fake_audio))
            console_errors = []
            console = await signed_in_console(agent_browser, server.base, errors=console_errors)  # so: available

            # The IVR (here, with alice's API token) sends the menu link to the caller's number.
            body = {"kind": "menu", "menu": "example", "phone": NUMBER, "language": "en"}
            async with http.post(
                f"{server.base}/api/links", json=body, headers={"Authorization": f"Bearer {api_token}"}
            ) as r:
                assert r.status == 201
                created = await r.json()
            menu_id = created["link"]["id"]

            context = await customer_browser.new_context(**PHONE)
            page = await context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(error))
            await page.goto(created["url"])
            await page.wait_for_selector("#screen:not([hidden])")
            assert await page.text_content("#phrase") == created["link"]["phrase"]
            assert await page.text_content("#screen-title") == "How can we help?"
            assert await page.evaluate("document.activeElement.id") == "screen-title"  # announced
            assert await serious(page) == []

            # My details: ID&V first (the calling number identifies them; the PIN verifies them).
            await page.get_by_role("button", name="My details").click()
            await page.wait_for_selector("#code-form:not([hidden])")
            assert "PIN" in await page.text_content("#idv-message")
            await page.get_by_label("PIN").fill(PIN)
            await page.get_by_role("button", name="Confirm").click()
            await page.wait_for_selector("#result:not([hidden])")
            assert "Alice Example" in await page.text_content("#result-rows")
            await console.wait_for_function(panel_says("ID&V: Identified and verified by PIN (C-100)"))
            await page.get_by_role("button", name="Continue").click()

            # A lost card: a refused value, shown beside its field, then a good one.
            await page.get_by_role("button", name="Cards").click()
            await console.wait_for_function(panel_says("Chose “Cards”"))  # live, as the customer chooses
            await page.get_by_role("button", name="Report a lost or stolen card").click()
            await page.get_by_label("Last 4 digits of the card").fill("12")
            await page.get_by_label("When did you last have it?").fill("2026-11-20")
            await page.get_by_label("I lost it").check()
            assert await serious(page) == []
            await page.get_by_role("button", name="Block the card").click()
            await page.wait_for_selector("#f-last_digits-error:not(:empty)")  # the page keeps its CSP: no eval
            assert await page.text_content("#f-last_digits-error") == "Enter at least 4 characters."
            assert await page.get_attribute("#f-last_digits", "aria-invalid") == "true"
            assert await page.evaluate("document.activeElement.id") == "f-last_digits"
            await readme_shot(page, tmp_path / "menu.png")
            await page.get_by_label("Last 4 digits of the card").fill("1234")
            await page.get_by_role("button", name="Block the card").click()

            # Handed to alice: a voice call on her new link (the page asks for the microphone only), which
            # remembers the menu.
            await page.wait_for_url(f"{server.base}/j/**")
            await page.wait_for_selector("#consent-box:not([hidden])")
            video = next(link for link in server.store.links.of_agent(server.agent().id) if link.kind == "video")
            assert video.detail == {"from": menu_id, "media": "audio"} and video.customer_ref == "C-100"
            assert await page.text_content("#phrase") == video.phrase
            assert await page.text_content("#start") == "Start the call"
            assert "My camera stays off" in await page.text_content("#consent-text")
            await console.wait_for_function(panel_says("Entered last digits: 1234"))
            await console.wait_for_function(panel_says("Asked for an agent: handed to alice"))

            await page.check("#consent")
            await page.click("#start")
            await page.get_by_text("Connected. The agent can hear you.").wait_for()  # alice's console plays it
            assert await page.evaluate("vg.pc.getSenders().map((s) => s.track?.kind)") == ["audio"]
            assert await page.is_hidden("#self")
            # Verified by PIN in the menu a moment ago: the call starts verified, and nobody asks again.
            await console.wait_for_selector("#idv-status[data-status='identified_and_verified']")
            assert await console.text_content("#idv-status") == "Identified and verified by PIN"
            assert await page.is_hidden("#idv")
            await readme_shot(page, tmp_path / "voice-call.png")
            assert await console.is_hidden("#remote") and await console.is_hidden("#snapshot")
            assert await console.text_content("#watching") == "The customer is told you can hear them."
            await console.wait_for_selector("#context:not([hidden]) #context-steps li")  # beside the call
            text = await console.text_content("#context")
            assert "Chose “My details”" in text and "Entered last digits: 1234" in text
            assert "ID&V: Identified and verified by PIN (C-100)" in text
            assert PIN not in await console.text_content("body")
            assert errors == [] and console_errors == []
            assert PIN not in json.dumps([s.detail for s in server.store.steps.of(menu_id)])
            await agent_browser.close()
            await customer_browser.close()
    finally:
        await server.stop()
    print(f"\nmenu journey in real Chromium: {time.monotonic() - started:.1f} s")
