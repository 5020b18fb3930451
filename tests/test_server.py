"""The escalation server with pure-Python WebRTC peers: links, sessions, media, snapshots, limits, bad input."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3

import aiohttp
import pytest
from PIL import Image, UnidentifiedImageError

from peers.webrtc import agent_connect, customer_connect
from tests.server import TestServer

SPEECH = "asr/multilingual/test_pt.wav"


async def login(http, server, name="alice", password="correct horse") -> dict:
    async with http.post(f"{server.base}/api/login", json={"name": name, "password": password}) as r:
        body = await r.json()
        assert r.status == 200, body
    return {"X-CSRF-Token": body["csrf"]}


async def new_link(http, server, headers, **fields) -> dict:
    async with http.post(f"{server.base}/api/links", json=fields, headers=headers) as r:
        body = await r.json()
        assert r.status == 201, body
    return body


async def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def test_sign_in_csrf_and_link_creation(server, http):
    async with http.post(f"{server.base}/api/login", json={"name": "alice", "password": "wrong"}) as r:
        assert r.status == 401 and (await r.json())["error"] == "wrong name or password"
    async with http.post(f"{server.base}/api/login", json={"name": "alice", "password": "correct horse"}) as r:
        csrf = (await r.json())["csrf"]
        cookie = r.cookies["vg_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
    async with http.post(f"{server.base}/api/links", json={}) as r:  # cookie but no CSRF token
        assert r.status == 403 and "X-CSRF-Token" in (await r.json())["error"]
    body = await new_link(
        http, server, {"X-CSRF-Token": csrf}, customer_ref="C-1", phone="+351900000000", language="pt", expires_in=300
    )
    token = body["url"].rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 random bits, URL-safe base64
    assert body["qr_svg"].lstrip().startswith(("<?xml", "<svg"))
    assert len(body["link"]["phrase"].split()) == 3
    assert body["link"]["state"] == "created" and body["link"]["language"] == "pt"
    assert body["link"]["expires"] - body["link"]["created"] == pytest.approx(300)
    # Only hashes of secrets are stored: the token and the API token appear nowhere in the database.
    raw = (server.settings.data_dir / "voxgate.db").read_bytes()
    wal = server.settings.data_dir / "voxgate.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert token.encode() not in raw and server.api_token.encode() not in raw


async def test_api_token_works_without_cookie_or_csrf(server, http):
    headers = {"Authorization": f"Bearer {server.api_token}"}
    body = await new_link(http, server, headers)
    async with http.get(f"{server.base}/api/links", headers=headers) as r:
        assert [link["id"] for link in (await r.json())["links"]] == [body["link"]["id"]]
    async with http.get(f"{server.base}/api/links", headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401


async def test_customer_session_end_to_end(server, http, data):
    headers = await login(http, server)
    ws = await http.ws_connect(f"{server.base}/api/ws")
    hello = await ws.receive_json()
    assert hello["type"] == "hello"
    body = await new_link(http, server, headers, customer_ref="claim 42")
    link_id, url = body["link"]["id"], body["url"]

    # A GET (a chat app's link preview, or the customer) does not use the link up.
    for _ in range(2):
        async with http.get(url) as r:
            assert r.status == 200 and "Start video" in await r.text()
    customer, answer, heard = await customer_connect(http, url, data / SPEECH)
    assert customer is not None, answer
    await wait_for(lambda: customer.connectionState == "connected")

    agent, seen = await agent_connect(http, server.base, link_id, headers, speech=data / "asr/multilingual/test.wav")
    await wait_for(lambda: seen.video_frames >= 20 and seen.audio_frames >= 50, timeout=15)
    assert (seen.last_video.width, seen.last_video.height) == (640, 480)
    # The agent's voice reaches the customer through the track negotiated before the agent joined.
    await wait_for(lambda: sum(1 for level in heard.audio_levels if level > 100) >= 10, timeout=10)

    states = []
    while len(states) < 3:
        ev = await asyncio.wait_for(ws.receive_json(), 5)
        if ev["type"] == "link" and ev["link"]["id"] == link_id:
            states.append(ev["link"]["state"])
    assert states == ["created", "opened", "connected"]

    # A still of the customer's camera: a JPEG at full resolution, encrypted in the store (any node can show it).
    async with http.post(f"{server.base}/api/calls/{link_id}/snapshots", headers=headers) as r:
        snap = (await r.json())["snapshot"]
        assert r.status == 201
    async with http.get(f"{server.base}{snap['url']}?download=1") as r:
        jpeg = await r.read()
        assert r.headers["Content-Type"] == "image/jpeg" and "attachment" in r.headers["Content-Disposition"]
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.size == (640, 480)
    red_row = [image.getpixel((x, 240))[0] for x in (10, 320, 630)]
    assert red_row[0] < red_row[1] < red_row[2]  # the test pattern's horizontal red ramp survived
    sealed = server.store.links.snapshot_image(snap["id"])
    assert not sealed.startswith(b"\xff\xd8") and b"JFIF" not in sealed
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(sealed))
    assert server.calls.services.vault.open(sealed, f"snapshot:{snap['id']}") == jpeg
    async with http.get(f"{server.base}/api/calls/{link_id}/snapshots") as r:
        listed = (await r.json())["snapshots"]
        assert [s["id"] for s in listed] == [snap["id"]] and listed[0]["agent"] == "alice"

    # The link is spent: a second device gets 410, as a page and as an API answer.
    async with http.get(url) as r:
        assert r.status == 410 and "has been used" in await r.text()
    second, refused, _ = await customer_connect_refused(http, url, data)
    assert refused["status"] == 410

    # The customer hangs up: the session ends, state and stills are kept.
    async with http.post(
        f"{url.replace('/j/', '/api/join/')}/hangup", data=json.dumps({"call_key": answer["call_key"]})
    ) as r:
        assert r.status == 200
    await wait_for(lambda: server.store.links.get(link_id).state == "ended")
    assert server.store.links.get(link_id).end_reason == "customer hung up"
    assert len(server.store.links.snapshots(link_id)) == 1
    actions = [row["action"] for row in server.store.audit.log(link_id)]
    assert actions == [
        "link.create",
        "link.open",
        "call.connect",
        "call.agent_join",
        "snapshot.take",
        "snapshot.view",
        "call.end",
    ]
    for pc in (customer, agent):
        await pc.close()
    await ws.close()


async def customer_connect_refused(http, url, data):
    """A second device tries the same link: the page's info call and its offer are both refused."""
    token = url.rsplit("/", 1)[1]
    base = url.split("/j/")[0]
    async with http.get(f"{base}/api/join/{token}") as r:
        assert r.status == 410
    async with http.post(f"{base}/api/join/{token}/offer", json={"type": "offer", "sdp": "v=0\r\nm=audio"}) as r:
        return None, {"status": r.status, **(await r.json())}, None


async def test_a_voice_call_link_asks_for_the_microphone_only(server, http, data):
    headers = await login(http, server)
    async with http.post(f"{server.base}/api/links", json={"media": "hologram"}, headers=headers) as r:
        assert r.status == 400 and "media" in (await r.json())["error"]
    body = await new_link(http, server, headers, customer_ref="C-7", media="audio")
    assert body["link"]["detail"] == {"media": "audio"} and body["link"]["kind"] == "video"
    token = body["url"].rsplit("/", 1)[1]
    async with http.get(f"{server.base}/api/join/{token}") as r:
        info = await r.json()
    assert info["media"] == "audio" and info["texts"]["page.audio_watched"] == "Connected. The agent can hear you."

    customer, _, heard = await customer_connect(http, body["url"], data / SPEECH, video=False)
    agent, seen = await agent_connect(http, server.base, body["link"]["id"], headers, speech=data / SPEECH)
    await wait_for(lambda: seen.audio_frames >= 50 and sum(1 for level in heard.audio_levels if level > 100) >= 10)
    assert seen.video_frames == 0
    async with http.post(f"{server.base}/api/calls/{body['link']['id']}/snapshots", headers=headers) as r:
        assert r.status == 409 and "no camera" in (await r.json())["error"]
    for pc in (customer, agent):
        await pc.close()


async def test_customer_who_vanishes_is_detected(server, http, data):
    headers = await login(http, server)
    body = await new_link(http, server, headers)
    customer, _, _ = await customer_connect(http, body["url"], data / SPEECH)
    await wait_for(lambda: customer.connectionState == "connected")
    await wait_for(lambda: server.calls.live[body["link"]["id"]].media.audio_frames > 10)
    # The network goes: media stops with no goodbye (no hang-up call, no DTLS close).
    for sender in customer.getSenders():
        sender.replaceTrack(None)
    await wait_for(lambda: server.store.links.get(body["link"]["id"]).state == "ended", timeout=10)
    assert server.store.links.get(body["link"]["id"]).end_reason == "customer media stopped"
    await customer.close()


async def test_expired_and_revoked_links(server, http, data):
    headers = await login(http, server)
    expiring = await new_link(http, server, headers, expires_in=60)
    server.now += 61  # the injected clock
    async with http.get(expiring["url"]) as r:
        assert r.status == 410 and "has expired" in await r.text()
    async with http.get(f"{server.base}/api/links/{expiring['link']['id']}", headers=headers) as r:
        assert (await r.json())["link"]["state"] == "expired"

    revoked = await new_link(http, server, headers)
    async with http.post(f"{server.base}/api/links/{revoked['link']['id']}/revoke", headers=headers) as r:
        assert r.status == 200 and (await r.json())["link"]["state"] == "revoked"
    async with http.get(revoked["url"]) as r:
        assert r.status == 410 and "cancelled" in await r.text()

    # Revoking a live session ends it.
    live = await new_link(http, server, headers)
    customer, _, _ = await customer_connect(http, live["url"], data / SPEECH)
    await wait_for(lambda: customer.connectionState == "connected")
    async with http.post(f"{server.base}/api/links/{live['link']['id']}/revoke", headers=headers) as r:
        assert r.status == 200
    await wait_for(lambda: live["link"]["id"] not in server.calls.live)
    assert server.store.links.get(live["link"]["id"]).state == "revoked"
    await wait_for(lambda: customer.connectionState in ("closed", "failed"), timeout=10)
    await customer.close()


async def test_bad_requests_get_clear_4xx(server, http, data):
    headers = await login(http, server)
    link = await new_link(http, server, headers)
    token = link["url"].rsplit("/", 1)[1]
    offer_url = f"{server.base}/api/join/{token}/offer"
    cases = [
        (http.post(offer_url, json={"type": "offer", "sdp": "hello"}), 400, "malformed SDP"),
        (
            http.post(offer_url, json={"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=garbage"}),
            400,
            "malformed SDP",
        ),
        (http.post(offer_url, json={"type": "answer", "sdp": "v=0"}), 400, "expected JSON"),
        (http.post(offer_url, data="not json", headers={"Content-Type": "application/json"}), 400, "not valid JSON"),
        (http.post(offer_url, data="x", headers={"Content-Type": "text/plain"}), 415, "application/json"),
        (http.post(offer_url, json={"type": "offer", "sdp": "v=0\r\nm=" + "a" * 40_000}), 400, "larger than"),
        (
            http.post(offer_url, data=b"{" + b" " * 100_000 + b"}", headers={"Content-Type": "application/json"}),
            413,
            "larger than 65536",
        ),
        (http.post(f"{server.base}/api/links", json={"bogus": 1}, headers=headers), 400, "unknown fields: bogus"),
        (http.post(f"{server.base}/api/links", json={"expires_in": 5}, headers=headers), 400, "between 30"),
        (http.post(f"{server.base}/api/links/nope/revoke", headers=headers), 404, "no such link"),
        (http.post(f"{server.base}/api/calls/{link['link']['id']}/snapshots", headers=headers), 409, "no live"),
    ]
    for request, status, message in cases:
        async with request as r:
            body = await r.json()
            assert r.status == status and message in body["error"], (status, body)
    # The link survived every malformed offer: it still works.
    customer, answer, _ = await customer_connect(http, link["url"], data / SPEECH)
    assert customer is not None, answer
    await customer.close()

    async with aiohttp.ClientSession() as anonymous:
        for method, path in (("GET", "/api/links"), ("POST", "/api/links"), ("GET", "/api/ws"), ("GET", "/api/me")):
            async with anonymous.request(method, f"{server.base}{path}") as r:
                assert r.status == 401 and "sign in" in (await r.json())["error"]


async def test_guessing_is_rate_limited(server, http):
    for i in range(20):
        async with http.get(f"{server.base}/j/{'x' * 40}{i:03d}") as r:
            assert r.status == 404 and "does not exist" in await r.text()
    async with http.get(f"{server.base}/j/{'y' * 43}") as r:
        assert r.status == 429


async def test_call_limits(tmp_path, http, data):
    server = await TestServer(tmp_path / "data", max_calls_per_agent=1).start()
    try:
        server.add_agent()
        headers = await login(http, server)
        first, second = await new_link(http, server, headers), await new_link(http, server, headers)
        customer, _, _ = await customer_connect(http, first["url"], data / SPEECH)
        assert customer is not None
        refused, body, _ = await customer_connect(http, second["url"], data / SPEECH)
        assert refused is None and body["status"] == 503 and "too many live calls" in body["error"]
        assert server.store.links.get(second["link"]["id"]).state == "opened"  # not spent by the refusal
        await customer.close()
    finally:
        await server.stop()


def test_agent_cli_prints_credentials_once_and_stores_hashes(tmp_path, capsys):
    from cli.main import main

    assert main(["agent", "add", "bob", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    password = out.split("password:")[1].split()[0]
    api_token = out.split("api token:")[1].split()[0]
    db = sqlite3.connect(tmp_path / "voxgate.db")
    stored = db.execute("SELECT password_hash, api_token_hash FROM agents WHERE name='bob'").fetchone()
    assert stored[0].startswith("scrypt$") and password not in stored[0] and api_token not in stored[1]
    assert main(["agent", "add", "bob", "--data-dir", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["agent", "reset", "nobody", "--data-dir", str(tmp_path)]) == 2


def test_vectorised_audio_level_matches_aiortc(data):
    """Our RFC 6465 level (swapped into aiortc's sender for speed) gives aiortc's own answers."""
    import av
    import numpy as np

    from media.audio_io import read_pcm
    from media.webrtc import AIORTC_AUDIO_LEVEL, audio_level_dbov

    speech = read_pcm(data / "asr/multilingual/test_pt.wav")
    for start in range(0, len(speech) - 960, 4000):
        chunk = speech[start : start + 960]
        for layout, pcm in (("mono", chunk), ("stereo", np.repeat(chunk, 2))):
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1).astype(np.int16), format="s16", layout=layout)
            assert audio_level_dbov(frame) == AIORTC_AUDIO_LEVEL(frame)
    silent = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
    assert audio_level_dbov(silent) == AIORTC_AUDIO_LEVEL(silent) == -127
