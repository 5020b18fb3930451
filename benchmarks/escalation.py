"""Video escalation: time from the customer's page load to media, and server CPU per live session.

    python -m benchmarks.escalation [--sessions 1,2,4] [--seconds 15] [--out results/escalation.json]

Starts ``voxgate serve`` as its own process, opens each link in Debian's Chromium
(fake camera 640x480 and a microphone playing real speech), attaches an agent
to every session (an aiortc peer receiving video and audio and sending speech
back, as the console does), then samples the server's CPU and memory from
/proc. Writes JSON and a PNG beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from peers.ports import free_port
from peers.servers import wait_ready
from peers.webrtc import agent_connect

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


async def run_sessions(base: str, token: str, pid: int, n: int, seconds: float, browser) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        links = []
        for _ in range(n):
            async with http.post(f"{base}/api/links", json={}, headers=headers) as r:
                links.append(await r.json())
        pages, connect_s, first_frame_s, agents = [], [], [], []
        for link in links:
            page = await (await browser.new_context(bypass_csp=True)).new_page()
            t0 = time.monotonic()
            await page.goto(link["url"])
            await page.check("#consent")
            await page.click("#start")
            await page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('Connected')", timeout=20000
            )
            connect_s.append(time.monotonic() - t0)
            agent, seen = await agent_connect(
                http, base, link["link"]["id"], headers, speech=DATA / "asr/multilingual/test.wav"
            )
            while seen.video_frames == 0:
                await asyncio.sleep(0.01)
            first_frame_s.append(time.monotonic() - t0)
            pages.append(page)
            agents.append((agent, seen))
        await asyncio.sleep(3)  # let encoders settle
        c0, t0, frames0 = cpu_seconds(pid), time.monotonic(), sum(s.video_frames for _, s in agents)
        await asyncio.sleep(seconds)
        cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
        fps = (sum(s.video_frames for _, s in agents) - frames0) / (time.monotonic() - t0) / n
        rss = rss_mb(pid)
        for agent, seen in agents:
            seen.stop()
            await agent.close()
        for page in pages:
            await page.context.close()
        await asyncio.sleep(2)
    return {
        "sessions": n,
        "page_load_to_connected_s": [round(x, 3) for x in connect_s],
        "page_load_to_first_agent_frame_s": [round(x, 3) for x in first_frame_s],
        "server_cpu_percent_of_one_core": round(cpu, 1),
        "server_cpu_percent_per_session": round(cpu / n, 1),
        "agent_video_fps_per_session": round(fps, 1),
        "server_rss_mb": round(rss, 1),
    }


async def main_async(args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright

    from peers.browser import CHROMIUM, chromium_args

    work = Path(tempfile.mkdtemp(prefix="voxgate-bench-"))
    cli = [sys.executable, "-m", "cli"]
    out = subprocess.run(
        cli + ["agent", "add", "bench", "--data-dir", str(work)], capture_output=True, text=True, check=True
    ).stdout
    token = out.split("api token:")[1].split()[0]
    port = free_port()
    server = subprocess.Popen(
        cli
        + [
            "serve",
            "--data-dir",
            str(work),
            "--port",
            str(port),
            "--max-calls-per-agent",
            "32",
            "--max-calls",
            "32",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base)
        runs = []
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, args=chromium_args(DATA / "asr/multilingual/test_pt.wav")
            )
            idle0 = cpu_seconds(server.pid)
            await asyncio.sleep(3)
            idle = (cpu_seconds(server.pid) - idle0) / 3 * 100
            for n in args.sessions:
                run = await run_sessions(base, token, server.pid, n, args.seconds, browser)
                print(json.dumps(run), flush=True)
                runs.append(run)
            await browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return {
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "server_idle_cpu_percent": round(idle, 1),
        "runs": runs,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    n = [r["sessions"] for r in runs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(n, [r["server_cpu_percent_of_one_core"] for r in runs], "o-", label="server total")
    a.plot(n, [r["server_cpu_percent_per_session"] for r in runs], "s--", label="per session")
    a.set_xlabel("live video sessions (customer + agent)")
    a.set_ylabel("% of one core")
    a.set_title("Server CPU")
    a.legend()
    for key, label in (
        ("page_load_to_connected_s", "connected"),
        ("page_load_to_first_agent_frame_s", "first frame at agent"),
    ):
        a_vals = [np.median(r[key]) for r in runs]
        b.plot(n, a_vals, "o-", label=label)
    b.set_xlabel("live video sessions")
    b.set_ylabel("seconds from customer page load (median)")
    b.set_title("Time to media (includes consent click)")
    b.legend()
    fig.suptitle(f"VoxGate escalation on {result['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--out", type=Path, default=Path("results/escalation.json"))
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
