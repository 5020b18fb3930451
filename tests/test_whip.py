"""WHIP ingress (RFC 9725) with a real aiortc sender: a gateway streams both legs of a phone call into a Call."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from models.metrics import normalise_words
from peers.webrtc import SpeechTrack
from peers.whip import WhipRefused, bearer, publish, sendonly_offer
from store.security import token_hash
from tests.server import TestServer
from tests.test_server import login, wait_for

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "gateway-token-0123456789abcdefghijklmnop"
OTHER_TOKEN = "second-gateway-9876543210zyxwvutsrqpo"
CALLER = "+351912345678"


async def start(tmp_path: Path, engines=None, **settings) -> TestServer:
    tokens = (token_hash(TOKEN), token_hash(OTHER_TOKEN))
    server = await TestServer(tmp_path / "data", engines, whip_tokens=tokens, **settings).start()
    server.add_agent(language="en")
    return server


@pytest.fixture
async def server(tmp_path):
    """No speech engines: the protocol and its refusals."""
    s = await start(tmp_path)
    yield s
    await s.stop()


@pytest.fixture
async def speech_server(tmp_path, engines):
    s = await start(tmp_path, engines)
    yield s
    await s.stop()


@pytest.fixture
async def impatient_server(tmp_path):
    """A media watchdog that gives up after two seconds without audio."""
    s = await start(tmp_path, media_timeout=2.0)
    yield s
    await s.stop()


def voice(data: Path, name: str) -> SpeechTrack:
    track = SpeechTrack(data / name, pad_seconds=1.0)
    track.loop = False  # says it once, then stays on the line in silence
    return track


async def offer(data: Path):
    """A sender's peer connection and its offer, for requests made by hand."""
    return await sendonly_offer(voice(data, "asr/multilingual/test_pt.wav"))


def sdp_type(headers: dict) -> dict:
    return {**headers, "Content-Type": "application/sdp"}


def calls_of(server: TestServer) -> list:
    return server.store.links.of_agent(server.store.agents.by_name("alice").id)


async def collect(ws, into: list) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        into.append(json.loads(msg.data))


async def test_a_gateway_streams_both_legs_with_subtitles_then_deletes_the_session(speech_server, http, data):
    server = speech_server
    await login(http, server)
    console = await http.ws_connect(f"{server.base}/api/ws")
    seen: list[dict] = []
    reader = asyncio.create_task(collect(console, seen))
    session = await publish(
        http,
        f"{server.base}/whip",
        TOKEN,
        [voice(data, "asr/multilingual/test_pt.wav"), voice(data, "asr/speechbrain-en/spk1_snt1.wav")],
        agent="alice",
        caller=CALLER,
        language="pt-PT",
        id="gw-call-1",
    )
    assert "a=recvonly" in session.answer and "a=sendrecv" not in session.answer  # nothing goes back

    def links():
        return [m["link"] for m in seen if m.get("type") == "link"]

    def subtitles(speaker, kind):
        return [m for m in seen if m.get("type") == "subtitle" and m["speaker"] == speaker and m["kind"] == kind]

    await wait_for(lambda: subtitles("customer", "translation") and subtitles("agent", "translation"), timeout=60)
    link = links()[0]
    assert link["channel"] == "whip" and link["phone"] == CALLER and link["external_id"] == "gw-call-1"
    assert link["state"] == "connected" and link["language"] == "pt"
    assert session.url.startswith(f"{server.base}/whip/{link['id']}/")

    # The caller, in Portuguese, reaches the agent in English; the agent's own English is transcribed too.
    final = subtitles("customer", "final")[0]
    assert final["language"] == "pt" and {"raposa", "velha"} <= set(normalise_words(final["text"]))
    english = subtitles("customer", "translation")[0]
    assert english["language"] == "en" and "fox" in normalise_words(english["text"])
    agent_final = subtitles("agent", "final")[0]
    assert agent_final["language"] == "en" and {"child", "dog"} <= set(normalise_words(agent_final["text"]))
    assert subtitles("agent", "translation")[0]["language"] == "pt"

    # DELETE hangs up: the call ends, the console hears it, the transcript is kept.
    assert await session.delete(http) == 200
    record = server.store.links.get(link["id"])
    assert record.state == "ended" and record.end_reason == "the WHIP sender ended the session"
    await wait_for(lambda: links()[-1]["state"] == "ended")
    async with http.get(f"{server.base}/api/calls/{link['id']}/transcript") as r:
        assert r.status == 200
        lines = (await r.json())["lines"]
    assert {line["speaker"] for line in lines} == {"customer", "agent"}
    assert "fox" in normalise_words(next(line["translation"] for line in lines if line["speaker"] == "customer"))
    async with http.delete(session.url, headers=bearer(TOKEN)) as r:  # the session is gone with its call
        assert r.status == 404
    await console.close()
    await reader


async def test_a_sender_needs_a_known_bearer_token_and_refusals_are_audited(server, http, data):
    pc, sdp = await offer(data)
    for headers in ({}, bearer("not-a-token"), {"Authorization": f"Basic {TOKEN}"}):
        async with http.post(f"{server.base}/whip?agent=alice", data=sdp, headers=sdp_type(headers)) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            assert "bearer token" in (await r.json())["error"]
    with pytest.raises(WhipRefused) as refusal:  # the client sees it too, and closes its peer connection
        await publish(http, f"{server.base}/whip", OTHER_TOKEN[:-1], [voice(data, "asr/multilingual/test_pt.wav")])
    assert refusal.value.status == 401
    refused = [row for row in server.store.audit.log() if row["action"] == "ingress.refused"]
    assert [row["actor"] for row in refused] == ["whip"] * 4
    assert ["unknown" in row["detail"] for row in refused] == [False, True, False, True]
    assert not any(secret in row["detail"] for row in refused for secret in ("not-a-token", TOKEN, OTHER_TOKEN[:-1]))
    assert calls_of(server) == []
    await pc.close()


async def test_bad_offers_are_refused_before_any_call_is_made(server, http, data):
    pc, sdp = await offer(data)
    url = f"{server.base}/whip?agent=alice&caller={CALLER}"
    async with http.post(url, json={"type": "offer", "sdp": sdp}, headers=bearer(TOKEN)) as r:
        assert r.status == 415 and "application/sdp" in (await r.json())["error"]
    broken = sdp.replace("a=fingerprint:sha-256", "a=fingerprint:sha-256 nonsense").replace("m=audio 9", "m=audio x")
    for body, message in (
        ("hello", "malformed SDP offer"),
        (broken, "malformed SDP offer"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "no audio"),
        (b"v=0\r\nm=audio \xff\xfe", "not UTF-8"),
        ("v=0\r\nm=audio " + "x" * 40_000, "larger than"),
    ):
        async with http.post(url, data=body, headers=sdp_type(bearer(TOKEN))) as r:
            assert r.status == 400 and message in (await r.json())["error"], body[:40]
    async with http.post(url.replace("alice", "bob"), data=sdp, headers=sdp_type(bearer(TOKEN))) as r:
        assert r.status == 404 and "no agent 'bob'" in (await r.json())["error"]
    async with http.post(f"{server.base}/whip", data=sdp, headers=sdp_type(bearer(TOKEN))) as r:
        assert r.status == 400 and "names no agent" in (await r.json())["error"]
    assert calls_of(server) == [] and not server.calls.live
    await pc.close()


async def test_a_session_answers_only_its_own_sender(server, http, data):
    session = await publish(
        http, f"{server.base}/whip", TOKEN, [voice(data, "asr/multilingual/test_pt.wav")], agent="alice"
    )
    (call_id,) = server.calls.live
    async with http.delete(session.url, headers=bearer("not-a-token")) as r:
        assert r.status == 401
    async with http.delete(session.url, headers=bearer(OTHER_TOKEN)) as r:  # another gateway's token: not its session
        assert r.status == 404
    for guess in ("guessed", "%C3%A9t%C3%A9"):
        async with http.delete(session.url.rsplit("/", 1)[0] + "/" + guess, headers=bearer(TOKEN)) as r:
            assert r.status == 404
    async with http.delete(f"{server.base}/whip/000000000000/nothing", headers=bearer(TOKEN)) as r:
        assert r.status == 404 and "no such WHIP session" in (await r.json())["error"]
    assert call_id in server.calls.live and server.store.links.get(call_id).state == "connected"

    # No trickle ICE, no ICE restart: the answer held every candidate, so PATCH is not allowed here.
    frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
    headers = {**bearer(TOKEN), "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"}
    async with http.patch(session.url, data=frag, headers=headers) as r:
        assert r.status == 405 and "DELETE" in r.headers["Allow"] and "PATCH" not in r.headers["Allow"]
    async with http.get(session.url, headers=bearer(TOKEN)) as r:
        assert r.status == 204
    assert call_id in server.calls.live

    assert await session.delete(http) == 200
    assert server.store.links.get(call_id).end_reason == "the WHIP sender ended the session"
    async with http.get(session.url, headers=bearer(TOKEN)) as r:
        assert r.status == 404


async def test_options_answers_a_browser_preflight(server, http):
    preflight = {"Origin": "https://softphone.example", "Access-Control-Request-Method": "POST"}
    async with http.options(f"{server.base}/whip", headers=preflight) as r:
        assert r.status == 200 and r.headers["Accept-Post"] == "application/sdp"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert {"authorization", "content-type"} <= {
            h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")
        }
    async with http.options(f"{server.base}/whip/abc/def", headers=preflight) as r:
        assert r.status == 200 and "DELETE" in r.headers["Access-Control-Allow-Methods"]
    async with http.post(f"{server.base}/whip", headers={"Origin": "https://softphone.example"}) as r:
        # A browser can read the refusal, and on success the Location of its session.
        assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Location" in r.headers["Access-Control-Expose-Headers"]


async def test_a_sender_that_closes_without_delete_ends_the_call(server, http, data):
    session = await publish(
        http, f"{server.base}/whip", TOKEN, [voice(data, "asr/multilingual/test_pt.wav")], agent="alice"
    )
    (call_id,) = server.calls.live
    await wait_for(lambda: server.calls.live[call_id].media.audio_frames > 0)
    await session.pc.close()  # no DELETE, but DTLS says goodbye
    await wait_for(lambda: server.store.links.get(call_id).state == "ended")
    assert server.store.links.get(call_id).end_reason == "customer connection closed"


SENDER = """
import asyncio, sys
from pathlib import Path
import aiohttp
from peers.webrtc import SpeechTrack
from peers.whip import publish

async def main(endpoint, token, wav):
    async with aiohttp.ClientSession() as http:
        session = await publish(http, endpoint, token, [SpeechTrack(Path(wav))], agent="alice")
        print(session.url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_sender_that_vanishes_is_ended_by_the_media_watchdog(impatient_server, data):
    """A gateway killed mid-call sends nothing more, not even a DTLS close: the media watchdog hangs up."""
    server = impatient_server
    sender = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SENDER,
        f"{server.base}/whip",
        TOKEN,
        str(data / "asr/multilingual/test_pt.wav"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        url = (await asyncio.wait_for(sender.stdout.readline(), 30)).decode().strip()
        call_id = url.split("/")[-2]
        await wait_for(lambda: server.calls.live[call_id].media.audio_frames > 25)  # half a second heard
    finally:
        sender.kill()
        await sender.wait()
    await wait_for(lambda: server.store.links.get(call_id).state == "ended", timeout=10)
    assert server.store.links.get(call_id).end_reason == "customer media stopped"


async def test_a_whip_calls_logs_name_its_call_and_never_its_session_secret(speech_server, http, data):
    """Its media's lines carry the call and agent; its session URL (whose last part is a secret) is redacted."""
    import logging

    from tests.test_logs import logged

    with logged("json", logging.INFO) as out:
        session = await publish(
            http, f"{speech_server.base}/whip", TOKEN, [voice(data, "asr/multilingual/test_pt.wav")], agent="alice"
        )
        call_id = session.url.split("/whip/")[1].split("/")[0]
        await wait_for(lambda: "ICE completed" in out.getvalue(), timeout=20)
        assert await session.delete(http) == 200
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    # The sender is in this process too: its own ICE lines are about no call; the server's all name this one.
    ice = [line for line in lines if line["stage"] == "webrtc" and line["call"] is not None]
    assert ice and {(line["call"], line["agent"]) for line in ice} == {(call_id, "alice")}
    secret = session.url.rsplit("/", 1)[1]
    assert secret not in out.getvalue() and f"/whip/{call_id}/…" in out.getvalue()  # the session's secret redacted
