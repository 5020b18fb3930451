"""/metrics as Prometheus reads it: guarded by a token or a loopback port, and scraped by a real Prometheus
(Debian's) during a call with subtitles."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from peers.ports import free_port
from peers.prometheus import BINARY as PROMETHEUS
from peers.prometheus import Prometheus
from peers.webrtc import customer_connect
from tests.server import TestServer

SPEECH = "asr/multilingual/test_pt.wav"  # Portuguese: a final, then its English translation


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from an exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == name or (head.startswith(name + "{") and all(f'{k}="{v}"' in head for k, v in labels.items())):
            if not want or "{" in head:
                return float(value)
    return 0.0


async def test_metrics_need_their_token_and_count_what_happens(tmp_path, http, data):
    server = await TestServer(tmp_path / "data", metrics_token="scrape-me").start()
    try:
        token = server.add_agent()
        url = f"{server.base}/metrics"
        refused = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}, {"Authorization": "scrape-me"})
        for headers in refused:  # no token, a wrong one, an agent's, and the right one without its scheme
            async with http.get(url, headers=headers) as r:
                assert r.status == 401, headers
        async with http.post(f"{server.base}/api/login", json={"name": "alice", "password": "wrong"}) as r:
            assert r.status == 401
        async with http.post(f"{server.base}/api/links", json={}, headers={"Authorization": f"Bearer {token}"}) as r:
            link = await r.json()
        token_path = link["url"].rsplit("/", 1)[1]
        async with http.post(f"{server.base}/api/join/{token_path}/offer", json={"type": "offer", "sdp": "x"}) as r:
            assert r.status == 400
        customer, _, _ = await customer_connect(http, link["url"], data / SPEECH)
        async with http.get(url, headers={"Authorization": "Bearer scrape-me"}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
        assert metric(text, "voxgate_sign_in_failures_total", reason="wrong") == 1
        assert metric(text, "voxgate_errors_total", kind="webrtc") == 1
        assert metric(text, "voxgate_live_calls", kind="link") == 1
        assert metric(text, "voxgate_links", state="connected") == 1
        assert metric(text, "process_resident_memory_bytes") > 10e6
        assert "voxgate_event_loop_lag_seconds" in text
        await customer.close()
    finally:
        await server.stop()


async def test_without_a_token_metrics_are_only_on_their_loopback_port(tmp_path, http):
    port = free_port()
    server = await TestServer(tmp_path / "data", metrics_port=port).start()
    try:
        async with http.get(f"{server.base}/metrics") as r:
            assert r.status == 404  # not on the public port
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200 and "voxgate_live_calls" in await r.text()
    finally:
        await server.stop()


@pytest.fixture
def prometheus():
    if PROMETHEUS is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's prometheus is not installed: .ci/run installs it with apt-get")
        pytest.skip("Debian's prometheus is not installed: apt-get install -y prometheus")


async def test_a_real_prometheus_scrapes_the_subtitle_latency_of_a_call(tmp_path, http, data, engines, prometheus):
    server = await TestServer(tmp_path / "data", engines, metrics_token="scrape-me").start()
    scraper = Prometheus(tmp_path / "prometheus", server.base.removeprefix("http://"), token="scrape-me")
    try:
        await scraper.wait_up()  # scraped with its token
        token = server.add_agent(language="en")
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{server.base}/api/links", json={"language": "pt"}, headers=headers) as r:
            link = await r.json()
        customer, _, _ = await customer_connect(http, link["url"], data / SPEECH)
        translated = 'voxgate_subtitle_latency_seconds_count{kind="translation", leg="customer"}'
        deadline = time.monotonic() + 60
        while not await scraper.query(translated):
            assert time.monotonic() < deadline, scraper.log.read_text()[-2000:]
            await asyncio.sleep(0.5)
        p50 = await scraper.query(
            'histogram_quantile(0.5, sum by (le) (voxgate_stage_seconds_bucket{stage="subtitle_sent"}))'
        )
        assert p50 is not None and 0 < p50 < 20
        await customer.close()
    finally:
        scraper.stop()
        await server.stop()
