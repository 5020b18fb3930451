"""Genesys Cloud AudioHook end to end: our AudioHook client streams real recordings of a phone call to the real
server, which authenticates the request, runs the protocol, puts the call in front of its agent with subtitles and
ID&V, and sends its transcripts back to the platform.

The signature and protocol checks are also tested on their own (pure code, the protocol documentation's example).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import numpy as np
import pytest

from calls.subtitles import load_transcript
from media.audiohook import AudioHookSession, Media, State, Step, choose_media, duration, parse_duration
from media.httpsig import (
    InnerList,
    Item,
    ReplayCache,
    SignatureError,
    SignedRequest,
    Verifier,
    parse_dictionary,
    serialize_inner_list,
    sign,
)
from media.phone import PhoneMedia
from models.metrics import normalise_words
from peers.audiohook import STEREO, AudioHookClient
from peers.phone import phone_audio, silence
from store.base import Customer
from tests.server import TestServer
from tests.test_server import login, wait_for

KEY, SECRET = "vg-audiohook-key-1", b"a client secret of 32 bytes......"
UNSIGNED_KEY = "vg-audiohook-unsigned"
PT = "asr/multilingual/test_pt.wav"  # "Uma raposa velha não consegue aprender nenhum ofício."
EN = "asr/speechbrain-en/spk1_snt1.wav"  # "the child almost hurt the small dog"


async def start(tmp_path, engines=None, **settings) -> TestServer:
    keys = {KEY: SECRET, UNSIGNED_KEY: None}
    server = await TestServer(tmp_path / "data", engines, audiohook_keys=keys, **settings).start()
    server.add_agent(language="en")
    return server


@pytest.fixture
async def speech_server(tmp_path, engines):
    s = await start(tmp_path, engines)
    yield s
    await s.stop()


@pytest.fixture
async def server(tmp_path):
    """A server without speech engines: the protocol, the call and its end, without subtitles."""
    s = await start(tmp_path, media_timeout=1.5)
    yield s
    await s.stop()


def client(http, server, **options) -> AudioHookClient:
    options.setdefault("secret", SECRET)
    url = server.base.replace("http", "ws", 1) + "/audiohook"
    return AudioHookClient(http, url, api_key=options.pop("api_key", KEY), created=int(server.now), **options)


def console(server) -> list[dict]:
    """What alice's consoles receive, collected as it comes."""
    events: list[dict] = []
    queue = server.calls.hub.subscribe(server.store.agents.by_name("alice").id)

    async def read() -> None:
        while (event := await queue.get()) is not None:
            events.append(event)

    asyncio.get_running_loop().create_task(read())
    return events


def words(entity: dict) -> list[str]:
    return normalise_words(entity["alternatives"][0]["interpretations"][0]["transcript"])


def calls_of(server) -> list:
    return server.store.links.of_agent(server.store.agents.by_name("alice").id)


# -- a call, end to end -------------------------------------------------------------------------------------------


async def test_a_call_over_audiohook_gets_subtitles_and_sends_transcripts_back(speech_server, http, data):
    server = speech_server
    seen = console(server)
    # The caller speaks Portuguese after half a second; a second after, the agent answers in English and is still
    # speaking when the platform closes the stream ("the child almost hurt | the small dog").
    customer = phone_audio(data / PT, pad_seconds=0.5)
    agent_starts = len(customer) / 8000 + 1.0
    agent = silence(agent_starts) + phone_audio(data / EN)[: int(2.2 * 8000)]
    hook = await client(http, server).connect()
    opened = await hook.open(
        ani="tel:+351912000111", language="pt-BR", input_variables={"agent": "alice"}, custom_config={"x": 1}
    )
    assert opened["parameters"]["media"] == [STEREO]  # both channels, PCMU at 8 kHz
    await hook.stream(customer, agent)
    closed = await hook.close()
    assert closed is not None and closed["type"] == "closed"
    await hook.wait_closed()

    # The console saw the call come in from the caller's number, and ended.
    link = next(e["link"] for e in seen if e["type"] == "link")
    assert (link["channel"], link["phone"], link["language"]) == ("audiohook", "+351912000111", "pt")
    assert link["external_id"] == hook.conversation_id
    await wait_for(lambda: any(e["type"] == "link" and e["link"]["state"] == "ended" for e in seen))
    subtitles = [e for e in seen if e["type"] == "subtitle"]
    assert any(s["speaker"] == "customer" and s["kind"] == "translation" and "fox" in s["text"] for s in subtitles)
    assert any(s["speaker"] == "agent" and s["kind"] == "final" for s in subtitles)

    # The platform got the transcripts: the right channel and language, where the words sit in the stream.
    entities = [entity for entity, _ in hook.transcripts()]
    pt = [e for e in entities if e["channelId"] == 0 and e["alternatives"][0]["languages"] == ["pt-BR"]]
    en = [e for e in entities if e["channelId"] == 0 and e["alternatives"][0]["languages"] == ["en"]]
    assert len(pt) == 1 and {"raposa", "velha"} <= set(words(pt[0])), entities
    assert len(en) == 1 and "fox" in words(en[0])
    assert all(e["isFinal"] for e in entities)
    offset, length = parse_duration(pt[0]["offset"]), parse_duration(pt[0]["duration"])
    assert 0.5 <= offset < 1.5 and 2.5 < length < 4.5  # the padding, then the sentence
    assert (en[0]["offset"], en[0]["duration"]) == (pt[0]["offset"], pt[0]["duration"])
    answer = [e for e in entities if e["channelId"] == 1 and e["alternatives"][0]["languages"] == ["en"]]
    assert len(answer) == 1 and "child" in words(answer[0])
    assert agent_starts <= parse_duration(answer[0]["offset"]) < agent_starts + 1.0
    # Nothing lost: the words still being spoken at close went out before closed, and into the transcript.
    types = [r.type for r in hook.received]
    assert types.index("closed") == len(types) - 1 and types.count("event") == len(entities)
    record = load_transcript(server.node.calls.services.vault, server.store.transcripts, link["id"])
    lines = {line["speaker"]: line for line in record["lines"]}
    assert "child" in normalise_words(lines["agent"]["text"]) and "fox" in lines["customer"]["translation"]
    assert server.store.links.get(link["id"]).end_reason == "the platform closed the stream (end)"
    assert not server.calls.live


async def test_discarded_audio_counts_in_positions_and_the_agent_hanging_up_keeps_the_last_words(
    speech_server, http, data
):
    server = speech_server
    hook = await client(http, server, close_delay=2.0).connect()  # a platform slow to close its side
    await hook.open(ani="+44 20 7946 0000", language="en-GB", custom_config={"agent": "alice"})
    await hook.stream(silence(1.0), speed=4)
    await hook.discard(20.0)  # the platform lost 20 s of audio: the stream's clock went on
    await hook.stream(phone_audio(data / "asr/speechbrain-en/spk2_snt1.wav", pad_seconds=0.5)[:-2000], speed=2)
    # The agent hangs up on the last word: the platform is told, and still gets the words before closed.
    headers = await login(http, server)
    async with http.post(f"{server.base}/api/calls/{calls_of(server)[0].id}/end", headers=headers) as r:
        assert r.status == 200
    await hook.wait_closed()
    types = [r.type for r in hook.received]
    assert types[-3:] == ["disconnect", "event", "closed"], types
    assert hook.of_type("disconnect")[0]["parameters"] == {"reason": "completed", "info": "ended by alice"}
    (entity, _), *_ = hook.transcripts()
    assert entity["alternatives"][0]["languages"] == ["en-GB"] and "sure" in words(entity)
    assert 21.5 <= parse_duration(entity["offset"]) < 22.5


# -- identity from the calling number -------------------------------------------------------------------------


async def test_idv_starts_from_the_calling_number(server, http):
    server.settings.queues["Claims"] = "alice"
    server.store.customers.put(Customer("C-42", "Ana Silva", ("+351 912 000 111",)))
    seen = console(server)
    hook = await client(http, server).connect()
    opened = await hook.open(ani="tel:+351912000111", input_variables={"queue": "Claims"})  # the queue's agent
    assert opened["type"] == "opened"
    await wait_for(lambda: any(e["type"] == "idv" and e.get("customer_id") for e in seen))
    idv = [e for e in seen if e["type"] == "idv"][-1]
    assert (idv["customer_id"], idv["customer_name"], idv["identified_by"]) == ("C-42", "Ana Silva", "phone")
    await hook.close()


# -- who may stream -----------------------------------------------------------------------------------------------


async def test_only_configured_keys_with_good_fresh_unreplayed_signatures_get_in(server, http):
    async def refused(hook: AudioHookClient, headers: dict | None = None) -> int:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await hook.connect(headers)
        return e.value.status

    assert await refused(client(http, server, api_key="not-a-key")) == 401
    assert await refused(client(http, server, secret=b"the wrong secret")) == 401
    assert await refused(client(http, server, secret=None)) == 401  # a key with a secret must sign
    stale = client(http, server)
    stale.created = int(server.now) - 120
    assert await refused(stale) == 401
    early = client(http, server)
    early.created = int(server.now) + 120
    assert await refused(early) == 401

    first = client(http, server)
    headers = first.headers()
    await first.connect(headers)
    assert (await first.open(custom_config={"agent": "alice"}))["type"] == "opened"
    await first.close()
    assert await refused(client(http, server), headers) == 401  # the same signed request again: a replay

    unsigned = await client(http, server, api_key=UNSIGNED_KEY, secret=None).connect()
    assert (await unsigned.open(custom_config={"agent": "alice"}))["type"] == "opened"
    await unsigned.close()

    # Each refusal is audited with its reason, never the key or the signature.
    refusals = [a for a in server.store.audit.log() if a["action"] == "ingress.refused"]
    assert all(a["actor"] == "audiohook" and a["target"] is None for a in refusals)
    assert [a["detail"].split(" (session")[0] for a in refusals] == [
        "unknown API key",
        "the signature 'sig1' does not match",
        "the request is not signed (no Signature-Input and Signature headers)",
        "the signature has expired",
        "the signature was created in the future",
        "this signature's nonce was used before (a replayed request)",
    ]
    assert not any(KEY in a["detail"] or "not-a-key" in a["detail"] or "sig1=" in a["detail"] for a in refusals)


async def test_a_request_without_good_audiohook_headers_is_a_bad_request(server, http):
    hook = client(http, server)
    for headers in (
        {k: v for k, v in hook.headers().items() if k != "Audiohook-Organization-Id"},
        hook.headers() | {"Audiohook-Session-Id": "not-a-uuid"},
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await hook.connect(headers)
        assert e.value.status == 400
    assert not server.store.audit.log()  # not a refusal of credentials: nothing to audit


# -- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mistake, info",
    [
        ("not json", "text message is not JSON"),
        ("audio before open", "audio before the session was opened"),
        ("seq out of order", "seq 7 is out of order (expected 2)"),
        ("unknown message", "'dance' is not a client message"),
        ("position behind", "is behind the audio already sent"),
    ],
)
async def test_a_broken_protocol_gets_a_disconnect_and_the_call_ends(server, http, mistake, info):
    hook = await client(http, server).connect()
    opens = mistake not in ("not json", "audio before open")
    if mistake == "not json":
        await hook.send_raw("{'open': ")
    elif mistake == "audio before open":
        await hook.send_raw(silence(0.1) * 2)
    else:
        assert (await hook.open(custom_config={"agent": "alice"}))["type"] == "opened"
        await hook.stream(silence(0.5), silence(0.5), speed=10)
        if mistake == "seq out of order":
            hook.seq = 6
            await hook.ping()
        elif mistake == "unknown message":
            await hook.send("dance")
        else:
            hook.samples = 0
            await hook.ping()
    disconnect = (await hook.wait_for(lambda r: r.type == "disconnect")).message
    assert disconnect["parameters"]["reason"] == "error" and info in disconnect["parameters"]["info"]
    await hook.wait_closed()  # the client closed the session; the socket is gone
    assert hook.of_type("closed") and not server.calls.live
    assert [(c.state, c.end_reason.startswith("AudioHook: ")) for c in calls_of(server)] == [("ended", True)] * opens


async def test_an_unknown_agent_is_refused_with_a_clear_reason_and_no_record(server, http):
    hook = await client(http, server).connect()
    refused = await hook.open(ani="+15550100", custom_config={"agent": "bob"})
    assert refused["type"] == "disconnect"
    assert refused["parameters"] == {"reason": "error", "info": "no agent 'bob' on this server"}
    await hook.wait_closed()
    hook = await client(http, server).connect()
    refused = await hook.open(ani="+15550100")
    assert "names no agent" in refused["parameters"]["info"]
    await hook.wait_closed()
    assert calls_of(server) == [] and not server.calls.live
    assert [a["action"] for a in server.store.audit.log()] == ["call.refused", "call.refused"]


async def test_a_connection_probe_is_answered_and_makes_no_call(server, http):
    """Genesys probes an integration (the nil conversation id, no caller) before sending calls."""
    hook = await client(http, server).connect()
    opened = await hook.open(conversation_id="00000000-0000-0000-0000-000000000000")  # names no agent either
    assert opened["type"] == "opened" and opened["parameters"]["media"]
    await hook.stream(silence(0.5), speed=10)
    assert (await hook.close())["type"] == "closed"
    assert calls_of(server) == [] and not server.calls.live
    assert [a["action"] for a in server.store.audit.log()] == ["probe"]


# -- pauses and silence -------------------------------------------------------------------------------------------


async def test_a_paused_stream_that_pings_lives_and_a_silent_one_is_ended(server, http):
    hook = await client(http, server, ping_every=0.4).connect()
    await hook.open(ani="+15550100", custom_config={"agent": "alice"})
    await hook.stream(silence(0.5), silence(0.5))
    await hook.pause()
    await asyncio.sleep(3 * server.settings.media_timeout)  # on hold far past the media timeout, pinging
    assert len(server.calls.live) == 1 and hook.of_type("pong")
    await hook.resume()
    await hook.stream(silence(0.5), silence(0.5))
    assert len(server.calls.live) == 1
    hook.go_quiet()  # the platform vanishes: no audio, no pings, no close
    quiet = time.monotonic()
    await hook.wait_closed(timeout=10)
    assert time.monotonic() - quiet < server.settings.media_timeout + 3
    disconnect = hook.of_type("disconnect")[0]["parameters"]
    assert disconnect["reason"] == "completed" and "stopped sending" in disconnect["info"]
    assert not server.calls.live and calls_of(server)[0].state == "ended"


async def test_the_agent_ending_the_call_disconnects_the_platform(server, http):
    hook = await client(http, server).connect()
    await hook.open(ani="+15550100", custom_config={"agent": "alice"})
    await hook.stream(silence(0.3), silence(0.3))
    call = next(iter(server.calls.live.values()))
    await call.end("ended by alice")
    await hook.wait_closed()
    assert hook.of_type("disconnect")[0]["parameters"] == {"reason": "completed", "info": "ended by alice"}
    assert hook.of_type("closed")  # the platform closed its side: the close transaction still ran


# -- the protocol and the signatures, on their own ---------------------------------------------------------------


def test_the_protocol_documentations_example_signature_verifies():
    """The example request of the AudioHook documentation, with its client secret, verifies; any change does not."""
    headers = {
        "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
        "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
        "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "x-api-key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
        "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
        "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
        '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
        'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
    }
    secret = base64.b64decode("TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=")
    request = SignedRequest("/api/v1/voicebiometrics/ws", "audiohook.example.com", headers)
    verifier = Verifier(clock=lambda: 1641013210.0)
    signature = verifier.verify(request, headers["x-api-key"], secret)
    assert signature.created == 1641013200 and signature.nonce == "VGhpc0lzQVVuaXF1ZU5vbmNl"
    with pytest.raises(SignatureError, match="used before"):
        verifier.verify(request, headers["x-api-key"], secret)
    for changed in (
        SignedRequest("/api/v1/voicebiometrics/ws?x=1", "audiohook.example.com", headers),
        SignedRequest("/api/v1/voicebiometrics/ws", "evil.example.com", headers),
        SignedRequest("/api/v1/voicebiometrics/ws", "audiohook.example.com", headers | {"x-api-key": "other"}),
    ):
        with pytest.raises(SignatureError):
            Verifier(clock=lambda: 1641013210.0).verify(changed, headers["x-api-key"], secret)
    with pytest.raises(SignatureError, match="expired"):  # ten minutes on: past the accepted age
        Verifier(clock=lambda: 1641013800.0).verify(request, headers["x-api-key"], secret)
    with pytest.raises(SignatureError, match="keyid"):
        Verifier(clock=lambda: 1641013210.0).verify(request, "another key", secret)


def test_signatures_round_trip_and_structured_fields_parse_strictly():
    request = SignedRequest("/audiohook", "voxgate.example.com", {"x-api-key": "k"})
    headers = sign(request, key_id="k", secret=b"s", created=1000, components=("@request-target", "x-api-key"))
    signed = SignedRequest(
        request.target, request.authority, request.headers | {k.lower(): v for k, v in headers.items()}
    )
    verifier = Verifier(clock=lambda: 1001.0, required=("@request-target",))
    assert verifier.verify(signed, "k", b"s").expires == 1030
    with pytest.raises(SignatureError, match="does not cover"):
        Verifier(clock=lambda: 1001.0).verify(signed, "k", b"s")
    parsed = parse_dictionary('a=("x" "y");n=1;s="q\\"t";t=tok;b=:AAE=:;f=?0, b, c=2.5')
    assert parsed["a"] == InnerList(
        (Item("x"), Item("y")), (("n", 1), ("s", 'q"t'), ("t", "tok"), ("b", b"\0\1"), ("f", False))
    )
    assert parsed["b"] == Item(True) and parsed["c"] == Item(2.5)
    assert serialize_inner_list(parsed["a"]) == '("x" "y");n=1;s="q\\"t";t=tok;b=:AAE=:;f=?0'
    for bad in ('a=("x"', 'a="unterminated', "a=:not base64!:", "a=1,", "A=1", 'a=("x""y")'):
        with pytest.raises(SignatureError, match="malformed"):
            parse_dictionary(bad)


def test_the_replay_cache_forgets_expired_nonces_and_never_a_live_one():
    cache = ReplayCache(size=2)
    cache.add("n1", until=10, now=0)
    cache.add("n2", until=20, now=0)
    with pytest.raises(SignatureError, match="too many"):
        cache.add("n3", until=30, now=5)
    cache.add("n3", until=30, now=15)  # n1 expired at 10: forgotten to make room
    assert len(cache) == 2
    with pytest.raises(SignatureError, match="used before"):
        cache.add("n3", until=35, now=16)
    cache.add("n1", until=40, now=25)  # n1 may come again (its signature could not have); n2 made room


async def test_the_session_keeps_sequence_numbers_media_and_positions():
    assert (duration(3.42), duration(0), duration(12.0), parse_duration("PT.5S")) == ("PT3.42S", "PT0S", "PT12S", 0.5)
    offers = [Media("L16", 8000, ("external", "internal")), Media("PCMU", 8000, ("internal",))]
    assert choose_media(offers) == offers[1] and choose_media(offers[:1]) is None
    session_id, org = "2f9d6c2e-0d5a-4a4b-9d38-5f2f5e7a9c10", "d7934305-0972-4844-938e-9060eef73d05"
    session = AudioHookSession(session_id, org, max_fill=0.5)
    seq = 0

    def message(type_: str, position: float = 0.0, **parameters) -> str:
        nonlocal seq
        seq += 1
        return json.dumps(
            {
                "version": "2",
                "id": session_id,
                "type": type_,
                "seq": seq,
                "serverseq": session.seq,
                "position": duration(position),
                "parameters": parameters,
            }
        )

    open_ = session.receive_text(
        message(
            "open",
            organizationId=org,
            conversationId="0c0ffee0-0000-4000-8000-000000000001",
            participant={"id": "x", "ani": "sip:+351912000111@carrier.example;user=phone", "aniName": "", "dnis": ""},
            media=[STEREO],
            language="pt-BR",
            customConfig={"agent": "alice", "language": "es"},
            inputVariables={"language": "pt-PT"},
        )
    ).open
    assert open_ is not None and session.state is State.OPENING
    call = open_.phone_call()
    assert (call.caller, call.agent, call.language, call.external_id) == (
        "+351912000111",
        "alice",
        "pt-PT",
        "0c0ffee0-0000-4000-8000-000000000001",
    )
    heard: dict[str, list[np.ndarray]] = {"customer": [], "agent": []}

    async def ended(reason: str) -> None:
        pass

    sink = PhoneMedia("call", ended)
    sink.customer_listeners.append(lambda f: heard["customer"].append(f.samples[:, 0]))
    sink.agent_listeners.append(lambda f: heard["agent"].append(f.samples[:, 0]))
    opened = session.accept(sink)
    assert (opened["type"], opened["seq"], opened["clientseq"]) == ("opened", 1, 1)
    stereo = np.stack([np.full(800, 0x80, np.uint8), np.full(800, 0xFF, np.uint8)], axis=1).tobytes()
    assert session.receive_audio(stereo) == session.receive_audio(stereo)  # nothing to say
    assert [len(x) for x in heard["customer"]] == [800, 800] and heard["customer"][0].max() > 30000
    assert heard["agent"][0].max() == 0
    pong = session.receive_text(message("ping", 0.2)).send[0]
    assert (pong["type"], pong["seq"], pong["clientseq"]) == ("pong", 2, 2)
    session.receive_text(message("paused", 0.2))
    assert session.state is State.PAUSED and sink.paused
    session.receive_text(message("resumed", 10.2, start="PT0.2S", discarded="PT10S"))
    assert session.state is State.ACTIVE and not sink.paused
    assert len(heard["agent"][-1]) == 4000 and session.position == pytest.approx(10.2)  # 0.5 s fed, 9.5 s skipped
    assert session._timeline.stream_time(0.1) == pytest.approx(0.1)
    assert session._timeline.stream_time(0.8) == pytest.approx(10.3)
    assert session.pause()["type"] == "pause" and session.resume()["type"] == "resume"
    updated = session.receive_text(message("update", 10.2, language="en-US")).send[0]
    assert updated["type"] == "updated" and session.language == "en-US"
    close = session.receive_text(message("close", 10.2, reason="end"))
    assert close.close == "end" and session.state is State.CLOSING
    assert session.hang_up("late") is None and session.receive_text(message("ping")) == Step()
    assert session.closed()["type"] == "closed"

    session, seq = AudioHookSession(session_id, org), 0
    step = session.receive_text(message("open", organizationId="00000000-0000-4000-8000-000000000000"))
    assert step.end and "organizationId" in step.send[0]["parameters"]["info"]
    assert session.state is State.DISCONNECTING and session.receive_audio(b"\xff" * 320) == Step()
    close = session.receive_text(json.dumps({"type": "close", "seq": 99, "parameters": {"reason": "disconnect"}}))
    assert close.close == "disconnect" and session.closed()["clientseq"] == 99
