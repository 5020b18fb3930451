"""A phone call streamed by the platform becomes a Call like a video link's: G.711, records, the service, the console.

The ingress protocols have their own tests (test_audiohook, test_twilio, test_whip); these hold what they share.
"""

from __future__ import annotations

import asyncio
import sqlite3

import numpy as np
import pytest

from calls.hub import Hub
from media.audio_io import read_pcm
from media.phone import PhoneCall, ulaw_decode, ulaw_encode
from peers.phone import narrowband, phone_audio
from store.errors import AtCapacity, Invalid, NotFound
from store.sqlite import SqliteStore
from tests.server import TestServer
from tests.test_server import login, wait_for

# -- G.711 ------------------------------------------------------------------------------------------------------


def test_ulaw_code_points_of_the_standard():
    assert ulaw_encode(np.array([0, 32767, -32768], np.int16)) == bytes([0xFF, 0x80, 0x00])
    assert ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]
    every = bytes(range(256))  # decoding then coding any code word gives it back (0x7F is the second zero)
    again = ulaw_encode(ulaw_decode(every))
    assert [a for a, b in zip(every, again, strict=True) if a != b] == [0x7F]


def test_ulaw_keeps_real_speech(data):
    speech = narrowband(read_pcm(data / "asr/speechbrain-en/spk1_snt1.wav")).astype(np.float64)
    back = ulaw_decode(ulaw_encode(speech.astype(np.int16))).astype(np.float64)
    snr = 10 * np.log10(np.sum(speech**2) / np.sum((speech - back) ** 2))
    assert 30 < snr < 45  # G.711 gives about 38 dB on speech: a broken coder is far off either way


# -- records ----------------------------------------------------------------------------------------------------


def test_a_database_from_before_phone_calls_is_upgraded(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.executescript(
            "CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, password_hash TEXT NOT NULL,"
            " api_token_hash TEXT UNIQUE NOT NULL, language TEXT NOT NULL DEFAULT 'en', created REAL NOT NULL);"
            "CREATE TABLE links (id TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, agent_id INTEGER NOT NULL,"
            " customer_ref TEXT, phone TEXT, language TEXT NOT NULL, reason TEXT NOT NULL, phrase TEXT NOT NULL,"
            " created REAL NOT NULL, expires REAL NOT NULL, state TEXT NOT NULL, opened REAL, connected REAL,"
            " ended REAL, end_reason TEXT);"
            "INSERT INTO agents VALUES (1, 'alice', 'x', 'y', 'en', 0);"
            "INSERT INTO links VALUES ('old', 'h', 1, NULL, NULL, 'en', 'r', 'a b c', 0, 9e9, 'created',"
            " NULL, NULL, NULL, NULL);"
        )
    store = SqliteStore(db)
    assert store.links.get("old").channel == "link"
    call = store.links.add_call(1, channel="twilio", phone="+441234", language="en", external_id="CA1")
    assert (call.state, call.channel, call.phone, call.external_id) == ("connected", "twilio", "+441234", "CA1")
    assert store.links.count_live(1) == 1
    store.close()


def test_hub_keeps_nothing_for_topics_nobody_reads():
    hub = Hub()
    hub.publish(("customer", "a phone call"), {"type": "subtitle"})
    q = hub.subscribe("agent")
    hub.unsubscribe("agent", q)
    assert hub._queues == {}


# -- the service ------------------------------------------------------------------------------------------------


@pytest.fixture
async def server(tmp_path, engines):
    s = await TestServer(tmp_path / "data", engines, max_calls=2, queues={"sales": "alice"}).start()
    s.add_agent("alice", language="en")
    yield s
    await s.stop()


async def play(media, leg: str, audio: bytes, speed: float = 4.0) -> None:
    """μ-law bytes into a leg, 20 ms at a time, ``speed`` times faster than real time."""
    for i in range(0, len(audio), 160):
        media.hear(leg, ulaw_decode(audio[i : i + 160]))
        await asyncio.sleep(0.02 / speed)


async def test_a_phone_call_is_a_call_with_subtitles_transcript_and_an_end(server, http, data):
    headers = await login(http, server)
    console = await http.ws_connect(f"{server.base}/api/ws")
    assert (await console.receive_json())["type"] == "hello"
    hung_up = []

    async def hangup(reason: str) -> None:
        hung_up.append(reason)

    info = PhoneCall(channel="twilio", external_id="CA42", caller="+351912345678", queue="sales", language="pt-PT")
    call, media = await server.calls.open_phone_call(info, hangup)
    event = await console.receive_json()
    assert event["type"] == "link" and event["link"]["id"] == call.id
    assert (event["link"]["channel"], event["link"]["phone"], event["link"]["state"]) == (
        "twilio",
        "+351912345678",
        "connected",
    )
    assert event["link"]["language"] == "pt"  # the locale cut to the language

    # No video to join on a phone call; a video link for the caller, pre-filled from the call.
    async with http.post(f"{server.base}/api/calls/{call.id}/agent-offer", json={}, headers=headers) as r:
        assert r.status in (400, 409)
    async with http.post(f"{server.base}/api/calls/{call.id}/escalate", headers=headers) as r:
        body = await r.json()
        assert r.status == 201, body
        assert (body["link"]["phone"], body["link"]["language"], body["link"]["channel"]) == (
            "+351912345678",
            "pt",
            "link",
        )

    await play(media, "customer", phone_audio(data / "asr/multilingual/test_pt.wav", pad_seconds=0.5))
    subtitles = []
    while not any(s.get("kind") == "translation" for s in subtitles):
        message = await asyncio.wait_for(console.receive_json(), 60)
        if message["type"] == "subtitle":
            subtitles.append(message)
    translation = next(s for s in subtitles if s["kind"] == "translation")
    assert translation["speaker"] == "customer" and translation["language"] == "en"
    assert translation["text"].strip()

    async with http.post(f"{server.base}/api/calls/{call.id}/end", headers=headers) as r:
        assert r.status == 200, await r.text()
    assert hung_up == ["ended by alice"] and media.ended
    link = server.store.links.get(call.id)
    assert link.state == "ended" and call.id not in server.calls.live
    async with http.get(f"{server.base}/api/calls/{call.id}/transcript", headers=headers) as r:
        lines = (await r.json())["lines"]
    assert [(line["speaker"], line["language"]) for line in lines] == [("customer", "pt")]
    assert lines[0]["translation"] == translation["text"]


async def test_refusals_come_before_any_record(server):
    calls = server.calls
    with pytest.raises(NotFound, match="no agent 'bob'"):
        await calls.open_phone_call(PhoneCall(channel="twilio", agent="bob"))
    with pytest.raises(Invalid, match="names no agent"):
        await calls.open_phone_call(PhoneCall(channel="twilio", queue="support"))
    with pytest.raises(Invalid, match="no subtitles"):
        await calls.open_phone_call(PhoneCall(channel="twilio", agent="alice", language="ko"))
    first = [await calls.open_phone_call(PhoneCall(channel="twilio", agent="alice")) for _ in range(2)]
    with pytest.raises(AtCapacity):
        await calls.open_phone_call(PhoneCall(channel="twilio", agent="alice"))
    assert server.store.links.count_live() == 2
    assert len(server.store.links.of_agent(1)) == 2  # the refused ones left nothing behind
    for call, _ in first:
        await call.end("test over")
        await call.ended


async def test_a_stream_that_stops_sending_is_ended_by_the_watchdog(tmp_path):
    server = await TestServer(tmp_path / "data", None, media_timeout=0.4).start()
    server.add_agent("alice")
    try:
        hung_up = []

        async def hangup(reason: str) -> None:
            hung_up.append(reason)

        call, media = await server.calls.open_phone_call(PhoneCall(channel="audiohook", agent="alice"), hangup)
        media.paused = True
        for _ in range(6):  # a paused stream that still pings lives on
            media.alive()
            await asyncio.sleep(0.1)
        assert not media.ended
        await asyncio.wait_for(call.ended, 3)
        assert hung_up == ["the platform's stream stopped sending"]
        await wait_for(lambda: server.store.links.get(call.id).state == "ended")
    finally:
        await server.stop()
