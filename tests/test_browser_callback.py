"""A callback with the customer's secret, end to end in real Chromium (Debian's, driven by Playwright).

The customer, on a phone-sized screen, books a callback on /callback and lands on its status page; agent alice's
console lists the task with its due time and subject; she clicks Call now and is shown "Your secret is ..." with
the customer's own word; the customer's page follows live: Agent calling, then Done. A second booking is
rescheduled and then cancelled from the page, and leaves the agent's queue. Last, a menu's "call me back" lands on
the booking page filled in with what the menu knew, in the menu's language, and its status page speaks it too.
"""

from __future__ import annotations

import re

import pytest

from peers.browser import CHROMIUM
from tests.server import TestServer
from tests.test_browser import signed_in_console
from tests.test_workspace import readme_shot

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
WORD = "marmalade"


async def book(page, base: str, subject: str) -> None:
    """The customer fills in the booking form (the window its defaults propose) and sends it."""
    await page.goto(f"{base}/callback")
    await page.fill("#phone", "+44 20 7946 0018")
    await page.fill("#subject", subject)
    await page.fill("#secret", WORD)
    await page.click("#book button[type=submit]")
    await page.wait_for_url(re.compile(r"/callback/[A-Za-z0-9_-]{43}$"))


async def test_callback_in_real_browsers(tmp_path, chromium, http):
    server = await TestServer(tmp_path / "data").start()
    api_token = server.add_agent("alice", "correct horse")
    errors: list = []
    try:
        async with chromium.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                customer = await (await browser.new_context(**PHONE)).new_page()
                customer.on("pageerror", lambda error: errors.append(error))
                await book(customer, server.base, "My card was declined at the till")
                status = customer.locator("#status")
                await status.filter(has_text="Booked").wait_for()
                assert await customer.locator("#steps li[aria-current=step]").text_content() == "Booked"
                assert await customer.evaluate("document.documentElement.scrollWidth") <= 390  # fits the phone
                assert WORD not in await customer.content()

                console = await signed_in_console(browser, server.base, errors=errors)
                task = console.locator("#callbacks-panel tr[data-callback]")
                await task.filter(has_text="My card was declined at the till").wait_for()
                row = await task.text_content()
                assert "+442079460018" in row and re.search(r"\d\d:\d\d( [AP]M)?–\d\d:\d\d", row), row
                await task.get_by_role("button", name="Call now").click()
                secret = console.locator("#callback-secret")
                await secret.filter(has_text=f"Your secret is {WORD}").wait_for()

                await status.filter(has_text="Agent calling").wait_for()
                assert await customer.locator("#steps li[aria-current=step]").text_content() == "Agent calling"
                await readme_shot(customer, tmp_path / "callback.png")
                await task.get_by_role("button", name="Done").click()
                await status.filter(has_text="Done").wait_for()
                await console.locator("#callbacks-panel", has_text="No callbacks waiting.").wait_for()
                assert await secret.count() == 0  # the word goes with the call

                # A second booking: moved to tomorrow morning from its page, then cancelled.
                await book(customer, server.base, "Question about my mortgage")
                await status.filter(has_text="Booked").wait_for()
                await task.filter(has_text="Question about my mortgage").wait_for()
                tomorrow = await customer.evaluate(
                    "(() => { const d = new Date(Date.now() + 86400000); "
                    "return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-"
                    "${String(d.getDate()).padStart(2, '0')}`; })()"
                )
                await customer.click("#reschedule-title")  # "Another time" opens the form
                await customer.fill("#new-date", tomorrow)
                await customer.fill("#new-from", "10:00")
                await customer.fill("#new-to", "11:30")
                await customer.click("#reschedule button[type=submit]")
                await customer.locator("#when", has_text="10:00").wait_for()
                [booked] = server.store.callbacks.open()
                assert booked.window_end - booked.window_start == 5400
                await customer.click("#cancel")
                await status.filter(has_text="Cancelled").wait_for()
                assert (
                    await customer.locator("#reschedule-box").is_hidden()
                    and await customer.locator("#cancel").is_hidden()
                )
                await console.locator("#callbacks-panel", has_text="No callbacks waiting.").wait_for()

                # A menu's "call me back" (in Portuguese) hands the customer to the booking page, filled in.
                link = {"kind": "menu", "menu": "example", "phone": "+44 20 7946 0018", "language": "pt"}
                headers = {"Authorization": f"Bearer {api_token}"}
                async with http.post(f"{server.base}/api/links", json=link, headers=headers) as r:
                    menu = await r.json()
                await customer.goto(menu["url"])
                await customer.get_by_role("button", name="Pagamentos").click()
                await customer.get_by_role("button", name="Liguem-me sobre um pagamento").click()
                await customer.wait_for_url(re.compile(r"/callback\?"))
                await customer.locator("#booking-title", has_text="Marcar uma chamada").wait_for()
                assert await customer.input_value("#phone") == "+44 20 7946 0018"
                assert await customer.input_value("#subject") == "Um pagamento"
                assert await customer.get_attribute("html", "lang") == "pt"
                await customer.fill("#secret", "pagamento")  # a refusal reads in the page's language too
                await customer.click("#book button[type=submit]")
                await customer.locator("#book-error", has_text="que não esteja no assunto").wait_for()
                await customer.fill("#secret", WORD)
                await customer.click("#book button[type=submit]")
                await status.filter(has_text="Marcada").wait_for()  # its status page speaks the booking's language
                assert await customer.get_attribute("html", "lang") == "pt"
                # The agent who calls back sees what the customer did in the menu.
                await task.filter(has_text="Um pagamento").get_by_role("button", name="Call now").click()
                steps = console.locator("#callback-context")
                await steps.filter(has_text="Chose “Payments”").wait_for()
                assert "Asked for a callback" in await steps.text_content()

                # Straight from the bank's website, the booking page speaks the browser's language.
                german = await (await browser.new_context(**PHONE, locale="de-DE")).new_page()
                await german.goto(f"{server.base}/callback")
                await german.locator("#booking-title", has_text="Rückruf vereinbaren").wait_for()
                assert await german.get_attribute("html", "lang") == "de"
            finally:
                await browser.close()
        actions = {a["action"] for a in server.store.audit.log()}
        assert {"callback.book", "callback.claim", "callback.secret_view", "callback.done"} <= actions
        assert {"callback.reschedule", "callback.cancel"} <= actions
    finally:
        await server.stop()
    assert not errors
