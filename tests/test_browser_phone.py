"""A phone call in the agent's console, in real Chromium (Debian's, driven by Playwright).

The contact-centre platform puts a Twilio call through to agent alice: a Portuguese recording, band-limited
and μ-law coded as the phone network delivers it, streamed at real time into the real server. The console
shows the call by its number with no video, the caller identified by that number, live English subtitles;
the agent escalates to video (a link to read out) and ends the call, which hangs up the platform's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
import pytest

from media.phone import PhoneCall, PhoneMedia, ulaw_decode
from models.metrics import normalise_words
from peers.browser import CHROMIUM, chromium_args
from peers.phone import phone_audio
from store.base import Customer
from tests.server import TestServer
from tests.test_browser import signed_in_console

pytestmark = pytest.mark.browser

CALLER = "+44 7700 900100"
CHUNK = 160  # 20 ms at 8 kHz, as the platforms send it


async def speak(media: PhoneMedia, pcm: np.ndarray) -> None:
    """The caller's leg at real time in 20 ms chunks, then silence (the line stays open) until the call ends."""
    start, sent = time.monotonic(), 0
    silence = np.zeros(CHUNK, np.int16)
    while not media.ended:
        chunk = pcm[sent : sent + CHUNK] if sent < len(pcm) else silence
        media.hear("customer", chunk)
        sent += CHUNK
        await asyncio.sleep(max(0.0, start + sent / 8000 - time.monotonic()))


async def test_phone_call_in_the_console(tmp_path, data, chromium, engines):
    server = await TestServer(tmp_path / "data", engines).start()
    server.add_agent("alice", "correct horse", language="en")
    server.store.customers.put(Customer("C-100", "Alice Example", (CALLER,)))
    agent_mic = data / "asr/speechbrain-en/spk1_snt1.wav"  # the console must never open it for a phone call
    hangups: list[str] = []

    async def hangup(reason: str) -> None:
        hangups.append(reason)

    speaker = None
    try:
        async with chromium.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=chromium_args(agent_mic))
            requests, errors = [], []
            console = await signed_in_console(browser, server.base, errors=errors)
            console.on("request", lambda r: requests.append(r.url))
            await console.wait_for_function("window.vg.events.some(e => e.type === 'hello')")
            assert await console.is_hidden("#live")

            # The platform puts a call through; its caller speaks Portuguese over the phone network.
            call, media = await server.calls.open_phone_call(
                PhoneCall(channel="twilio", external_id="CA42", caller=CALLER, agent="alice", language="pt"),
                hangup,
            )
            speech = ulaw_decode(phone_audio(data / "asr/multilingual/test_pt.wav", pad_seconds=1.0))
            speaker = asyncio.create_task(speak(media, speech))

            # The console opens it by itself with a tone, names it by the number, and lists it in the strip.
            name = f"Phone call from {CALLER} (Twilio)"
            await console.wait_for_selector("#live:not([hidden])", timeout=10000)
            assert await console.text_content("#live-ref") == name
            assert await console.text_content(f'#strip button[data-id="{call.id}"]') == name
            assert await console.evaluate("window.vg.alerts") == 1
            row = console.locator(f'tr[data-id="{call.id}"]')
            assert name in await row.text_content()
            assert await row.locator('td[data-state="connected"]').count() == 1
            assert await row.locator('button:text-is("Revoke")').count() == 0

            # The caller is identified by the number they call from.
            await console.wait_for_function(
                "document.getElementById('idv-detail').textContent.includes('C-100')", timeout=15000
            )
            detail = await console.text_content("#idv-detail")
            assert detail == "Customer C-100 (Alice Example), identified by calling number.", detail
            assert await console.get_attribute("#idv-status", "data-status") == "identified_only"

            # Live subtitles: the caller's Portuguese, and English under it.
            translation = console.locator("#transcript li.customer .translation:not(:empty)").first
            await translation.wait_for(timeout=30000)
            english = await translation.text_content()
            line = console.locator("#transcript li.customer.final").first
            original = await line.locator(".text").text_content()
            print(f"\nconsole subtitle: {original!r} -> {english!r}")
            assert {"raposa", "velha"} & set(normalise_words(original)), original
            assert "fox" in normalise_words(english), english
            assert await line.get_attribute("lang") == "pt"

            # No video, no WebRTC, no security phrase, no still: the agent hears the caller on the phone.
            assert await console.is_hidden("#remote")
            assert await console.evaluate("document.getElementById('remote').srcObject === null")
            assert await console.evaluate("window.vg.videoFrames") == 0
            assert not [url for url in requests if "agent-offer" in url], requests
            for hidden in ("#live-phrase-row", "#snapshot", "#stills"):
                assert await console.is_hidden(hidden), hidden

            # Escalate to video: a link for the caller, with its QR code and phrase, in the new-link card.
            await console.click("#escalate")
            await console.wait_for_selector("#new-result:not([hidden]) #qr img")
            url = await console.input_value("#link-url")
            phrase = await console.text_content("#new-phrase")
            assert url.startswith(f"{server.base}/j/"), url
            assert name in await console.text_content("#new-for")
            links = [link for link in server.store.links.of_agent(call.link.agent_id) if link.id != call.id]
            assert [(link.channel, link.phone, link.phrase) for link in links] == [("link", CALLER, phrase)]
            await console.wait_for_selector(f'tr[data-id="{links[0].id}"] td[data-state="created"]')
            customer = await (await browser.new_context(bypass_csp=True)).new_page()
            response = await customer.goto(url)
            assert response.status == 200
            await customer.wait_for_function("document.getElementById('phrase').textContent.length > 3")
            assert await customer.text_content("#phrase") == phrase

            # End call: ended on the server, shown as done, and the platform's stream is hung up.
            await console.click("#end")
            await console.wait_for_selector(f'tr[data-id="{call.id}"] td[data-state="ended"]', timeout=10000)
            assert media.ended and hangups == ["ended by alice"], hangups
            assert server.store.links.get(call.id).state == "ended"
            assert await console.is_hidden("#live")
            assert await console.title() == "VoxGate agent console"
            assert await row.locator("a.download").count() == 2  # the transcripts, JSON and WebVTT
            assert not errors, errors
            await browser.close()
    finally:
        if speaker is not None:
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaker
        await server.stop()
