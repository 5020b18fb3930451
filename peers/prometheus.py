"""Debian's Prometheus beside a VoxGate server: it scrapes ``/metrics`` as production would, and is asked over
its HTTP API what it saw (tests check it sees a call; the subtitles benchmark compares its quantiles to its own)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp

from peers.ports import free_port

SUBTITLE_SENT = 'voxgate_stage_seconds_bucket{stage="subtitle_sent"}'


BINARY = shutil.which("prometheus")  # Debian's package: apt-get install -y prometheus


class Prometheus:
    """One Prometheus scraping one target every second (with ``token`` as its bearer credential), data in ``work``."""

    def __init__(self, work: Path, target: str, token: str | None = None) -> None:
        if BINARY is None:
            raise RuntimeError("Debian's prometheus is not installed: apt-get install -y prometheus")
        work.mkdir(parents=True, exist_ok=True)
        config = work / "prometheus.yml"
        auth = f", authorization: {{credentials: {token}}}" if token else ""
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            f"scrape_configs: [{{job_name: voxgate{auth}, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        self.log = work / "prometheus.log"
        self.base = f"http://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [
                BINARY,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address={self.base.removeprefix('http://')}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    async def query(self, promql: str) -> float | None:
        """The first value of an instant query; None when it has none."""
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.base}/api/v1/query", params={"query": promql}) as r:
                body = await r.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus refused {promql!r}: {body.get('error')}")
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    async def quantiles(self, series: str = SUBTITLE_SENT) -> dict:
        """p50 and p95 of a histogram over everything scraped (the server is new for each run), after one more
        scrape, so the last observations are in."""
        await asyncio.sleep(2.5)
        out = {}
        for q in (0.5, 0.95):
            value = await self.query(f"histogram_quantile({q}, sum by (le) ({series}))")
            out[f"p{round(q * 100)}_s"] = round(value, 3) if value is not None else None
        out["count"] = await self.query(f"sum({series.replace('_bucket', '_count')})")
        return out

    async def wait_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if await self.query('up{job="voxgate"}') == 1:
                    return
            except aiohttp.ClientError:
                pass  # still starting
            await asyncio.sleep(0.5)
        raise RuntimeError(f"Prometheus did not scrape the server in time: {self.log.read_text()[-1000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
