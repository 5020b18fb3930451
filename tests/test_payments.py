"""Pay by link: signatures, the link's validation and single use, webhooks applied once and in order, the audit,
and both adapters end to end against the local stand-in provider (peers.payments) over real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import aiohttp
import pytest

from journeys.settings import JourneySettings, PaymentSettings
from journeys.signatures import BadSignature, signature_header, verify_signature
from peers.payments import DECLINED, PAID, PaymentStandIn, sign, unflatten
from tests.server import TestServer

CARDS = (PAID, DECLINED, "4242 4242 4242 4242", "4000 0000 0000 0002")


# -- signatures ----------------------------------------------------------------------------------------------------


def test_signature_verifies_and_refuses():
    body, now = b'{"type": "x"}', 1_800_000_000
    header = signature_header("whsec_1", body, now)
    assert verify_signature(header, body, ["whsec_1"], now) == now
    for bad_header, secrets, at in (
        (header, ["whsec_2"], now),  # another secret
        (header.replace("v1=", "v1=0"), ["whsec_1"], now),  # altered signature
        (header, ["whsec_1"], now + 301),  # too old: a replay
        (header, ["whsec_1"], now - 301),  # from the future
        (None, ["whsec_1"], now),
        ("", ["whsec_1"], now),
        (f"t={now}", ["whsec_1"], now),  # no v1
        (f"v1={sign('whsec_1', now, body)}", ["whsec_1"], now),  # no t
        (f"t=abc,v1={sign('whsec_1', now, body)}", ["whsec_1"], now),
        (f"t={now},v0={sign('whsec_1', now, body)}", ["whsec_1"], now),  # only another scheme
        (header, [], now),  # nothing configured: nothing verifies
    ):
        with pytest.raises(BadSignature):
            verify_signature(bad_header, body, secrets, at)
    with pytest.raises(BadSignature):
        verify_signature(header, body + b" ", ["whsec_1"], now)  # the payload changed
    assert verify_signature(header, body, ["whsec_1"], now + 300) == now  # at the tolerance's edge


def test_signature_while_rolling_the_secret():
    """Stripe signs with the old and the new secret at once (two v1); either end may be configured with either,
    and VoxGate may be configured with both."""
    body, now = b"{}", 1_800_000_000
    both = f"t={now},v1={sign('whsec_old', now, body)},v1={sign('whsec_new', now, body)}"
    assert verify_signature(both, body, ["whsec_new"], now) == now
    assert verify_signature(both, body, ["whsec_old"], now) == now
    assert verify_signature(signature_header("whsec_new", body, now), body, ["whsec_old", "whsec_new"], now) == now


def test_stripe_form_encoding_is_parsed_as_stripe_does():
    form = [
        ("line_items[0][price_data][currency]", "gbp"),
        ("line_items[0][price_data][product_data][name]", "Order 7"),
        ("line_items[0][quantity]", "1"),
        ("metadata[voxgate_link]", "abc"),
        ("mode", "payment"),
    ]
    assert unflatten(form) == {
        "line_items": [{"price_data": {"currency": "gbp", "product_data": {"name": "Order 7"}}, "quantity": "1"}],
        "metadata": {"voxgate_link": "abc"},
        "mode": "payment",
    }


# -- a server with a provider --------------------------------------------------------------------------------------


@pytest.fixture
async def standin():
    s = await PaymentStandIn().start()
    yield s
    await s.stop()


async def _server(tmp_path, settings: PaymentSettings) -> TestServer:
    s = await TestServer(tmp_path / "data", journeys=JourneySettings(payments=settings)).start()
    s.api_token = s.add_agent()
    return s


@pytest.fixture
async def stripe(tmp_path, standin):
    settings = PaymentSettings(
        provider="stripe",
        stripe_secret_key=standin.secret_key,
        stripe_webhook_secrets=(standin.webhook_secret,),
        stripe_api_base=standin.base,
        max_amount=50_000,
    )
    s = await _server(tmp_path, settings)
    standin.webhook_url = f"{s.base}/webhooks/stripe"
    yield s
    await s.stop()


@pytest.fixture
async def redirect(tmp_path, standin):
    settings = PaymentSettings(
        provider="redirect",
        provider_name="Acme Pay",
        redirect_url=f"{standin.base}/redirect/pay",
        redirect_secrets=(standin.redirect_secret,),
    )
    s = await _server(tmp_path, settings)
    standin.redirect_webhook_url = f"{s.base}/webhooks/payments"
    yield s
    await s.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def create(http, server, **fields) -> tuple[int, dict]:
    body = {"kind": "payment", "amount": 1999, "currency": "gbp", **fields}
    headers = {"Authorization": f"Bearer {server.api_token}"}
    async with http.post(f"{server.base}/api/links", json=body, headers=headers) as r:
        return r.status, await r.json()


async def open_and_start(http, server, url: str) -> dict:
    """The customer's page: reads the payment (opened), then taps Pay (the provider's URL and the page's key)."""
    token = url.rsplit("/", 1)[1]
    async with http.get(f"{server.base}/api/join/{token}/payment") as r:
        assert r.status == 200, await r.text()
        info = await r.json()
    assert (info["amount"], info["currency"]) == (1999, "gbp")
    async with http.post(f"{server.base}/api/join/{token}/payment") as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def pay_at_provider(http, page_url: str, card: str) -> aiohttp.ClientResponse:
    """The customer types a card on the provider's own page: where it sends them after."""
    async with http.get(page_url) as r:
        assert r.status == 200, await r.text()
        page = await r.text()
    action = page.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    base = page_url.split("/", 3)[:3]
    async with http.post(
        "/".join(base) + action, data={"card": card, "expiry": "12/34", "cvc": "123"}, allow_redirects=False
    ) as r:
        await r.read()
        return r


def audit(server, link_id: str) -> list[dict]:
    return server.store.audit.log(link_id)


async def states_of(queue: asyncio.Queue) -> list[str]:
    states = []
    while not queue.empty():
        event = queue.get_nowait()
        if event and event.get("type") == "payment":
            states.append(event["state"])
    return states


# -- creating the link ---------------------------------------------------------------------------------------------


async def test_payment_link_fields_are_checked(stripe, http):
    for fields, why in (
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": 19.99}, "amount"),
        ({"amount": "1999"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 50_001}, "amount"),  # over the configured maximum
        ({"currency": "xyz"}, "currency"),
        ({"currency": "jpy"}, "currency"),  # real, but not one the operator allows
        ({"currency": 826}, "currency"),
        ({"description": "x" * 201}, "description"),
        ({"description": "two\nlines"}, "description"),
        ({"card_number": PAID}, "unknown fields"),
        ({"expires_in": 5}, "expiry"),
    ):
        status, body = await create(http, stripe, **fields)
        assert status == 400 and why in body["error"], (fields, body)
    assert stripe.store.links.of_agent(stripe.agent().id) == []

    status, body = await create(
        http, stripe, currency="GBP", amount=50_000, description="Invoice 7", phone="+447700900123"
    )
    assert status == 201, body
    link = body["link"]
    assert (link["kind"], link["detail"]["amount"], link["detail"]["currency"]) == ("payment", 50_000, "gbp")
    assert body["url"].startswith(f"{stripe.base}/j/") and "<svg" in body["qr_svg"]
    payment = stripe.store.payments.get(link["id"])
    assert (payment.state, payment.provider, payment.amount, payment.currency) == ("created", "stripe", 50_000, "gbp")
    rows = [r for r in audit(stripe, link["id"]) if r["action"] == "payment.create"]
    assert rows and "amount=50000 currency=gbp" in rows[0]["detail"]


async def test_payments_off_without_a_provider(server, http):
    status, body = await create(http, server)
    assert status == 400 and "kind" in body["error"]


# -- Stripe Checkout, end to end against the stand-in --------------------------------------------------------------


async def test_stripe_checkout_pays_once(stripe, standin, http, caplog):
    caplog.set_level(logging.DEBUG)
    agent = stripe.agent()
    console = stripe.calls.hub.subscribe(agent.id)
    status, body = await create(http, stripe, description="Invoice 7", customer_ref="C-1")
    link_id, url = body["link"]["id"], body["url"]
    token = url.rsplit("/", 1)[1]

    async with http.get(url) as r:  # the page itself: the payment's, not the video call's
        assert r.status == 200 and "pay.js" in await r.text()
    hand_off = await open_and_start(http, stripe, url)
    assert hand_off["url"].startswith(f"{standin.base}/c/pay/cs_test_")

    # What Stripe was asked, as Stripe would parse it.
    sent = standin.requests[-1]
    form = sent["form"]
    assert sent["idempotency_key"]
    assert form["mode"] == "payment" and form["line_items[0][quantity]"] == "1"
    assert form["line_items[0][price_data][unit_amount]"] == "1999"
    assert form["line_items[0][price_data][currency]"] == "gbp"
    assert form["line_items[0][price_data][product_data][name]"] == "Invoice 7"
    assert form["client_reference_id"] == link_id and form["metadata[voxgate_link]"] == link_id
    assert form["success_url"] == f"{stripe.base}/pay/done?link={link_id}"
    assert 1800 <= int(form["expires_at"]) - time.time() <= 86400

    # Single use: the link is spent on this device.
    async with http.post(f"{stripe.base}/api/join/{token}/payment") as r:
        assert r.status == 410
    async with http.get(f"{stripe.base}/api/join/{token}/payment") as r:
        assert r.status == 410

    back = await pay_at_provider(http, hand_off["url"], "4242 4242 4242 4242")
    assert back.status == 303 and back.headers["Location"] == f"{stripe.base}/pay/done?link={link_id}"
    assert [d.status for d in standin.deliveries] == [200, 200]

    payment = stripe.store.payments.get(link_id)
    assert (payment.state, payment.ref) == ("succeeded", hand_off["url"].rsplit("/", 1)[1])
    assert stripe.store.links.get(link_id).state == "ended"
    assert await states_of(console) == ["created", "opened", "handed_off", "details_entered", "succeeded"]
    rows = {r["action"]: r["detail"] for r in audit(stripe, link_id)}
    assert {"payment.create", "payment.handoff", "payment.succeeded"} <= set(rows)
    assert rows["payment.succeeded"] == f"amount=1999 currency=gbp provider=stripe ref={payment.ref}"
    events = stripe.store.events.recent(["customer:c-1"], 0)
    assert [e.type for e in events] == ["payment.succeeded"] and events[0].detail["amount"] == 1999

    # The result page reads the outcome with the hand-off's key, and only with it.
    status_url = f"{stripe.base}/api/pay/status?link={link_id}"
    async with http.get(status_url, headers={"X-Payment-Key": hand_off["key"]}) as r:
        assert r.status == 200
        assert (await r.json())["state"] == "succeeded"
    for key in ("", "guess"):
        async with http.get(status_url, headers={"X-Payment-Key": key}) as r:
            assert r.status == 403
    async with http.get(f"{stripe.base}/pay/done?link={link_id}") as r:
        assert r.status == 200 and "pay.js" in await r.text()

    # The agent's list.
    async with http.get(f"{stripe.base}/api/payments", headers={"Authorization": f"Bearer {stripe.api_token}"}) as r:
        mine = await r.json()
    assert [(p["link_id"], p["label"]) for p in mine["payments"]] == [(link_id, "Success")]
    assert mine["currencies"] == ["gbp", "eur", "usd"]
    no_card_data(stripe, caplog.text)


async def settled(server, link_id: str, state: str, tries: int = 100):
    """The payment once it reached ``state`` (news sent in the background takes a moment)."""
    for _ in range(tries):
        if (payment := server.store.payments.get(link_id)).state == state:
            return payment
        await asyncio.sleep(0.02)
    raise AssertionError(f"payment {link_id} is {payment.state}, not {state}")


async def test_stripe_declined_card_then_another_card_pays(stripe, standin, http, caplog):
    """As on Stripe Checkout: a decline is an attempt; the customer types another card on the same page."""
    caplog.set_level(logging.DEBUG)
    console = stripe.calls.hub.subscribe(stripe.agent().id)
    _, body = await create(http, stripe, phone="+44 7700 900123")
    link_id, token = body["link"]["id"], body["url"].rsplit("/", 1)[1]
    hand_off = await open_and_start(http, stripe, body["url"])
    declined = await pay_at_provider(http, hand_off["url"], DECLINED)
    assert declined.status == 200 and "Your card was declined." in await declined.text()  # the form, again

    payment = stripe.store.payments.get(link_id)
    assert (payment.state, standin.sessions[payment.ref]["status"]) == ("details_entered", "open")
    heard = [e for e in drain(console) if e.get("type") == "payment"]
    assert [e["state"] for e in heard] == ["created", "opened", "handed_off", "details_entered", "details_entered"]
    assert (heard[-1]["declined"], heard[-1]["declines"], heard[-1]["label"]) == (
        "generic_decline",
        1,
        "Details entered",
    )
    rows = {r["action"]: r["detail"] for r in audit(stripe, link_id)}
    assert (
        rows["payment.declined"] == f"amount=1999 currency=gbp provider=stripe ref={payment.ref} code=generic_decline"
    )
    events = stripe.store.events.recent(["phone:+447700900123"], 0)
    assert [(e.type, e.detail["code"]) for e in events] == [("payment.declined", "generic_decline")]

    # Stripe retries a delivery it thinks failed: the same decline counts once.
    retried = next(d for d in standin.deliveries if d.type == "payment_intent.payment_failed")
    assert await post_stripe(http, stripe, standin, retried.body) == 200
    assert [r["action"] for r in audit(stripe, link_id)].count("payment.declined") == 1

    # Back to the link mid-payment: the result page, not "this link has been used".
    async with http.get(f"{stripe.base}/j/{token}", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == f"/pay/done?link={link_id}"

    back = await pay_at_provider(http, hand_off["url"], "4242 4242 4242 4242")
    assert back.status == 303 and back.headers["Location"] == f"{stripe.base}/pay/done?link={link_id}"
    payment = stripe.store.payments.get(link_id)
    assert (payment.state, payment.detail) == ("succeeded", "paid")
    heard = [e for e in drain(console) if e.get("type") == "payment"]
    assert [(e["state"], e["declined"]) for e in heard] == [("succeeded", None)]
    actions = [r["action"] for r in audit(stripe, link_id) if r["action"].startswith("payment.")]
    assert actions == ["payment.create", "payment.handoff", "payment.declined", "payment.succeeded"]
    types = [e.type for e in stripe.store.events.recent(["phone:+447700900123"], 0)]
    assert types == ["payment.succeeded", "payment.declined"]  # newest first
    async with http.get(f"{stripe.base}/j/{token}", allow_redirects=False) as r:  # Back after paying, too
        assert r.status == 303 and r.headers["Location"] == f"/pay/done?link={link_id}"
    no_card_data(stripe, caplog.text)


async def test_stripe_too_many_declines_close_the_page(stripe, standin, http, caplog):
    """After max_declines (3) VoxGate expires the Checkout Session itself: no more cards can be tried on it."""
    caplog.set_level(logging.DEBUG)
    console = stripe.calls.hub.subscribe(stripe.agent().id)
    _, body = await create(http, stripe, customer_ref="C-9")
    link_id = body["link"]["id"]
    hand_off = await open_and_start(http, stripe, body["url"])
    for _ in range(3):
        await pay_at_provider(http, hand_off["url"], DECLINED)
    payment = await settled(stripe, link_id, "failed")
    assert payment.detail == "too many declined cards"
    assert standin.sessions[payment.ref]["status"] == "expired"
    assert await pay_at_provider_closed(http, hand_off["url"]) == 410
    for _ in range(50):  # the expiry's own news arrives after, and changes nothing
        if any(d.type == "checkout.session.expired" for d in standin.deliveries):
            break
        await asyncio.sleep(0.02)
    assert [(d.type, d.status) for d in standin.deliveries][-1] == ("checkout.session.expired", 200)
    actions = [r["action"] for r in audit(stripe, link_id) if r["action"].startswith("payment.")]
    assert actions == ["payment.create", "payment.handoff", *["payment.declined"] * 3, "payment.failed"]
    assert stripe.store.links.get(link_id).state == "ended"
    heard = [e for e in drain(console) if e.get("type") == "payment"]
    assert [e["declines"] for e in heard if e["declined"]] == [1, 2, 3]
    assert (heard[-1]["state"], heard[-1]["detail"], heard[-1]["declined"]) == (
        "failed",
        "too many declined cards",
        None,
    )
    types = [e.type for e in stripe.store.events.recent(["customer:c-9"], 0)]
    assert types == ["payment.failed", *["payment.declined"] * 3]
    no_card_data(stripe, caplog.text)


async def test_stripe_expired_session_fails(stripe, standin, http):
    """The customer never pays: Stripe expires the session (here: asked to, as at its ``expires_at``)."""
    _, body = await create(http, stripe)
    link_id = body["link"]["id"]
    hand_off = await open_and_start(http, stripe, body["url"])
    ref = hand_off["url"].rsplit("/", 1)[1]
    headers = {"Authorization": f"Bearer {standin.secret_key}"}
    async with http.post(f"{standin.base}/v1/checkout/sessions/{ref}/expire", headers=headers) as r:
        assert r.status == 200 and (await r.json())["status"] == "expired"
    payment = await settled(stripe, link_id, "failed")
    assert payment.detail == "the payment page expired unpaid"
    async with http.post(f"{standin.base}/v1/checkout/sessions/{ref}/expire", headers=headers) as r:
        assert r.status == 400  # Stripe's refusal: only open sessions expire
    assert any(r["action"] == "payment.failed" for r in audit(stripe, link_id))


def drain(queue: asyncio.Queue) -> list[dict]:
    events = []
    while not queue.empty():
        if event := queue.get_nowait():
            events.append(event)
    return events


async def pay_at_provider_closed(http, page_url: str) -> int:
    async with http.get(page_url) as r:
        return r.status


# -- webhooks: verified, applied once, forwards only ---------------------------------------------------------------


def stripe_event(kind: str, obj: dict) -> bytes:
    return json.dumps({"id": "evt_1", "object": "event", "type": kind, "data": {"object": obj}}).encode()


async def post_stripe(http, server, standin, body: bytes, t: float | None = None, secret: str | None = None) -> int:
    header = signature_header(secret or standin.webhook_secret, body, int(server.now if t is None else t))
    headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
    async with http.post(f"{server.base}/webhooks/stripe", data=body, headers=headers) as r:
        return r.status


async def test_stripe_webhooks_are_idempotent_and_forwards_only(stripe, standin, http):
    _, body = await create(http, stripe)
    link_id = body["link"]["id"]
    hand_off = await open_and_start(http, stripe, body["url"])
    ref = hand_off["url"].rsplit("/", 1)[1]
    session = {
        "id": ref,
        "object": "checkout.session",
        "amount_total": 1999,
        "currency": "gbp",
        "payment_status": "paid",
        "metadata": {"voxgate_link": link_id},
    }
    intent = {"id": "pi_1", "amount": 1999, "currency": "gbp", "metadata": {"voxgate_link": link_id}}
    completed = stripe_event("checkout.session.completed", session)

    # Out of order: the success first, then the news of details entered: the payment stays paid.
    assert await post_stripe(http, stripe, standin, completed) == 200
    assert await post_stripe(http, stripe, standin, stripe_event("payment_intent.created", intent)) == 200
    for _ in range(3):  # retried deliveries: harmless
        assert await post_stripe(http, stripe, standin, completed) == 200
    assert await post_stripe(http, stripe, standin, stripe_event("checkout.session.expired", session)) == 200
    assert await post_stripe(http, stripe, standin, stripe_event("payment_intent.payment_failed", intent)) == 200
    assert stripe.store.payments.get(link_id).state == "succeeded"
    actions = [r["action"] for r in audit(stripe, link_id)]
    assert actions.count("payment.succeeded") == 1 and "payment.failed" not in actions
    assert "payment.declined" not in actions  # a decline's news after the outcome: nothing to show
    assert [s.step for s in stripe.store.steps.of(link_id)] == ["opened", "handed_off", "succeeded"]

    # Refused: unsigned, wrongly signed, stale, unknown payment, another amount, too large.
    assert await post_stripe(http, stripe, standin, completed, secret="whsec_wrong") == 400
    assert await post_stripe(http, stripe, standin, completed, t=stripe.now - 301) == 400
    async with http.post(f"{stripe.base}/webhooks/stripe", data=completed) as r:
        assert r.status == 400
    unknown = stripe_event("checkout.session.completed", {**session, "id": "cs_test_unknown"})
    assert await post_stripe(http, stripe, standin, unknown) == 404
    other = stripe_event("checkout.session.completed", {**session, "amount_total": 1})
    assert await post_stripe(http, stripe, standin, other) == 400
    assert await post_stripe(http, stripe, standin, b"{" + b" " * 70_000 + b"}") == 413
    # An event VoxGate does not act on, or another integration's payment on the same account: acknowledged.
    assert await post_stripe(http, stripe, standin, stripe_event("charge.refunded", {"id": "ch_1"})) == 200
    foreign = stripe_event("payment_intent.payment_failed", {**intent, "metadata": {}})
    assert await post_stripe(http, stripe, standin, foreign) == 200
    # The generic endpoint does not take Stripe's events on a Stripe server.
    async with http.post(f"{stripe.base}/webhooks/payments", data=completed) as r:
        assert r.status == 404


async def test_stripe_key_is_checked_and_refusals_keep_the_link(stripe, standin, http):
    """A provider that refuses (here: a wrong secret key) does not use the link up: the customer can try again."""
    _, body = await create(http, stripe)
    token = body["url"].rsplit("/", 1)[1]
    key, standin.secret_key = standin.secret_key, "sk_test_other"
    async with http.post(f"{stripe.base}/api/join/{token}/payment") as r:
        assert r.status == 503
    standin.secret_key = key
    async with http.post(f"{stripe.base}/api/join/{token}/payment") as r:
        assert r.status == 200


async def test_an_expired_payment_link_takes_nothing(stripe, standin, http):
    _, body = await create(http, stripe, expires_in=60)
    token = body["url"].rsplit("/", 1)[1]
    stripe.now += 61
    async with http.post(f"{stripe.base}/api/join/{token}/payment") as r:
        assert r.status == 410 and "expired" in (await r.json())["error"]
    assert standin.requests == [] and stripe.store.payments.get(body["link"]["id"]).state == "created"


# -- the generic redirect provider ---------------------------------------------------------------------------------


async def test_redirect_provider_end_to_end(redirect, standin, http, caplog):
    caplog.set_level(logging.DEBUG)
    console = redirect.calls.hub.subscribe(redirect.agent().id)
    _, body = await create(http, redirect, description="Order 9")
    link_id = body["link"]["id"]
    token = body["url"].rsplit("/", 1)[1]
    async with http.get(f"{redirect.base}/api/join/{token}/payment") as r:
        assert (await r.json())["provider"] == "Acme Pay"
    hand_off = await open_and_start(http, redirect, body["url"])
    assert hand_off["url"].startswith(f"{standin.base}/redirect/pay?")

    # The redirect is signed: the provider refuses it with another amount.
    async with http.get(hand_off["url"].replace("amount=1999", "amount=1")) as r:
        assert r.status == 400
    back = await pay_at_provider(http, hand_off["url"], PAID)
    assert back.status == 303 and back.headers["Location"] == f"{redirect.base}/pay/done?link={link_id}"
    payment = redirect.store.payments.get(link_id)
    assert payment.state == "succeeded" and payment.ref.startswith("vgp_")
    assert await states_of(console) == ["created", "opened", "handed_off", "details_entered", "succeeded"]
    rows = {r["action"]: r["detail"] for r in audit(redirect, link_id)}
    assert rows["payment.succeeded"] == f"amount=1999 currency=gbp provider=redirect ref={payment.ref}"

    # Replays are harmless; forged and unknown ones are refused.
    event = json.dumps({"reference": payment.ref, "status": "failed", "amount": 1999, "currency": "gbp"}).encode()
    for secret, expected in ((standin.redirect_secret, 200), ("wrong", 400)):
        headers = {"X-Signature": signature_header(secret, event, int(redirect.now))}
        async with http.post(f"{redirect.base}/webhooks/payments", data=event, headers=headers) as r:
            assert r.status == expected
    assert redirect.store.payments.get(link_id).state == "succeeded"
    unknown = json.dumps({"reference": "vgp_nope", "status": "succeeded"}).encode()
    headers = {"X-Signature": signature_header(standin.redirect_secret, unknown, int(redirect.now))}
    async with http.post(f"{redirect.base}/webhooks/payments", data=unknown, headers=headers) as r:
        assert r.status == 404
    no_card_data(redirect, caplog.text)


async def post_redirect(http, server, standin, event: dict) -> int:
    body = json.dumps({"amount": 1999, "currency": "gbp", **event}).encode()
    headers = {"X-Signature": signature_header(standin.redirect_secret, body, int(server.now))}
    async with http.post(f"{server.base}/webhooks/payments", data=body, headers=headers) as r:
        return r.status


async def test_redirect_provider_declines_then_pays(redirect, standin, http):
    """The generic protocol's ``declined``: an attempt, as on Stripe; then another card pays."""
    console = redirect.calls.hub.subscribe(redirect.agent().id)
    _, body = await create(http, redirect, phone="+447700900124")
    link_id = body["link"]["id"]
    hand_off = await open_and_start(http, redirect, body["url"])
    declined = await pay_at_provider(http, hand_off["url"], DECLINED)
    page = await declined.text()
    assert declined.status == 200 and "Your card was declined." in page and 'id="cancel"' in page
    assert f"/pay/done?link={link_id}&amp;left=1" in page  # the back link leaves by the cancel URL
    payment = redirect.store.payments.get(link_id)
    assert payment.state == "details_entered"
    heard = [e for e in drain(console) if e.get("type") == "payment"]
    assert (heard[-1]["state"], heard[-1]["declined"]) == ("details_entered", "card_declined")
    back = await pay_at_provider(http, hand_off["url"], PAID)
    assert back.headers["Location"] == f"{redirect.base}/pay/done?link={link_id}"
    assert redirect.store.payments.get(link_id).state == "succeeded"
    actions = [r["action"] for r in audit(redirect, link_id) if r["action"].startswith("payment.")]
    assert actions == ["payment.create", "payment.handoff", "payment.declined", "payment.succeeded"]
    rows = {r["action"]: r["detail"] for r in audit(redirect, link_id)}
    assert rows["payment.declined"].endswith(f"ref={payment.ref} code=card_declined")


async def test_redirect_provider_declined_and_failed_statuses(redirect, standin, http):
    """``declined`` by webhook: counted once per ``attempt``; max_declines of them fail the payment here; and
    ``failed`` is the end on its own."""
    links = []
    for _ in range(2):
        _, body = await create(http, redirect)
        await open_and_start(http, redirect, body["url"])
        links.append(redirect.store.payments.get(body["link"]["id"]))
    first, second = links
    for attempt in ("a1", "a1", "a2"):  # a1 delivered twice: one decline
        assert (
            await post_redirect(
                http,
                redirect,
                standin,
                {"reference": first.ref, "status": "declined", "reason": "Insufficient funds", "attempt": attempt},
            )
            == 200
        )
    payment = redirect.store.payments.get(first.link_id)
    assert payment.state == "details_entered"
    assert [
        r["detail"].rsplit(" ", 1)[1] for r in audit(redirect, first.link_id) if r["action"] == "payment.declined"
    ] == ["code=insufficient_funds"] * 2
    assert await post_redirect(http, redirect, standin, {"reference": first.ref, "status": "declined"}) == 200
    payment = await settled(redirect, first.link_id, "failed")
    assert payment.detail == "too many declined cards"

    assert (
        await post_redirect(
            http, redirect, standin, {"reference": second.ref, "status": "failed", "reason": "customer cancelled"}
        )
        == 200
    )
    payment = redirect.store.payments.get(second.link_id)
    assert (payment.state, payment.detail) == ("failed", "customer cancelled")
    assert await post_redirect(http, redirect, standin, {"reference": second.ref, "status": "refunded"}) == 400


async def test_back_to_the_link_after_the_hand_off(redirect, standin, http):
    """Before the hand-off the link is the payment page; after it, Back lands on the result page, which shows the
    state only to the tab holding the hand-off's key."""
    _, body = await create(http, redirect)
    link_id, url = body["link"]["id"], body["url"]
    async with http.get(url, allow_redirects=False) as r:
        assert r.status == 200 and "pay.js" in await r.text()
    hand_off = await open_and_start(http, redirect, url)
    async with http.get(url) as r:  # followed: the result page
        assert r.status == 200 and str(r.url) == f"{redirect.base}/pay/done?link={link_id}"
        assert "pay.js" in await r.text() and r.headers["Cache-Control"] == "no-store"
    async with http.get(f"{redirect.base}/api/pay/status?link={link_id}") as r:  # another tab: no key, no state
        assert r.status == 403 and "state" not in await r.json()
    async with http.get(
        f"{redirect.base}/api/pay/status?link={link_id}", headers={"X-Payment-Key": hand_off["key"]}
    ) as r:
        assert (await r.json())["state"] == "handed_off"
    async with http.get(f"{redirect.base}/j/{'x' * 43}", allow_redirects=False) as r:  # unknown links: as before
        assert r.status == 404


# -- no card data, anywhere ----------------------------------------------------------------------------------------


def no_card_data(server: TestServer, logs: str) -> None:
    """The card is typed on the provider's page only: neither the store (every table, as bytes on disk), nor the
    audit, nor the logs ever hold a card number."""
    stored = b"".join(p.read_bytes() for p in (server.settings.data_dir).glob("voxgate.db*"))
    rows = json.dumps(server.store.audit.log(limit=10_000))
    for card in CARDS:
        assert card.encode() not in stored
        assert card not in rows
        assert card not in logs


# -- the operator's settings ---------------------------------------------------------------------------------------


def test_payment_settings_from_a_toml_table_and_the_environment(tmp_path, monkeypatch, capsys):
    """``[payments]`` in the file, ``VOXGATE_PAYMENTS_*`` in the environment, secrets by file; never shown."""
    from cli import config
    from cli.main import _parser, _payment_settings, _subparser, main

    key = tmp_path / "stripe-key"
    key.write_text("sk_test_from_file\n")
    file = tmp_path / "voxgate.toml"
    file.write_text(
        f'[payments]\nprovider = "stripe"\nstripe-secret-key-file = "{key}"\n'
        'stripe-webhook-secret = ["whsec_old", "whsec_new"]\ncurrency = ["GBP", "eur"]\nmax-amount = 5000\n'
    )
    monkeypatch.setenv("VOXGATE_PAYMENTS_STRIPE_API_BASE", "http://127.0.0.1:9")
    argv = ["--config", str(file)]
    assert main(["config", "show", *argv]) == 0
    shown = capsys.readouterr().out
    assert 'payments-stripe-secret-key = "***"' in shown and "whsec_" not in shown and "sk_test" not in shown
    parser = _parser()
    args = config.resolve(_subparser(parser, "serve"), parser.parse_args(["serve", *argv]), argv, dict(os.environ))
    settings = _payment_settings(args)
    assert (settings.provider, settings.stripe_secret_key) == ("stripe", "sk_test_from_file")
    assert settings.stripe_webhook_secrets == ("whsec_old", "whsec_new")
    assert (settings.currencies, settings.max_amount) == (("gbp", "eur"), 5000)
    assert settings.stripe_api_base == "http://127.0.0.1:9"
    args.payments_stripe_webhook_secret = []
    with pytest.raises(SystemExit, match="webhook-secret"):
        _payment_settings(args)
