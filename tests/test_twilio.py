"""Twilio Media Streams at /twilio/media: a client that behaves as Twilio does, on the real server, real voices.

A Portuguese caller and an English agent get subtitles both ways, the words still being spoken at ``stop`` reach
the transcript, the calling number identifies a customer, the signature is checked, a broken or silent stream
is closed and leaves no live call, and an unknown agent is refused before any record is made.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import aiohttp
import numpy as np
import pytest

from media.phone import PhoneMedia, ulaw_decode, ulaw_encode
from media.twilio import Playback, TwilioStream, stream_url
from models.metrics import normalise_words
from peers.phone import phone_audio, silence
from peers.twilio import TwilioPeer, sign
from store.base import Customer
from tests.server import TestServer
from tests.test_server import login, wait_for

TOKEN = "twilio-auth-token-of-the-test-account"
CALLER = "+351 912 345 678"
CUSTOMER = "+44 7700 900100"
PORTUGUESE = "asr/multilingual/test_pt.wav"  # "Uma raposa velha não consegue aprender nenhum ofício."
ENGLISH = "asr/speechbrain-en/spk1_snt1.wav"  # "The child almost hurt the small dog."


async def start_server(tmp_path, engines=None, **settings) -> TestServer:
    s = await TestServer(tmp_path / "data", engines, **{"twilio_auth_token": TOKEN, **settings}).start()
    s.add_agent("alice", language="en")
    return s


@pytest.fixture
async def server(tmp_path):
    """No speech engines: the protocol, the signature, the watchdog and ID&V need none."""
    s = await start_server(tmp_path, media_timeout=1.0)
    yield s
    await s.stop()


def url(server: TestServer, query: str = "") -> str:
    return "ws" + server.base.removeprefix("http") + "/twilio/media" + query


def refusals(server: TestServer) -> list[dict]:
    return [a for a in server.store.audit.log() if a["action"] == "ingress.refused"]


async def collect(ws, into: list) -> None:
    async for msg in ws:
        into.append(msg.json())


# -- a call ------------------------------------------------------------------------------------------------------


async def test_a_call_has_subtitles_on_both_legs_and_loses_nothing_at_stop(tmp_path, engines, http, data):
    server = await start_server(tmp_path, engines)
    try:
        headers = await login(http, server)
        console, events = await http.ws_connect(f"{server.base}/api/ws"), []
        reader = asyncio.create_task(collect(console, events))
        peer = await TwilioPeer.connect(http, url(server, "?region=ie1"), TOKEN)
        await peer.start({"From": CALLER, "agent": "alice", "language": "pt-BR"}, tracks=("inbound", "outbound"))
        # The agent speaks after 2 s that Twilio leaves out of the outbound track (nothing played to the caller);
        # then the caller, cut off mid-sentence by the stop.
        agent = silence(2.0) + phone_audio(data / ENGLISH) + silence(0.5)
        caller = silence(len(agent) / 8000) + phone_audio(data / PORTUGUESE)[: int(3.5 * 8000)]
        await peer.play(caller, agent, skip_agent_silence=True)

        links = [e["link"] for e in events if e["type"] == "link" and e["link"]["channel"] == "twilio"]
        assert links and (links[0]["phone"], links[0]["external_id"], links[0]["language"]) == (
            CALLER,
            peer.call_sid,
            "pt",
        )
        call_id = links[0]["id"]
        await peer.stop()
        assert await peer.closed() == 1000 and "Twilio stopped the stream" in peer.close_reason
        await wait_for(lambda: server.store.links.get(call_id).state == "ended", timeout=30)
        assert call_id not in server.calls.live

        def subtitles(speaker: str, kind: str) -> list[dict]:
            return [e for e in events if e["type"] == "subtitle" and e["speaker"] == speaker and e["kind"] == kind]

        await wait_for(lambda: subtitles("customer", "translation") and subtitles("agent", "translation"), timeout=30)
        english = subtitles("customer", "translation")[0]
        assert english["language"] == "en" and "fox" in normalise_words(english["text"]), english["text"]
        # The words being spoken when the stream stopped were heard to the end of the caller's audio.
        said = subtitles("customer", "final")[-1]
        assert said["audio_end"] > len(caller) / 8000 - 0.5
        # The agent's leg keeps the stream's time: the silence Twilio left out is there.
        heard = subtitles("agent", "final")[0]
        assert {"child", "dog"} & set(normalise_words(heard["text"])), heard["text"]
        assert heard["audio_start"] > 1.8

        async with http.get(f"{server.base}/api/calls/{call_id}/transcript", headers=headers) as r:
            assert r.status == 200
            lines = (await r.json())["lines"]
        assert [(line["speaker"], line["language"]) for line in lines] == [("agent", "en"), ("customer", "pt")]
        assert {"raposa", "velha"} <= set(normalise_words(lines[1]["text"])), lines[1]["text"]
        assert all(line["translation"] for line in lines)
        await console.close()
        await reader
    finally:
        await server.stop()


async def test_the_calling_number_identifies_the_customer(server, http):
    server.store.customers.put(Customer("C-100", "Alice Example", (CUSTOMER,)))
    events = server.calls.hub.subscribe(server.store.agents.by_name("alice").id)
    peer = await TwilioPeer.connect(http, url(server), TOKEN)
    await peer.start({"caller": CUSTOMER, "agent": "alice"})
    await peer.play(silence(0.3), speed=4)

    async def identified() -> dict:
        while True:
            event = await events.get()
            if event["type"] == "idv" and event["customer_id"]:
                return event

    found = await asyncio.wait_for(identified(), 10)
    assert (found["customer_id"], found["customer_name"], found["identified_by"]) == ("C-100", "Alice Example", "phone")
    await peer.stop()
    assert await peer.closed() == 1000
    assert server.store.idv.get(found["link_id"])["customer_id"] == "C-100"


# -- who may stream ----------------------------------------------------------------------------------------------


async def test_only_a_stream_signed_with_the_auth_token_is_accepted(server, http):
    query = "?tenant=acme&leg=both"
    for token, status in ((None, 401), ("not-the-auth-token", 401)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await TwilioPeer.connect(http, url(server, query), token)
        assert refused.value.status == status
    # Signed for another URL: the query is part of what Twilio signs.
    headers = {"X-Twilio-Signature": sign(TOKEN, url(server))}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url(server, query), headers=headers)
    assert refused.value.status == 401
    details = [a["detail"] for a in refusals(server)]
    assert len(details) == 3 and "missing X-Twilio-Signature" in details[0] and "wrong" in details[1]
    assert not any(TOKEN in d or headers["X-Twilio-Signature"] in d for d in details)
    assert server.store.links.of_agent(1) == []

    peer = await TwilioPeer.connect(http, url(server, query), TOKEN)
    await peer.start({"caller": CALLER, "agent": "alice"})
    await peer.play(silence(0.2), speed=4)
    await peer.send("dtmf", {"track": "inbound_track", "digit": "5"})
    await peer.send("mark", {"name": "greeting"})
    await peer.stop()
    assert await peer.closed() == 1000
    [call] = server.store.links.of_agent(1)
    assert (call.channel, call.external_id, call.phone) == ("twilio", peer.call_sid, CALLER)
    await wait_for(lambda: server.store.links.get(call.id).state == "ended")


async def test_without_an_auth_token_the_endpoint_is_off(tmp_path, http):
    server = await start_server(tmp_path, twilio_auth_token=None)
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await TwilioPeer.connect(http, url(server), TOKEN)
        assert refused.value.status == 404
    finally:
        await server.stop()


# -- streams that break the protocol -----------------------------------------------------------------------------


def media(payload: str = base64.b64encode(bytes(160)).decode()) -> dict:
    return {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}


@pytest.mark.parametrize(
    ("started", "message", "code", "reason"),
    [
        (True, "{not json", 1008, "not JSON"),
        (False, {"event": "media", "sequenceNumber": "1", "media": media()}, 1008, "media before start"),
        (True, {"event": "media", "sequenceNumber": "2", "media": media("not base64!")}, 1008, "not base64"),
        (True, b"\x00\x01", 1003, "JSON text"),
        (True, {"event": "hangup", "sequenceNumber": "2"}, 1008, "unknown event"),
        (True, {"event": "media", "sequenceNumber": "2", "media": media("A" * 100_000)}, 1009, ""),
    ],
    ids=["malformed-json", "media-before-start", "bad-base64", "binary", "unknown-event", "too-large"],
)
async def test_a_broken_stream_is_closed_with_the_reason_and_no_call_stays_live(
    server, http, started, message, code, reason
):
    peer = await TwilioPeer.connect(http, url(server), TOKEN)
    if started:
        await peer.start({"agent": "alice"})
        await peer.play(silence(0.1), speed=4)
    await peer.send_raw(message if isinstance(message, str | bytes) else json.dumps(message))
    assert await peer.closed() == code
    assert reason in peer.close_reason
    await wait_for(lambda: not server.calls.live)
    assert server.store.links.count_live() == 0
    calls = server.store.links.of_agent(1)
    assert len(calls) == int(started) and all(c.state == "ended" for c in calls)


async def test_a_media_format_other_than_mulaw_8k_is_refused_before_any_record(server, http):
    peer = await TwilioPeer.connect(http, url(server), TOKEN)
    await peer.start({"agent": "alice"}, media_format={"encoding": "audio/l16", "sampleRate": 16000, "channels": 1})
    assert await peer.closed() == 1008 and "only audio/x-mulaw 8000 Hz mono" in peer.close_reason
    assert server.store.links.of_agent(1) == []


async def test_an_unknown_agent_is_refused_with_the_reason_and_no_record(server, http):
    peer = await TwilioPeer.connect(http, url(server), TOKEN)
    await peer.start({"caller": CALLER, "agent": "nobody"})
    assert await peer.closed() == 1008 and peer.close_reason == "no agent 'nobody' on this server"
    assert server.store.links.of_agent(1) == [] and not server.calls.live
    assert refusals(server)[-1]["detail"] == "no agent 'nobody' on this server"


async def test_a_stream_that_stops_sending_is_ended_by_the_watchdog(server, http):
    peer = await TwilioPeer.connect(http, url(server), TOKEN)
    await peer.start({"agent": "alice"})
    await peer.play(silence(0.2), speed=4)  # then nothing, not even a stop
    assert await peer.closed(timeout=5) == 1000 and "stopped sending" in peer.close_reason
    [call] = server.store.links.of_agent(1)
    await wait_for(lambda: server.store.links.get(call.id).state == "ended")
    assert server.store.links.get(call.id).end_reason == "the platform's stream stopped sending"


# -- the protocol object -----------------------------------------------------------------------------------------


def message(event: str, sequence: int, **body) -> str:
    return json.dumps({"event": event, "sequenceNumber": str(sequence), "streamSid": "MZ1", event: body})


async def test_each_track_keeps_the_stream_time_through_gaps_repeats_and_broken_timestamps(caplog):
    async def ended(reason: str) -> None:
        pass

    media = PhoneMedia("call", ended)
    frames = {"customer": [], "agent": []}
    media.customer_listeners.append(frames["customer"].append)
    media.agent_listeners.append(frames["agent"].append)
    stream = TwilioStream(max_gap=5.0)
    fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    start = stream.receive(
        message("start", 1, streamSid="MZ1", accountSid="AC1", callSid="CA1", tracks=["inbound", "outbound"],
                customParameters={"From": "+351912345678", "Queue": "sales", "language": "pt-PT"}, mediaFormat=fmt)
    )  # fmt: skip
    assert (start.call().caller, start.call().queue, start.call().external_id) == ("+351912345678", "sales", "CA1")
    stream.attach(media)
    tone = ulaw_encode(np.full(160, 1000, np.int16))

    def chunk(sequence: int, track: str, number: int, ms: int) -> str:
        return message("media", sequence, track=track, chunk=str(number), timestamp=str(ms),
                       payload=base64.b64encode(tone).decode())  # fmt: skip

    stream.receive(chunk(2, "inbound", 1, 0))
    stream.receive(chunk(3, "inbound", 2, 20))
    stream.receive(chunk(4, "outbound", 1, 1000))  # the agent's track starts a second in: a second of silence
    with caplog.at_level(logging.WARNING, "media.twilio"):
        stream.receive(chunk(4, "outbound", 1, 1000))  # repeated: logged, not heard twice, not fatal
        stream.receive(chunk(5, "outbound", 2, 60_000))  # a broken timestamp: at most max_gap filled
    assert "repeated" in caplog.text and "jumped" in caplog.text
    stream.receive(chunk(6, "outbound", 3, 60_020))  # and the track goes on from there, no new gap
    assert media.heard == {"customer": 320, "agent": 8000 + 160 + 5 * 8000 + 160 + 160}
    assert [(f.pts, f.duration) for f in frames["agent"][:2]] == [(0.0, 1.0), (1.0, 0.02)]
    assert not frames["agent"][0].samples.any()
    assert np.array_equal(frames["customer"][0].samples.reshape(-1), ulaw_decode(tone))


def test_stream_url_is_the_address_twilio_was_given():
    assert stream_url("https://voxgate.example.com/", "/twilio/media?a=1&b=2") == (
        "wss://voxgate.example.com/twilio/media?a=1&b=2"
    )
    assert stream_url("http://127.0.0.1:8080", "/twilio/media") == "ws://127.0.0.1:8080/twilio/media"


def test_playback_messages_for_a_bidirectional_stream():
    out = Playback("MZ1")
    pcm = (np.sin(np.arange(160) / 5) * 8000).astype(np.int16)
    played = json.loads(out.media(pcm))
    assert played["event"] == "media" and played["streamSid"] == "MZ1" and set(played["media"]) == {"payload"}
    back = ulaw_decode(base64.b64decode(played["media"]["payload"])).astype(np.int32)
    assert np.max(np.abs(back - pcm)) < 300  # μ-law's step at this level
    assert json.loads(out.mark("said-hello")) == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "said-hello"}}
    assert json.loads(out.clear()) == {"event": "clear", "streamSid": "MZ1"}
