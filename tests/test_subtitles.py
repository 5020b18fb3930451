"""Live translated subtitles over WebRTC with pure-Python peers: both directions, timings, transcripts."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from models.metrics import normalise_words
from peers.webrtc import SpeechTrack, agent_connect, customer_connect
from tests.server import TestServer
from tests.test_server import login, new_link, wait_for


@pytest.fixture
async def server(tmp_path, engines):
    s = await TestServer(tmp_path / "data", engines).start()
    s.add_agent(language="en")
    yield s
    await s.stop()


async def collect(ws, into: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            msg = await asyncio.wait_for(ws.receive(), 0.2)
        except TimeoutError:
            continue
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        into.append(json.loads(msg.data))


async def test_subtitles_both_ways_with_timings_and_transcript(server, http, data):
    headers = await login(http, server)
    agent_ws = await http.ws_connect(f"{server.base}/api/ws")
    link = await new_link(http, server, headers, language="pt")
    customer_voice = SpeechTrack(data / "asr/multilingual/test_pt.wav", pad_seconds=1.0)
    customer, answer, _ = await customer_connect(http, link["url"], customer_voice)
    token = link["url"].rsplit("/", 1)[1]
    customer_ws = await http.ws_connect(f"{server.base}/api/join/{token}/ws?key={answer['call_key']}")
    agent, _ = await agent_connect(
        http,
        server.base,
        link["link"]["id"],
        headers,
        speech=SpeechTrack(data / "asr/speechbrain-en/spk1_snt1.wav", pad_seconds=1.0),
    )
    to_agent, to_customer, stop = [], [], asyncio.Event()
    readers = [
        asyncio.create_task(collect(agent_ws, to_agent, stop)),
        asyncio.create_task(collect(customer_ws, to_customer, stop)),
    ]

    def translated(messages, speaker):
        return [
            m
            for m in messages
            if m.get("type") == "subtitle" and m["speaker"] == speaker and m["kind"] == "translation"
        ]

    def partials() -> bool:
        return any(
            m.get("type") == "subtitle" and m["speaker"] == "customer" and m["kind"] == "partial" for m in to_agent
        )

    await wait_for(
        lambda: translated(to_agent, "customer") and translated(to_customer, "agent") and partials(), timeout=30
    )
    stop.set()
    await asyncio.gather(*readers)

    # Customer -> agent: Portuguese partials, then the final, then its English translation.
    customer_lines = [m for m in to_agent if m.get("type") == "subtitle" and m["speaker"] == "customer"]
    by_segment = {}
    for m in customer_lines:
        by_segment.setdefault(m["segment"], []).append(m["kind"])
    # Partials, then the final, then its translation. A busy scheduler may skip a line's partials (never its
    # final), so the customer's partials are waited for on whichever line shows them.
    for kinds in by_segment.values():
        if "final" in kinds:
            f = kinds.index("final")
            assert "partial" not in kinds[f:] and ("translation" not in kinds or f < kinds.index("translation"))
    assert any(kinds[0] == "partial" for kinds in by_segment.values()), by_segment
    final = next(m for m in customer_lines if m["kind"] == "final")
    assert final["language"] == "pt" and {"raposa", "velha"} <= set(normalise_words(final["text"]))
    english = translated(to_agent, "customer")[0]
    assert english["language"] == "en" and "fox" in normalise_words(english["text"])
    t = english["timing"]
    assert t["speech_end"] <= t["asr"] <= t["mt"] <= t["sent"] <= time.time()
    assert english["speech_start"] < t["speech_end"]
    assert 0.5 < english["audio_start"] < 2.0  # the words began after the 1 s of padding

    # Agent -> customer: English speech reaches the customer page in Portuguese.
    portuguese = translated(to_customer, "agent")[0]
    assert portuguese["language"] == "pt" and portuguese["source_language"] == "en"
    assert {"criança", "cão"} & set(normalise_words(portuguese["text"])), portuguese["text"]

    # Hang up; the transcript downloads as JSON and WebVTT, both speakers, in time order.
    async with http.post(f"{server.base}/api/calls/{link['link']['id']}/end", headers=headers) as r:
        assert r.status == 200
    async with http.get(f"{server.base}/api/calls/{link['link']['id']}/transcript") as r:
        transcript = await r.json()
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
    lines = transcript["lines"]
    assert {line["speaker"] for line in lines} == {"customer", "agent"}
    assert all(line["translation"] for line in lines)
    assert [line["start"] for line in lines] == sorted(line["start"] for line in lines)
    async with http.get(f"{server.base}/api/calls/{link['link']['id']}/transcript?format=vtt") as r:
        vtt = await r.text()
        assert r.headers["Content-Type"].startswith("text/vtt")
    assert vtt.startswith("WEBVTT") and "<v Customer><lang pt>" in vtt and "<v Agent><lang en>" in vtt
    assert " --> " in vtt
    # Encrypted at rest.
    # Appended as the call went, one sealed record per final and per translation (never rewritten whole).
    records = [record for _, record in server.store.transcripts.records(link["link"]["id"])]
    assert len(records) == len(lines) + sum(1 for line in lines if line["translation"])
    sealed = b"".join(records)
    assert sealed and b"raposa" not in sealed and b'"line"' not in sealed
    assert b"raposa" not in (server.settings.data_dir / "voxgate.db").read_bytes()
    for pc in (customer, agent):
        await pc.close()


async def test_a_peer_hanging_up_mid_sentence_still_gets_a_final_line(server, http, data):
    headers = await login(http, server)
    link = await new_link(http, server, headers, language="pt")
    voice = SpeechTrack(data / "asr/multilingual/test_pt.wav")
    customer, answer, _ = await customer_connect(http, link["url"], voice)
    await wait_for(lambda: voice.started is not None)
    await asyncio.sleep(max(0.0, voice.started + 2.6 - time.time()))  # "Uma raposa velha não con-"
    token = link["url"].rsplit("/", 1)[1]
    async with http.post(f"{server.base}/api/join/{token}/hangup", json={"call_key": answer["call_key"]}) as r:
        assert r.status == 200
    await wait_for(lambda: server.store.links.get(link["link"]["id"]).state == "ended")
    async with http.get(f"{server.base}/api/calls/{link['link']['id']}/transcript") as r:
        lines = (await r.json())["lines"]
    assert len(lines) == 1 and lines[0]["speaker"] == "customer"
    assert "raposa" in normalise_words(lines[0]["text"]) and "ofício" not in normalise_words(lines[0]["text"])
    assert "fox" in normalise_words(lines[0]["translation"])
    await customer.close()


async def test_a_language_pair_with_no_route_is_refused_at_link_creation(server, http):
    headers = await login(http, server)
    async with http.post(f"{server.base}/api/links", json={"language": "es"}, headers=headers) as r:
        body = await r.json()
    # Spanish speech reaches English by Whisper's speech translation, but the agent's English has no way into
    # Spanish: the agent learns it now, not in the middle of a call.
    assert r.status == 400 and "no translation route from 'en' to 'es'" in body["error"]
    async with http.post(f"{server.base}/api/links", json={"language": "xx"}, headers=headers) as r:
        assert r.status == 400 and "does not know the language 'xx'" in (await r.json())["error"]
    async with http.post(f"{server.base}/api/links", json={"language": "detect"}, headers=headers) as r:
        assert r.status == 201
    async with http.put(f"{server.base}/api/me", json={"language": "pt"}, headers=headers) as r:
        assert r.status == 200 and (await r.json())["agent"]["language"] == "pt"
    async with http.put(f"{server.base}/api/me", json={"language": "zz"}, headers=headers) as r:
        assert r.status == 400


async def test_a_detected_language_with_no_route_back_is_said_once_and_the_customer_still_reaches_the_agent(
    server, http, data
):
    """A Spanish speaker on a 'detect' link: the language comes from a final (not a partial's first guess), the
    agent reads Whisper's English, and learns once that their own English cannot reach the customer in Spanish."""
    headers = await login(http, server)
    agent_ws = await http.ws_connect(f"{server.base}/api/ws")
    link = await new_link(http, server, headers, language="detect")
    customer, _, _ = await customer_connect(
        http, link["url"], SpeechTrack(data / "asr/multilingual/test_es.wav", pad_seconds=1.0)
    )
    messages, stop = [], asyncio.Event()
    reader = asyncio.create_task(collect(agent_ws, messages, stop))

    def of(kind):
        return [m for m in messages if m.get("type") == "subtitle" and m["kind"] == kind]

    await wait_for(lambda: of("translation"), timeout=60)
    await asyncio.sleep(3.0)
    assert of("final")[0]["language"] == "es"
    detected = [m for m in messages if m.get("type") == "language"]
    assert detected and detected[0]["language"] == "es" and detected[0]["by"] == "detected", detected
    await wait_for(lambda: len(of("translation")) == len(of("final")), timeout=30)  # the sentence may come in two
    assert {"las", "son"} <= {w for f in of("final") for w in normalise_words(f["text"])}, of("final")
    english = " ".join(t["text"] for t in of("translation")).lower()
    assert {t["engine"] for t in of("translation")} == {"whisper-translate"} and "white" in english
    stop.set()
    await reader
    errors = [m for m in messages if m.get("type") == "subtitle_error"]
    assert len(errors) == 1 and errors[0]["link_id"] == link["link"]["id"] and errors[0]["speaker"] == "agent"
    assert "no translation route from 'en' to 'es'" in errors[0]["message"]
    await customer.close()
