"""Load and abuse (issue 11): how one ``voxgate serve`` holds up under many clients and a sign-in flood.

    python -m benchmarks.load [--quick] [--out DIR] [--port N]

Starts ``voxgate serve --no-subtitles`` (no speech engines: this measures the web server, not the models) on a
temporary data directory with three agents made by ``voxgate agent add`` (one per phase, so one phase's links
do not swell the next one's messages), and drives it over HTTP from this process:

1. link creations: N clients POST /api/links (Bearer token) back to back for a fixed time: rate, p50/p95;
2. console WebSockets (/api/ws) opened in steps until a step fails: sockets held, the server's RSS at each
   step, and the time from a new link's POST until its ``link`` event has reached every socket;
3. a sign-in burst: M concurrent POST /api/login with a wrong password from 127.0.0.1 (from a process of its
   own, as an attacker's machine would be) while another client
   (127.0.0.2, a new connection each time, as a customer opening a link would) fetches a page every 20 ms:
   page latency before and during the burst, the burst's duration, and how many passwords were checked (401)
   against throttled (429). Issue 11's target: at most 20 checked, pages p95 within 0.5 s;
4. the server's RSS (VmRSS) at idle, after each phase, and at its peak (sampled every 0.25 s).

Client and server share the machine: ``client_lag_max_s`` says how late this process's own page ticker ran.
The open-file limit is raised to its hard limit first, so the server, started after, inherits it. Writes
``load.json`` (``load-quick.json`` with ``--quick``) and a PNG beside it in ``--out`` (default
``benchmarks/results/<date>/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import aiohttp
import numpy as np

from peers.ports import free_port
from peers.servers import wait_ready

BURST_FROM, PAGES_FROM = "127.0.0.1", "127.0.0.2"  # the attacker's address, and a customer's
MORE_ATTACKERS = ("127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")  # later bursts: a fresh address each
TARGET_CHECKED, TARGET_PAGE_P95_S = 20, 0.5
WRONG_PASSWORD = "not-the-password"
AGENTS = ("links", "console", "pages")  # one per phase


@dataclass(frozen=True)
class Settings:
    link_clients: int = 16
    link_seconds: float = 10.0
    socket_steps: tuple[int, ...] = (100, 500, 1000, 2000)
    socket_parallel: int = 50  # handshakes in flight at once while opening a step
    burst: int = 1000
    page_every_s: float = 0.02
    around_burst_s: float = 2.0  # pages fetched before the burst (their baseline) and after it
    burst_rounds: int = 3  # bursts, each from a new address: pages sampled during all of them, for a p95 to mean much


QUICK = Settings(link_clients=4, link_seconds=2.0, socket_steps=(20, 50), burst=100, around_burst_s=0.5, burst_rounds=1)


# -- measuring -------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def spread(values: list[float]) -> dict:
    return {"n": len(values), "p50_s": pct(values, 50), "p95_s": pct(values, 95), "max_s": pct(values, 100)}


def rss_mb(pid: int) -> float | None:
    """The server's resident memory, or None once it is gone."""
    try:
        found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    except FileNotFoundError:
        return None
    return round(int(found.group(1)) / 1024, 1) if found else None


class Memory:
    """The server's RSS sampled in the background (for the peak and the timeline), plus a reading per phase."""

    def __init__(self, pid: int) -> None:
        self.pid, self.t0 = pid, time.perf_counter()
        self.samples: list[tuple[float, float]] = []
        self.marks: list[tuple[str, float, float]] = []

    def read(self) -> float:
        mb = rss_mb(self.pid) or 0.0
        self.samples.append((round(time.perf_counter() - self.t0, 3), mb))
        return mb

    def mark(self, name: str) -> float:
        mb = self.read()
        self.marks.append((name, self.samples[-1][0], mb))
        return mb

    async def sample(self, every: float = 0.25) -> None:
        while True:
            self.read()
            await asyncio.sleep(every)

    def summary(self) -> dict:
        return {
            "marks_mb": {name: mb for name, _, mb in self.marks},
            "peak_mb": max((mb for _, mb in self.samples), default=None),
            "timeline": self.samples,
            "mark_times_s": {name: t for name, t, _ in self.marks},
        }


async def request(http: aiohttp.ClientSession, method: str, url: str, **kwargs) -> tuple[str, float]:
    """(HTTP status, or the error's class name; seconds taken), the body read: a failure is a figure, not a crash."""
    t = time.perf_counter()
    try:
        async with http.request(method, url, **kwargs) as r:
            await r.read()
            return str(r.status), time.perf_counter() - t
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return type(e).__name__, time.perf_counter() - t


# -- the server ------------------------------------------------------------------------------------------------


@dataclass
class Server:
    """``voxgate serve --no-subtitles`` in its own process, with an agent (and its API token) per phase."""

    data_dir: Path
    port: int
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def add_agents(self) -> None:
        """``voxgate agent add`` prints the API token once: keep it."""
        for name in AGENTS:
            done = subprocess.run(
                [sys.executable, "-m", "cli", "agent", "add", name, "--data-dir", str(self.data_dir)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"voxgate agent add {name} failed:\n{done.stderr[-2000:]}")
            self.tokens[name] = done.stdout.split("api token:")[1].split()[0]

    async def start(self) -> None:
        self.add_agents()
        where = ["--data-dir", str(self.data_dir), "--port", str(self.port), "--public-url", self.base]
        log = (self.data_dir / "server.log").open("w")
        args = [sys.executable, "-m", "cli", "serve", "--no-subtitles", *where]
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        await wait_ready(self.base, self.process, self.data_dir / "server.log")

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- 1. link creations -----------------------------------------------------------------------------------------


async def link_rate(server: Server, clients: int, seconds: float) -> dict:
    """Links per second from clients that each post the next as soon as the last is answered (closed loop)."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    url, headers = f"{server.base}/api/links", bearer(server.tokens["links"])

    async def client(http: aiohttp.ClientSession, deadline: float) -> None:
        while time.perf_counter() < deadline:
            status, took = await request(http, "POST", url, json={}, headers=headers)
            statuses[status] += 1
            if status == "201":
                latencies.append(took)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http, start + seconds) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "seconds": round(elapsed, 3),
        "created": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "latency": spread(latencies),
        "statuses": dict(statuses),
    }


# -- 2. console WebSockets -------------------------------------------------------------------------------------


@dataclass
class Consoles:
    """Console WebSockets held open; a task per socket reads it and stamps the arrival of every link event."""

    http: aiohttp.ClientSession
    url: str
    headers: dict[str, str]
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)
    readers: list[asyncio.Task] = field(default_factory=list)
    arrivals: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)

    def held(self) -> int:
        """Sockets still open (a reader ends when its socket closes)."""
        return sum(not task.done() for task in self.readers)

    async def open(self, n: int, parallel: int) -> int:
        """Open ``n`` more, ``parallel`` handshakes at a time; how many failed."""
        gate = asyncio.Semaphore(parallel)

        async def one() -> bool:
            async with gate:
                return await self.open_one()

        return sum(not ok for ok in await asyncio.gather(*(one() for _ in range(n))))

    async def open_one(self) -> bool:
        """Connected and greeted: the console's first message is always ``hello``."""
        try:
            ws = await asyncio.wait_for(self.http.ws_connect(self.url, headers=self.headers), 60)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.errors[type(e).__name__] += 1
            return False
        try:
            first = await asyncio.wait_for(ws.receive(), 30)
            if first.type != aiohttp.WSMsgType.TEXT or json.loads(first.data).get("type") != "hello":
                raise ValueError(f"first message {first.type.name}, not hello")
        except (TimeoutError, ValueError) as e:
            self.errors[type(e).__name__] += 1
            await ws.close()
            return False
        self.sockets.append(ws)
        self.readers.append(asyncio.create_task(self.read(ws)))
        return True

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and '"link"' in msg.data:
                event = json.loads(msg.data)
                if event.get("type") == "link":
                    self.arrivals[event["link"]["id"]].append(time.perf_counter())

    async def close(self, parallel: int) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one(ws: aiohttp.ClientWebSocketResponse) -> None:
            async with gate:
                await ws.close()

        await asyncio.gather(*(one(ws) for ws in self.sockets), return_exceptions=True)
        await asyncio.gather(*self.readers, return_exceptions=True)


async def fan_out(consoles: Consoles, links_url: str, timeout: float = 30.0) -> dict:
    """From the POST that creates a link until every held socket has its ``link`` event (or ``timeout``)."""
    held, start = consoles.held(), time.perf_counter()
    async with consoles.http.post(links_url, json={}, headers=consoles.headers) as r:
        link_id = (await r.json())["link"]["id"]
    arrived = consoles.arrivals[link_id]
    while len(arrived) < held and time.perf_counter() - start < timeout:
        await asyncio.sleep(0.005)
    return {"held": held, "reached": len(arrived), **spread([t - start for t in arrived])}


async def console_sockets(server: Server, s: Settings, memory: Memory) -> dict:
    """Sockets held and memory at each step; stops after the first step in which a socket failed to open."""
    headers = bearer(server.tokens["console"])
    rss_before = memory.read()
    steps: list[dict] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        consoles = Consoles(http, f"{server.base}/api/ws", headers)
        try:
            for target in s.socket_steps:
                start = time.perf_counter()
                failed = await consoles.open(target - len(consoles.sockets), s.socket_parallel)
                opened_s = time.perf_counter() - start
                await asyncio.sleep(1.0)  # let the server settle before reading its memory
                rss = memory.mark(f"{target} sockets")
                event = await fan_out(consoles, f"{server.base}/api/links")
                steps.append(
                    {"target": target, "held": consoles.held(), "failed": failed, "open_s": round(opened_s, 2)}
                    | {"rss_mb": rss, "link_event": event}
                )
                if failed:
                    break
        finally:
            await consoles.close(s.socket_parallel)
    held = max((step["held"] for step in steps), default=0)
    grown = steps[-1]["rss_mb"] - rss_before if steps else 0.0
    return {
        "rss_before_mb": rss_before,
        "held_max": held,
        "rss_per_socket_kb": round(grown * 1024 / held, 1) if held else None,
        "steps": steps,
        "errors": dict(consoles.errors),
    }


# -- 3. pages during a sign-in burst ---------------------------------------------------------------------------


def connector_from(address: str, **kwargs) -> aiohttp.TCPConnector:
    """Connections from a given loopback address (Linux routes all of 127/8 to lo): the server tells the
    attacker and the customer apart by address, as it would on a network."""
    return aiohttp.TCPConnector(local_addr=(address, 0), **kwargs)


@dataclass
class Pages:
    """A customer's client fetching one page every ``every`` seconds whatever the last one is doing (open loop),
    so a slow server shows as latency and not as fewer samples."""

    http: aiohttp.ClientSession
    urls: dict[str, str]
    every: float
    t0: float
    samples: list[dict] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        tasks: list[asyncio.Task] = []
        kinds, due = list(self.urls), time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            self.lags.append(now - due)
            tasks.append(asyncio.create_task(self.fetch(kinds[len(tasks) % len(kinds)])))
            due = max(due + self.every, now)  # late: carry on from now, no catch-up burst of our own
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await asyncio.gather(*tasks)

    async def fetch(self, kind: str) -> None:
        sent = time.perf_counter() - self.t0
        status, took = await request(self.http, "GET", self.urls[kind])
        self.samples.append({"sent_s": round(sent, 4), "page": kind, "status": status, "latency_s": round(took, 4)})


async def login_burst(base: str, name: str, n: int, address: str) -> tuple[Counter[str], list[float]]:
    """``n`` wrong sign-ins at once from one address, each on its own connection; statuses and latencies."""
    body = {"name": name, "password": WRONG_PASSWORD}
    connector = connector_from(address, limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:
        results = await asyncio.gather(*(request(http, "POST", f"{base}/api/login", json=body) for _ in range(n)))
    return Counter(status for status, _ in results), [took for _, took in results]


def attacker(base: str, name: str, n: int, address: str) -> tuple[Counter[str], list[float], float, float]:
    """The burst from a process of its own, as an attacker is another machine: the customer's page client then
    measures the server, not a client loop busy with 1,000 connections. Returns wall-clock start and end too."""
    start = time.time()
    statuses, latencies = asyncio.run(login_burst(base, name, n, address))
    return statuses, latencies, start, time.time()


async def sign_in_burst(server: Server, s: Settings, address: str) -> dict:
    """Page latency for a customer while one address floods the sign-in; what the throttle let through."""
    headers = bearer(server.tokens["pages"])
    async with aiohttp.ClientSession() as http, http.post(f"{server.base}/api/links", json={}, headers=headers) as r:
        link_url = (await r.json())["url"]
    urls = {
        "/console": f"{server.base}/console",
        "/static/customer.js": f"{server.base}/static/customer.js",
        "/j/<token>": f"{server.base}/j/{link_url.rstrip('/').rsplit('/', 1)[-1]}",
    }
    connector = connector_from(PAGES_FROM, force_close=True)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as other_machine:
        other_machine.submit(time.sleep, 0).result()  # the attacker's process is up before the clock starts
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
            wall0, t0 = time.time(), time.perf_counter()
            pages, stop = Pages(http, urls, s.page_every_s, t0), asyncio.Event()
            ticker = asyncio.create_task(pages.run(stop))
            await asyncio.sleep(s.around_burst_s)
            loop = asyncio.get_running_loop()
            burst = loop.run_in_executor(other_machine, attacker, server.base, "pages", s.burst, address)
            statuses, login_latencies, started, ended = await burst
            burst_start, burst_end = started - wall0, ended - wall0
            await asyncio.sleep(s.around_burst_s)
            stop.set()
            await ticker
    return burst_summary(pages, statuses, login_latencies, burst_start, burst_end) | {
        "burst": s.burst,
        "from": address,
    }


def during_latencies(burst: dict) -> list[float]:
    start, end = burst["burst_start_s"], burst["burst_start_s"] + burst["burst_duration_s"]
    return [x["latency_s"] for x in burst["page_samples"] if start <= x["sent_s"] <= end]


def burst_summary(pages: Pages, statuses: Counter[str], login_latencies: list[float], start: float, end: float) -> dict:
    during = [x for x in pages.samples if start <= x["sent_s"] <= end]
    before = [x for x in pages.samples if x["sent_s"] < start]
    latency = spread([x["latency_s"] for x in during])
    checked, throttled = statuses.get("401", 0), statuses.get("429", 0)
    return {
        "burst_start_s": round(start, 3),
        "burst_duration_s": round(end - start, 3),
        "checked_401": checked,
        "throttled_429": throttled,
        "login_statuses": dict(statuses),
        "login_latency": spread(login_latencies),
        "pages_before": spread([x["latency_s"] for x in before]),
        "pages_during": latency,
        "pages_during_by_page": {
            kind: spread([x["latency_s"] for x in during if x["page"] == kind]) for kind in pages.urls
        },
        "page_failures": sum(x["status"] != "200" for x in pages.samples),
        "client_lag_max_s": round(max(pages.lags, default=0.0), 4),
        "target_checked_met": checked <= TARGET_CHECKED,
        "target_pages_met": latency["p95_s"] is not None and latency["p95_s"] <= TARGET_PAGE_P95_S,
        "page_samples": pages.samples,
    }


# -- the run ---------------------------------------------------------------------------------------------------


def raise_file_limit() -> int:
    """Thousands of sockets need thousands of descriptors, here and in the server (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    except (ValueError, OSError):
        pass  # keep the soft limit; the socket steps are cut to it
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine() -> dict:
    found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return {
        "cpus": os.cpu_count(),
        "cpu_model": found.group(1).strip() if found else platform.processor(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }


async def run(s: Settings, port: int, files: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="voxgate-load-") as tmp:
        server, sampler = Server(Path(tmp), port), None
        try:
            await server.start()
            memory = Memory(server.pid)
            sampler = asyncio.create_task(memory.sample())
            await asyncio.sleep(1.0)
            memory.mark("idle")
            links = await link_rate(server, s.link_clients, s.link_seconds)
            memory.mark("after links")
            sockets = await console_sockets(server, s, memory)
            memory.mark("after sockets")
            bursts = [await sign_in_burst(server, s, a) for a in (BURST_FROM, *MORE_ATTACKERS)[: s.burst_rounds]]
            memory.mark("after burst")
        except BaseException:
            print(f"server log (tail):\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            if sampler is not None:
                sampler.cancel()
            server.stop()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "settings": asdict(s) | {"open_file_limit": files, "port": port, "server_args": ["--no-subtitles"]},
        "links": links,
        "sockets": sockets,
        "sign_in_burst": bursts[0],
        "later_bursts": bursts[1:],
        "pages_during_every_burst": spread([x for b in bursts for x in during_latencies(b)]),
        "rss": memory.summary(),
    }


def summary(r: dict) -> str:
    links, sockets, burst, rss = r["links"], r["sockets"], r["sign_in_burst"], r["rss"]
    every = r["pages_during_every_burst"]
    lines = [
        f"links: {links['per_second']}/s from {links['clients']} clients, p50 {ms(links['latency']['p50_s'])} "
        f"p95 {ms(links['latency']['p95_s'])}, statuses {links['statuses']}",
        f"sockets: {sockets['held_max']} held, {sockets['rss_per_socket_kb']} kB of RSS each, "
        f"errors {sockets['errors']}",
    ]
    for step in sockets["steps"]:
        e = step["link_event"]
        lines.append(
            f"  {step['held']:>5} held ({step['failed']} failed), RSS {step['rss_mb']} MB; link event reached "
            f"{e['reached']}/{e['held']}: p50 {ms(e['p50_s'])} p95 {ms(e['p95_s'])} max {ms(e['max_s'])}"
        )
    pages = burst["pages_during"]
    lines += [
        f"sign-in burst: {burst['burst']} wrong passwords in {burst['burst_duration_s']} s: "
        f"{burst['checked_401']} checked (401), {burst['throttled_429']} throttled (429) [target <= {TARGET_CHECKED}]",
        f"  pages during it ({pages['n']}): p50 {ms(pages['p50_s'])} p95 {ms(pages['p95_s'])} max {ms(pages['max_s'])} "
        f"[target p95 <= {ms(TARGET_PAGE_P95_S)}]; before it p50 {ms(burst['pages_before']['p50_s'])}; "
        f"failures {burst['page_failures']}; client lag max {ms(burst['client_lag_max_s'])}",
        *(
            f"  then from {b['from']}: {b['checked_401']} checked, pages p95 {ms(b['pages_during']['p95_s'])}"
            for b in r["later_bursts"]
        ),
        f"  pages during every burst ({every['n']}): p50 {ms(every['p50_s'])} p95 {ms(every['p95_s'])} "
        f"max {ms(every['max_s'])}",
        f"RSS: {', '.join(f'{k} {v} MB' for k, v in rss['marks_mb'].items() if 'sockets' not in k or 'after' in k)}"
        f", peak {rss['peak_mb']} MB",
    ]
    return "\n".join(lines)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(18, 5))
    plot_pages(a, r["sign_in_burst"])
    plot_sockets(b, r["sockets"], r["rss"]["marks_mb"].get("idle"))
    plot_memory(c, r["rss"])
    m = r["machine"]
    fig.suptitle(f"VoxGate load and abuse (issue 11), {m['cpu_model']}, {m['cpus']} cores, {r['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pages(ax, burst: dict) -> None:
    start, duration = burst["burst_start_s"], burst["burst_duration_s"]
    for kind in burst["pages_during_by_page"]:
        xs = [(x["sent_s"] - start, x["latency_s"]) for x in burst["page_samples"] if x["page"] == kind]
        ax.plot([x for x, _ in xs], [y for _, y in xs], ".", ms=4, label=kind)
    ax.axvspan(0, duration, color="tab:red", alpha=0.12, label=f"{burst['burst']} wrong sign-ins")
    ax.axhline(TARGET_PAGE_P95_S, color="grey", ls="--", lw=0.8, label=f"target p95 {TARGET_PAGE_P95_S} s")
    ax.set_yscale("log")
    ax.set_xlabel("page request sent, s after the burst starts")
    ax.set_ylabel("page latency, s")
    ax.set_title(f"Pages during the burst: {burst['checked_401']} checked (401), {burst['throttled_429']} throttled")
    ax.legend(fontsize=8)


def plot_sockets(ax, sockets: dict, idle: float | None) -> None:
    steps = sockets["steps"]
    held = [0] + [s["held"] for s in steps]
    rss = [sockets["rss_before_mb"]] + [s["rss_mb"] for s in steps]
    ax.plot(held, rss, "o-", color="tab:red")
    for s in steps:
        label = f"link event p95 {ms(s['link_event']['p95_s'])}"
        ax.annotate(
            label, (s["held"], s["rss_mb"]), xytext=(-4, -14), textcoords="offset points", ha="right", fontsize=8
        )
    if idle is not None:
        ax.axhline(idle, color="grey", ls=":", lw=0.8, label=f"idle {idle} MB")
        ax.legend(fontsize=8)
    ax.set_xlabel("console WebSockets held")
    ax.set_ylabel("server RSS, MB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Memory per socket: {sockets['rss_per_socket_kb']} kB")


def plot_memory(ax, rss: dict) -> None:
    ax.plot([t for t, _ in rss["timeline"]], [mb for _, mb in rss["timeline"]], color="tab:red", lw=1)
    for name, t in rss["mark_times_s"].items():
        if name == "idle" or name.startswith("after"):
            ax.axvline(t, color="grey", ls=":", lw=0.8)
            ax.annotate(name, (t, 0), rotation=90, fontsize=8, va="bottom")
    ax.set_xlabel("s since the server was ready")
    ax.set_ylabel("server RSS, MB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Server RSS over the run (peak {rss['peak_mb']} MB)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small numbers: a smoke run of a few seconds")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results") / time.strftime("%Y-%m-%d"))
    p.add_argument("--port", type=int, help="the server's port (default: a free one)")
    args = p.parse_args()
    files = raise_file_limit()  # before the server starts: it inherits the limit
    s = QUICK if args.quick else Settings()
    s = replace(s, socket_steps=tuple(n for n in s.socket_steps if n + 256 <= files) or s.socket_steps[:1])
    result = asyncio.run(run(s, args.port or free_port(), files))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("load-quick.json" if args.quick else "load.json")
    path.write_text(json.dumps(result, indent=2))
    plot(result, path.with_suffix(".png"))
    print(summary(result))
    print(f"wrote {path} and {path.with_suffix('.png').name}")


if __name__ == "__main__":
    main()
