"""Pay by link in real Chromium: the agent asks for a payment in the console, the customer pays at phone size on the
provider's hosted page (the local Stripe stand-in): a declined card first, then another card on the same page, as on
Stripe Checkout; the console shows each state, and the decline, as it happens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from journeys.settings import JourneySettings, PaymentSettings
from peers.browser import CHROMIUM, chromium_args
from peers.payments import PaymentStandIn
from tests.server import TestServer
from tests.test_workspace import readme_shot

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "locale": "en-GB"}


async def request_payment(console, amount: str, description: str) -> tuple[str, str]:
    """The agent fills the payments panel's form: the link's URL and its security phrase."""
    await console.fill("#pay-amount", amount)
    await console.select_option("#pay-currency", "gbp")
    await console.fill("#pay-description", description)
    await console.click("#pay-form button[type=submit]")
    await console.wait_for_selector("#pay-result:not([hidden])")
    assert await console.locator("#pay-qr img").count() == 1
    return await console.input_value("#pay-url"), await console.text_content("#pay-phrase")


async def customer_pays(context, url: str, phrase: str, card: str, console, link_id: str):
    """The customer opens the link on their phone, checks the phrase, and is handed to the provider's page."""
    page = await context.new_page()
    await page.goto(url)
    await page.wait_for_selector("#request:not([hidden])")
    assert await page.text_content("#phrase") == phrase
    assert await page.text_content("#amount") == "£19.99"
    assert await page.text_content("#pay") == "Pay securely with Stripe"
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390  # fits the phone
    state = f"#payments-list li[data-link='{link_id}'] .payment-state"
    await console.wait_for_function(f"document.querySelector(\"{state}\")?.textContent === 'Link opened'")
    await page.click("#pay")
    await page.wait_for_url("**/c/pay/cs_test_*")
    await type_card(page, card)
    return page


async def type_card(page, card: str) -> None:
    await page.fill("#card", card)
    await page.fill("#expiry", "12 / 34")
    await page.fill("#cvc", "123")
    await page.click("#pay")


async def test_pay_by_link_in_real_browsers(tmp_path, chromium):
    standin = await PaymentStandIn().start()
    settings = PaymentSettings(
        provider="stripe",
        stripe_secret_key=standin.secret_key,
        stripe_webhook_secrets=(standin.webhook_secret,),
        stripe_api_base=standin.base,
    )
    server = await TestServer(tmp_path / "data", journeys=JourneySettings(payments=settings)).start()
    standin.webhook_url = f"{server.base}/webhooks/stripe"
    server.add_agent("alice", "correct horse")
    args = [a for a in chromium_args(Path("/dev/null")) if "fake-audio" not in a]
    errors: list = []
    try:
        async with chromium.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=args)
            console = await (await browser.new_context()).new_page()
            console.on("pageerror", lambda error: errors.append(error))
            await console.goto(f"{server.base}/console")
            await console.fill("#login-name", "alice")
            await console.fill("#login-password", "correct horse")
            await console.click("#login button[type=submit]")
            await console.wait_for_selector("#payments-panel:not([hidden])")

            # A declined card, then another on the same page: each state, and the decline, reach the console live.
            url, phrase = await request_payment(console, "19.99", "Invoice 7")
            link_id = next(iter(server.store.links.of_agent(server.agent("alice").id))).id
            phone = await browser.new_context(**PHONE)
            page = await customer_pays(phone, url, phrase, "4000 0000 0000 0002", console, link_id)
            await page.wait_for_selector("#error:text('Your card was declined.')")
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            item = f"#payments-list li[data-link='{link_id}']"
            await console.wait_for_selector(f"{item} .payment-declined")
            assert await console.text_content(f"{item} .payment-state") == "Details entered"
            assert await console.text_content(f"{item} .payment-declined") == (
                "Declined (generic_decline): the customer may try another card."
            )
            await readme_shot(console.locator("#payments-panel"), tmp_path / "payment-console.png")
            await type_card(page, "4242 4242 4242 4242")
            await page.wait_for_url(f"{server.base}/pay/done?link={link_id}")
            await page.wait_for_selector("#outcome[data-state='succeeded']")
            assert "£19.99" in await page.text_content("#outcome")
            await console.wait_for_selector(f"{item} .payment-state[data-state='succeeded']")
            steps = await console.locator(f"{item} .payment-steps li").all_text_contents()
            assert steps == ["Link opened", "On the payment page", "Details entered", "Success"]
            assert await console.locator(f"{item} .payment-declined").count() == 0
            assert await console.locator("#pay-result").is_hidden()  # a used link is not offered again

            # Back to the link after paying: the result page, not "this link has been used".
            await page.goto(url)
            await page.wait_for_url(f"{server.base}/pay/done?link={link_id}")
            await page.wait_for_selector("#outcome[data-state='succeeded']")

            # What the console heard, in order; and never a card number.
            events = await console.evaluate("JSON.stringify(vg.events.filter((e) => e.type === 'payment'))")
            heard = [(e["state"], e["declined"]) for e in json.loads(events) if e["link_id"] == link_id]
            assert heard == [
                ("created", None),
                ("opened", None),
                ("handed_off", None),
                ("details_entered", None),
                ("details_entered", "generic_decline"),
                ("succeeded", None),
            ]
            page_text = await console.content() + events
            for card in ("4242424242424242", "4242 4242 4242 4242", "4000000000000002", "4000 0000 0000 0002"):
                assert card not in page_text
            await browser.close()
    finally:
        await server.stop()
        await standin.stop()
    assert not errors, errors
