"""Structured logs, as an operator's log store reads them: a real call through the real server, every line one
JSON object naming its call, agent and stage, and no secret or voice in any of them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cli import logs
from peers.webrtc import agent_connect, customer_connect

SPEECH = "asr/multilingual/test_pt.wav"
KEYS = {"time", "level", "logger", "stage", "call", "agent", "message"}
BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{200,}")
BYTES_RUN = re.compile(r"(\\\\x[0-9a-f]{2}){100,}")  # bytes as Python shows them, escaped again by JSON


@contextmanager
def logged(fmt: str, level: int) -> Iterator[io.StringIO]:
    """What ``voxgate serve --log-format FMT`` would write, captured from the root logger for the block."""
    out = io.StringIO()
    handler, root = logs.handler(fmt, out), logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


async def wait_for(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_call_in_json_logs_names_its_call_and_agent_and_leaks_nothing(server, http, data):
    with logged("json", logging.DEBUG) as out:
        async with http.post(f"{server.base}/api/login", json={"name": "alice", "password": "correct horse"}) as r:
            assert r.status == 200
            csrf = (await r.json())["csrf"]
        session = next(c.value for c in http.cookie_jar if c.key == "vg_session")
        agent_headers = {"X-CSRF-Token": csrf}
        async with http.post(f"{server.base}/api/links", json={}, headers=agent_headers) as r:
            assert r.status == 201
            link = await r.json()
        link_id, token = link["link"]["id"], link["url"].rsplit("/", 1)[1]
        async with http.get(f"{server.base}/api/links", headers={"Authorization": f"Bearer {server.api_token}"}) as r:
            assert r.status == 200
        async with http.get(link["url"]) as r:
            assert r.status == 200
        customer, answer, _ = await customer_connect(http, link["url"], data / SPEECH)
        agent, _ = await agent_connect(http, server.base, link_id, agent_headers)
        try:
            await wait_for(lambda: server.calls.live[link_id].media.audio_frames > 25)  # half a second of voice
            async with http.post(f"{server.base}/api/calls/{link_id}/end", headers=agent_headers) as r:
                assert r.status == 200
        finally:
            await customer.close()
            await agent.close()

    text = out.getvalue()
    entries = [json.loads(line) for line in text.splitlines()]
    assert entries and all(KEYS <= e.keys() for e in entries)
    about_the_call = [e for e in entries if e["call"] == link_id]
    assert {e["agent"] for e in about_the_call} == {"alice"}
    # The request that began the call, and the WebRTC tasks it created, carry the call.
    assert {"access", "webrtc"} <= {e["stage"] for e in about_the_call}, {e["stage"] for e in about_the_call}
    assert any(e["stage"] == "access" and "/agent-offer" in e["message"] for e in about_the_call)
    for secret in (token, answer["call_key"], "correct horse", server.api_token, session, csrf):
        assert secret not in text
    # No audio or video in any line: at most a few KB (aiortc's DEBUG lines hold whole SDPs), no encoded runs.
    assert max(len(line) for line in text.splitlines()) < 8192
    assert not BASE64_RUN.search(text) and not BYTES_RUN.search(text)


async def test_text_lines_name_the_call_and_the_access_log_shows_at_info(server, http, data):
    bearer = {"Authorization": f"Bearer {server.api_token}"}
    with logged("text", logging.INFO) as out:
        async with http.post(f"{server.base}/api/links", json={}, headers=bearer) as r:
            link = await r.json()
        customer, _, _ = await customer_connect(http, link["url"], data / SPEECH)
        await customer.close()
        await wait_for(lambda: not server.calls.live)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("INFO ") and "/api/links 201" in line and "call=" not in line for line in lines)
    offer = [line for line in lines if "POST /api/join/…/offer 200" in line]
    assert offer and offer[0].endswith(f" call={link['link']['id']} agent=alice"), lines


def test_setup_writes_json_lines_that_survive_odd_messages():
    """``voxgate -v serve --log-format json`` as configured by ``main``: stderr, one object a line, whatever the
    message holds (a lone surrogate, a newline, a format string its arguments do not fit, an exception)."""
    code = """if True:
        import logging
        from calls.logcontext import about
        from cli import logs
        logs.setup(logging.INFO, "json")
        logging.getLogger("aiohttp.access").info("127.0.0.1 GET /console %d", 200)
        logging.getLogger("aioice.ice").debug("not at INFO")
        with about("L1", "zoë"):
            logging.getLogger("calls.call").warning("two\\nlines \\udcff ✓ %d", "not a number")
            try:
                1 / 0
            except ZeroDivisionError:
                logging.getLogger("media.webrtc").exception("failed")
        logging.getLogger("calls.call").info("after", extra={"call": "L2"})
        logging.getLogger("sqlite3.x").error("other")
    """
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "Logging error" not in run.stderr, run.stderr
    entries = [json.loads(line) for line in run.stderr.splitlines()]
    assert [(e["stage"], e["call"], e["agent"]) for e in entries] == [
        ("access", None, None),
        ("calls", "L1", "zoë"),
        ("media", "L1", "zoë"),
        ("calls", "L2", None),
        ("sqlite3", None, None),
    ]
    assert all(KEYS <= e.keys() and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in entries)
    assert entries[0]["message"] == "127.0.0.1 GET /console 200" and "error" not in entries[0]
    assert entries[1]["message"].startswith("two\nlines ") and "not a number" in entries[1]["message"]
    assert "ZeroDivisionError" in entries[2]["error"] and entries[2]["level"] == "ERROR"
