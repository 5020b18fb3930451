"""Several nodes (issue 13): events, exactly-once links, a killed node, decoding on ASR workers, and link creations,
measured against real ``voxgate serve`` processes sharing a real PostgreSQL and Valkey on this machine.

    python -m benchmarks.cluster [--nodes 2] [--asr-workers 1] [--calls 2] [--utterances 40] [--events 300]
                                 [--contenders 20] [--rounds 5] [--link-seconds 10] [--link-clients 16]
                                 [--ingress audiohook|twilio|webrtc] [--serve-arg=--no-partials ...]
                                 [--phases events,once,kill,links,subtitles] [--keep]
                                 [--out benchmarks/results/cluster.json]

Each group of phases gets its own throwaway PostgreSQL and Valkey (``peers.servers``) and its own nodes
(``peers.cluster``: one process each, one shared secret key):

1. **events**: the same agent's console WebSocket open on node a and on node b; links are created on b and
   revoked there, one request at a time, two events each. Node b delivers its own events in-process, node a gets
   them over Redis pub/sub: per event, arrival at a minus arrival at b, and request -> arrival on each node;
2. **once**: ``--contenders`` customers (aiortc, speech only) each fetch one link's page and prepare an offer,
   spread over the nodes, then all POST their offers at once; repeated for ``--rounds`` links (created on the
   nodes in turn). Exactly one 200 and otherwise 410 every time. ``--max-calls-per-agent 64`` on every node so
   that the per-agent limit refuses none;
3. **kill**: a call with real speech, its media on node b and the console (and the agent's offer, proxied) on
   node a (``--no-subtitles`` there; b transcribes). After the first final reaches a, a link is created on b and
   never opened, and b is killed with SIGKILL: seconds until a's console shows the call ``interrupted``; whether
   that link then opens on a; whether the transcript a's console saw and the audit rows are readable from a;
4. **links**: clients POST /api/links back to back for ``--link-seconds``, first to one node (the other not yet
   started), then spread over ``--nodes`` nodes (``--no-subtitles``: the web server, not the models);
5. **subtitles**: ``--calls`` scripted calls (``benchmarks.conversation``, at least ``--utterances`` lines,
   both legs, over ``--ingress``) against one node while ``--asr-workers`` ``voxgate asr-worker`` processes run
   (jobs on Redis Streams), then the same calls against the same node restarted with ``--no-asr-workers`` (the
   workers still up, idle; ``--serve-arg`` goes to that node in both runs). End of the words -> last final
   subtitle on the console, measured as ``benchmarks.subtitles`` does; the jobs the workers took (the streams'
   ``entries-added``) and every process's CPU (PostgreSQL's and Valkey's too) say where the decodes ran.

Everything (client, nodes, workers, PostgreSQL, Valkey) shares this machine's cores. Writes JSON (written again
after each phase, so a crash keeps what was measured) and a PNG beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from redis.asyncio import Redis

from benchmarks.conversation import DATA, conversations
from benchmarks.escalation import TICKS, rss_mb
from benchmarks.load import machine
from benchmarks.subtitles import (
    AGENTS,
    AUDIOHOOK_KEY,
    AUDIOHOOK_SECRET,
    INGRESSES,
    LATE,
    TWILIO_TOKEN,
    Call,
    Dialer,
    measure,
    pct,
    summarise,
)
from peers.cluster import CLI, Cluster, Node
from peers.servers import postgres_server, redis_server
from peers.webrtc import SpeechTrack, agent_connect, customer_connect, wait_gathered

SPEECH = DATA / "asr/multilingual/test.wav"
LIMITS = ["--max-calls", "64", "--max-calls-per-agent", "64"]
PHASES = ("events", "once", "kill", "links", "subtitles")
JOB_STREAMS = {"finals": "voxgate:asr:finals", "partials": "voxgate:asr:partials"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pct_fine(values: list[float], q: float) -> float | None:
    """A percentile to 0.1 ms: events cross in milliseconds."""
    return round(float(np.percentile(values, q)), 4) if values else None


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) over every core since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds of the process and of its children it has reaped)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (PostgreSQL's backends), reaped ones included."""
    total = _stat(pid)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(pid):
            try:
                parent, seconds = _stat(int(entry.name))
            except (OSError, IndexError):  # gone meanwhile
                continue
            total += seconds if parent == pid else 0.0
    return total


def server_pids(database: str, redis_url: str) -> dict[str, int]:
    """PostgreSQL's postmaster and the Valkey server, found by the ports they listen on."""
    pg, valkey = urlsplit(database).port, urlsplit(redis_url).port
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        line = " ".join(args)
        if args[0].endswith("postgres") and f" -p {pg} " in f"{line} ":
            found["postgresql"] = int(entry.name)
        elif ("valkey" in args[0] or "redis" in args[0]) and f":{valkey}" in line:
            found["valkey"] = int(entry.name)
    return found


class CpuWindow:
    """CPU over a window, in % of one core: the whole machine's (every process, ours or not), this client's, and
    each named process's (with its children: PostgreSQL's backends). What is left of the machine's is other
    people's work on it."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._busy0, self._total0 = _busy_jiffies()
        self._self0 = _own_cpu()
        self._procs0 = {name: tree_cpu(pid) for name, pid in pids.items()}
        self._wall0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        busy, total = _busy_jiffies()
        wall = time.monotonic() - self._wall0
        cores = os.cpu_count() or 1
        out = {
            "machine": round((busy - self._busy0) / max(1, total - self._total0) * cores * 100, 1),
            "client": round((_own_cpu() - self._self0) / wall * 100, 1),
        }
        for name, pid in self.pids.items():
            try:
                out[name] = round((tree_cpu(pid) - self._procs0[name]) / wall * 100, 1)
            except OSError:  # it exited meanwhile
                continue
        return out


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- a console, stamped -------------------------------------------------------------------------------------------


class Console:
    """An agent's console WebSocket on one node; each event stamped (``perf_counter``) as it arrives, and the first
    arrival of each (link, state) kept, since a state may be told twice."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict]] = []
        self.first: dict[tuple[str, str], float] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task | None = None

    async def open(self, http: aiohttp.ClientSession, base: str, token: str) -> Console:
        self._ws = await http.ws_connect(f"{base}/api/ws", headers=bearer(token), heartbeat=30)
        hello = await self._ws.receive_json()
        assert hello["type"] == "hello", hello
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            at, event = time.perf_counter(), json.loads(msg.data)
            self.events.append((at, event))
            if event.get("type") == "link":
                self.first.setdefault((event["link"]["id"], event["link"]["state"]), at)

    async def wait(self, match: Callable[[dict], bool], timeout: float = 30.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, event in self.events:
                if match(event):
                    return at, event
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no such event in {timeout} s; last: {[e['type'] for _, e in self.events][-20:]}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._ws is not None:
            await self._ws.close()


def state_is(link_id: str, state: str) -> Callable[[dict], bool]:
    return lambda e: e["type"] == "link" and e["link"]["id"] == link_id and e["link"]["state"] == state


def final_of(link_id: str) -> Callable[[dict], bool]:
    return lambda e: e["type"] == "subtitle" and e["link_id"] == link_id and e["kind"] == "final" and bool(e["text"])


async def new_link(http: aiohttp.ClientSession, base: str, headers: dict) -> dict:
    async with http.post(f"{base}/api/links", json={"language": "en"}, headers=headers) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def end_call(http: aiohttp.ClientSession, base: str, link_id: str, headers: dict) -> int:
    async with http.post(f"{base}/api/calls/{link_id}/end", headers=headers) as r:
        return r.status


# -- 1. events across nodes ---------------------------------------------------------------------------------------


async def event_delays(http: aiohttp.ClientSession, b: Node, headers: dict, on_a: Console, on_b: Console, n: int):
    """``n`` events made on node b (a link created, then revoked: two each), one request at a time."""
    sent: dict[tuple[str, str], float] = {}
    for _ in range(-(-n // 2)):
        t = time.perf_counter()
        link_id = (await new_link(http, b.base, headers))["link"]["id"]
        sent[(link_id, "created")] = t
        t = time.perf_counter()
        async with http.post(f"{b.base}/api/links/{link_id}/revoke", headers=headers) as r:
            assert r.status == 200, await r.text()
        sent[(link_id, "revoked")] = t
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(k in on_a.first and k in on_b.first for k in sent):
        await asyncio.sleep(0.05)
    both = [k for k in sent if k in on_a.first and k in on_b.first]
    cross = [on_a.first[k] - on_b.first[k] for k in both]
    to_a = [on_a.first[k] - sent[k] for k in sent if k in on_a.first]
    to_b = [on_b.first[k] - sent[k] for k in sent if k in on_b.first]
    return {
        "events": len(sent),
        "seen_on_both": len(both),
        "missing_on_a": sum(k not in on_a.first for k in sent),
        "missing_on_b": sum(k not in on_b.first for k in sent),
        "a_before_b": sum(x < 0 for x in cross),
        "cross_node_p50_s": pct_fine(cross, 50),
        "cross_node_p95_s": pct_fine(cross, 95),
        "cross_node_max_s": pct_fine(cross, 100),
        "request_to_event_a_p50_s": pct_fine(to_a, 50),
        "request_to_event_a_p95_s": pct_fine(to_a, 95),
        "request_to_event_b_p50_s": pct_fine(to_b, 50),
        "request_to_event_b_p95_s": pct_fine(to_b, 95),
        "samples": {"cross_node_s": [round(x, 5) for x in cross], "to_a_s": _r(to_a), "to_b_s": _r(to_b)},
    }


def _r(values: list[float]) -> list[float]:
    return [round(x, 5) for x in values]


# -- 2. one link, many devices at once ----------------------------------------------------------------------------


async def prepare(http: aiohttp.ClientSession, base: str, token: str) -> tuple[RTCPeerConnection, int]:
    """A customer's device: the link's page fetched (its status), a microphone's offer ready to send."""
    async with http.get(f"{base}/api/join/{token}") as r:
        page = r.status
    pc = RTCPeerConnection()
    pc.addTrack(SpeechTrack(SPEECH))
    await pc.setLocalDescription(await pc.createOffer())
    await wait_gathered(pc)
    return pc, page


async def offer(http: aiohttp.ClientSession, base: str, token: str, pc: RTCPeerConnection) -> int:
    sdp = {"type": "offer", "sdp": pc.localDescription.sdp}
    async with http.post(f"{base}/api/join/{token}/offer", json=sdp) as r:
        body = await r.json()
        if r.status == 200:
            await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
        return r.status


async def contend(http: aiohttp.ClientSession, nodes: list[Node], headers: dict, contenders: int, rounds: int):
    """Each round: a link created on the next node, ``contenders`` devices spread over the nodes offering at once."""
    out = []
    for i in range(rounds):
        origin = nodes[i % len(nodes)]
        link = await new_link(http, origin.base, headers)
        token, link_id = link["url"].rsplit("/", 1)[1], link["link"]["id"]
        where = [nodes[k % len(nodes)] for k in range(contenders)]
        ready = await asyncio.gather(*(prepare(http, n.base, token) for n in where))
        t0 = time.perf_counter()
        pcs = [pc for pc, _ in ready]
        statuses = await asyncio.gather(*(offer(http, n.base, token, pc) for n, pc in zip(where, pcs, strict=True)))
        took = time.perf_counter() - t0
        winners = [n.node_id for n, s in zip(where, statuses, strict=True) if s == 200]
        ended = await end_call(http, origin.base, link_id, headers) if winners else None
        await asyncio.gather(*(pc.close() for pc in pcs))
        out.append(
            {
                "link_created_on": origin.node_id,
                "pages": dict(Counter(str(p) for _, p in ready)),
                "offers": dict(Counter(str(s) for s in statuses)),
                "offers_by_node": dict(Counter(n.node_id for n in where)),
                "winners": len(winners),
                "winner_on": winners,
                "all_answered_s": round(took, 3),
                "end_status": ended,
            }
        )
    once = all(r["winners"] == 1 and set(r["offers"]) == {"200", "410"} for r in out)
    return {"contenders": contenders, "rounds": out, "link_consumed_once": once}


# -- 3. a node killed mid-call ------------------------------------------------------------------------------------


async def node_kill(cluster: Cluster, http: aiohttp.ClientSession, headers: dict, console: Console) -> dict:
    a, b = cluster.nodes[0], cluster.nodes[1]
    link = await new_link(http, a.base, headers)
    link_id = link["link"]["id"]
    customer, answer, heard = await customer_connect(http, link["url"].replace(a.base, b.base), SPEECH, video=False)
    assert customer is not None, answer
    agent, seen = await agent_connect(http, a.base, link_id, headers)  # node a proxies it to node b
    await console.wait(final_of(link_id), timeout=90)
    finals = [e["text"] for _, e in console.events if final_of(link_id)(e)]
    later = await new_link(http, b.base, headers)

    killed = time.perf_counter()
    cluster.kill(b)
    at, _ = await console.wait(state_is(link_id, "interrupted"), timeout=60)
    interrupted_s = at - killed
    await asyncio.gather(customer.close(), agent.close())
    heard.stop()
    seen.stop()

    pc, answer, heard = await customer_connect(http, later["url"].replace(b.base, a.base), SPEECH, video=False)
    opens = pc is not None
    if pc is not None:
        await pc.close()
        heard.stop()
        await end_call(http, a.base, later["link"]["id"], headers)

    async with http.get(f"{a.base}/api/calls/{link_id}/transcript?format=vtt", headers=headers) as r:
        transcript_status, transcript = r.status, await r.text()
    async with http.get(f"{a.base}/api/audit?link={link_id}", headers=headers) as r:
        audit_status = r.status
        actions = sorted({row["action"] for row in (await r.json())["audit"]}) if r.status == 200 else []
    kept = [text for text in finals if text in transcript]
    needed = {"link.create", "call.connect", "call.interrupted"}
    return {
        "node_kill_interrupted_s": round(interrupted_s, 3),
        "unopened_link_opens_after_kill": opens,
        "unopened_link_answer": None if opens else answer,
        "finals_seen_before_kill": len(finals),
        "finals_in_transcript": len(kept),
        "transcript_status": transcript_status,
        "audit_status": audit_status,
        "audit_actions": actions,
        "nothing_durable_lost": transcript_status == 200 and len(kept) == len(finals) and needed <= set(actions),
    }


async def events_once_kill(args: argparse.Namespace, work: Path, result: dict, save: Callable[[], None]) -> None:
    wanted = set(args.phases)
    with postgres_server() as database, redis_server() as redis:
        extra = {n: list(LIMITS) for n in "abcdefgh"[: args.nodes]}
        extra["a"].append("--no-subtitles")  # the console's node; b (and any others) transcribe
        cluster = Cluster(work / "nodes", database, redis, nodes=args.nodes, extra=extra)
        headers = bearer(cluster.add_agent("alice"))
        await cluster.start()
        a, b = cluster.nodes[0], cluster.nodes[1]
        try:
            async with aiohttp.ClientSession() as http:
                on_a = await Console().open(http, a.base, headers["Authorization"].split()[1])
                on_b = await Console().open(http, b.base, headers["Authorization"].split()[1])
                if "events" in wanted:
                    r = await event_delays(http, b, headers, on_a, on_b, args.events)
                    result["events"] = r
                    result["cross_node_event_p50_s"] = r["cross_node_p50_s"]
                    result["cross_node_event_p95_s"] = r["cross_node_p95_s"]
                    save()
                if "once" in wanted:
                    r = await contend(http, cluster.nodes, headers, args.contenders, args.rounds)
                    result["consumption"] = r
                    result["link_consumed_once"] = r["link_consumed_once"]
                    save()
                await on_b.close()
                if "kill" in wanted:
                    r = await node_kill(cluster, http, headers, on_a)
                    result["kill"] = r
                    for key in ("node_kill_interrupted_s", "unopened_link_opens_after_kill", "nothing_durable_lost"):
                        result[key] = r[key]
                    save()
                await on_a.close()
        finally:
            cluster.stop()


# -- 4. link creations per second ---------------------------------------------------------------------------------


async def link_rate(bases: list[str], headers: dict, clients: int, seconds: float, pids: dict[str, int]) -> dict:
    """Closed loop: each client posts its next link as soon as its last is answered; clients spread over ``bases``."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def client(http: aiohttp.ClientSession, url: str, deadline: float) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            async with http.post(url, json={}, headers=headers) as r:
                await r.read()
                statuses[str(r.status)] += 1
                if r.status == 201:
                    latencies.append(time.perf_counter() - t)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        cpu, start = CpuWindow(pids), time.perf_counter()
        urls = [f"{bases[i % len(bases)]}/api/links" for i in range(clients)]
        await asyncio.gather(*(client(http, url, start + seconds) for url in urls))
        elapsed, used = time.perf_counter() - start, cpu.stop()
    return {
        "nodes": len(bases),
        "clients": clients,
        "seconds": round(elapsed, 3),
        "created": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "latency_p50_s": pct(latencies, 50),
        "latency_p95_s": pct(latencies, 95),
        "statuses": dict(statuses),
        "cpu_percent": used,
    }


async def links(args: argparse.Namespace, work: Path, result: dict, save: Callable[[], None]) -> None:
    with postgres_server() as database, redis_server() as redis:
        n = max(2, args.nodes)
        cluster = Cluster(work / "links", database, redis, nodes=n, extra={x: ["--no-subtitles"] for x in "abcdefgh"})
        headers = bearer(cluster.add_agent("linker"))
        try:
            cluster.start_node(cluster.nodes[0])  # the others are not running yet: one node, as one
            await cluster.nodes[0].ready()
            first = cluster.nodes[0]
            runs = [await link_rate([first.base], headers, args.link_clients, args.link_seconds, pids(cluster))]
            for node in cluster.nodes[1:]:
                cluster.start_node(node)
            await asyncio.gather(*(node.ready() for node in cluster.nodes[1:]))
            bases = [x.base for x in cluster.nodes]
            runs.append(await link_rate(bases, headers, args.link_clients, args.link_seconds, pids(cluster)))
        finally:
            cluster.stop()
    result["links"] = runs
    for r in runs:
        result[f"links_per_s_{r['nodes']}_node{'s' if r['nodes'] > 1 else ''}"] = r["per_second"]
    save()


def pids(cluster: Cluster) -> dict[str, int]:
    """The running nodes', workers', PostgreSQL's and Valkey's process ids, by name."""
    named = {f"node-{n.node_id}": n.process for n in cluster.nodes}
    named.update({f"worker-{i}": w for i, w in enumerate(cluster.workers)})
    found = {name: p.pid for name, p in named.items() if p is not None and p.poll() is None}
    return {**found, **server_pids(cluster.database, cluster.redis)}


# -- 5. subtitles with decoding on workers, then local ------------------------------------------------------------


def cli_has_asr_worker() -> bool:
    return subprocess.run([*CLI, "asr-worker", "--help"], capture_output=True).returncode == 0


def start_worker(cluster: Cluster, via_cli: bool) -> subprocess.Popen:
    """``voxgate asr-worker``; until the CLI has that command, the module it wraps (``python -m cluster.asr``)."""
    cluster.root.mkdir(parents=True, exist_ok=True)
    if via_cli:
        return cluster.start_worker()
    log = (cluster.root / f"worker-{len(cluster.workers)}.log").open("w")
    command = [sys.executable, "-m", "cluster.asr", "--redis", cluster.redis]
    worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=cluster.env)
    cluster.workers.append(worker)
    return worker


async def wait_workers(redis_url: str, workers: list[subprocess.Popen], timeout: float = 180.0) -> None:
    """Until every worker has its heartbeat key (it has loaded its models and joined the group)."""
    redis = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + timeout
        while len(await redis.keys("voxgate:asr:worker:*")) < len(workers):
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("an ASR worker exited at start: see its log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ASR workers not up in {timeout} s")
            await asyncio.sleep(0.5)
    finally:
        await redis.aclose()


async def jobs_added(redis_url: str) -> dict[str, int]:
    """Jobs ever added to the workers' streams (``entries-added``: entries are deleted once answered)."""
    redis = Redis.from_url(redis_url)
    out = {}
    try:
        for name, stream in JOB_STREAMS.items():
            try:
                info = await redis.xinfo_stream(stream)
            except Exception:  # no such stream: no job was ever sent
                out[name] = 0
                continue
            out[name] = int(info.get("entries-added", info.get(b"entries-added", 0)))
    finally:
        await redis.aclose()
    return out


async def subtitle_run(
    node: Node, tokens: dict[str, str], args: argparse.Namespace, redis_url: str, pids: dict[str, int]
) -> dict:
    """``benchmarks.subtitles``' run, against a cluster node: the calls, the consoles, the rows."""
    received: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    call_of: dict[str, str] = {}
    calls: list[Call] = []
    jobs0, cpu = await jobs_added(redis_url), CpuWindow(pids)
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(f"{node.base}/api/ws", headers=bearer(t)) for t in tokens.values()]

        async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                m = json.loads(msg.data)
                if m.get("type") == "link" and m["link"].get("external_id"):
                    call_of[m["link"]["external_id"]] = m["link"]["id"]
                elif m.get("type") == "subtitle":
                    received[m["link_id"]].append((time.time(), m))

        listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
        dial = getattr(Dialer(http, node.base, tokens), args.ingress)
        for c in conversations(args.calls, args.utterances):
            calls.append(await dial(c))
        deadline = time.monotonic() + 30
        while any(call.origins["customer"]() is None for call in calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(call.ends_at() for call in calls) + LATE - time.time())
        await asyncio.gather(*(call.hangup() for call in calls))
        for task in listeners:
            task.cancel()
        for ws in sockets:
            await ws.close()
    jobs1, used = await jobs_added(redis_url), cpu.stop()
    rows = [row for call in calls for row in measure(call, received[call_of.get(call.key, call.key)])]
    s = summarise(rows)
    finals = [r.final_s for r in rows if r.final_s is not None]
    return {
        "calls": args.calls,
        "ingress": args.ingress,
        "utterances": s["utterances"],
        "finals": len(finals),
        "no_final": s["no_final"],
        "final_p50_s": s["final_p50_s"],
        "final_p95_s": s["final_p95_s"],
        "final_max_s": pct(finals, 100),
        "translated_p50_s": s["translated_p50_s"],
        "translated_p95_s": s["translated_p95_s"],
        "wer": s["wer"],
        "jobs_to_workers": {k: jobs1[k] - jobs0[k] for k in jobs1},
        "cpu_percent": used,
        "rss_mb": {name: round(rss_mb(pid)) for name, pid in pids.items() if name.startswith(("node", "worker"))},
        "rows": [asdict(r) for r in rows],
    }


async def subtitles(args: argparse.Namespace, work: Path, result: dict, save: Callable[[], None]) -> None:
    audiohook = f"{AUDIOHOOK_KEY}:{base64.b64encode(AUDIOHOOK_SECRET).decode()}"
    platforms = ["--audiohook-key", audiohook, "--twilio-auth-token", TWILIO_TOKEN]
    via_cli = cli_has_asr_worker()
    result["asr_worker_command"] = "voxgate asr-worker" if via_cli else "python -m cluster.asr"
    with postgres_server() as database, redis_server() as redis:
        cluster = Cluster(work / "subtitles", database, redis, nodes=1, extra={"a": [*LIMITS, *platforms]})
        tokens = {language: cluster.add_agent(name, language) for language, name in AGENTS.items()}
        node = cluster.nodes[0]
        runs = result["subtitles"] = {}
        try:
            workers = [start_worker(cluster, via_cli) for _ in range(args.asr_workers)]
            await wait_workers(redis, workers)
            for mode, flags in (("workers", []), ("local", ["--no-asr-workers"])):
                cluster.extra["a"] = [*LIMITS, *platforms, *args.serve_arg, *flags]
                cluster.start_node(node)
                await node.ready()
                await asyncio.sleep(2.5)  # the node's view of the live workers refreshes every second
                runs[mode] = await subtitle_run(node, tokens, args, redis, pids(cluster))
                print(json.dumps({mode: {k: v for k, v in runs[mode].items() if k != "rows"}}), flush=True)
                for q in ("p50", "p95"):
                    result[f"subtitle_final_{q}_s_{mode}"] = runs[mode][f"final_{q}_s"]
                result[f"subtitle_finals_{mode}"] = runs[mode]["finals"]
                save()
                assert node.process is not None
                node.process.terminate()
                node.process.wait(60)
                shutil.copy(node.log, node.data_dir / f"server-{mode}.log")
        finally:
            cluster.stop()


# -- the figure ---------------------------------------------------------------------------------------------------


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    (ev, once, kill), (subs, rate, text) = axes

    def cdf(ax, values: list[float], label: str, scale: float = 1.0) -> None:
        if values:
            xs = np.sort(np.asarray(values) * scale)
            ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=label)

    if "events" in result:
        s = result["events"]["samples"]
        cdf(ev, s["cross_node_s"], "arrival on a − arrival on b (over Redis)", 1000)
        cdf(ev, s["to_b_s"], "request → event on b (its own)", 1000)
        cdf(ev, s["to_a_s"], "request → event on a (other node)", 1000)
        ev.set_xlabel("milliseconds")
        ev.set_ylabel("fraction of events")
        ev.legend(fontsize=8)
    ev.set_title(f"1. Events made on node b ({result.get('events', {}).get('events', 0)})")

    if "consumption" in result:
        rounds = result["consumption"]["rounds"]
        xs = np.arange(len(rounds))
        won = [r["offers"].get("200", 0) for r in rounds]
        gone = [r["offers"].get("410", 0) for r in rounds]
        other = [sum(v for k, v in r["offers"].items() if k not in ("200", "410")) for r in rounds]
        once.bar(xs, won, color="tab:green", label="200 (took the call)")
        once.bar(xs, gone, bottom=won, color="tab:grey", label="410 (used)")
        once.bar(xs, other, bottom=np.add(won, gone), color="tab:red", label="other")
        once.set_xticks(xs, [f"{i + 1}\non {r['link_created_on']}" for i, r in enumerate(rounds)])
        once.set_xlabel("link, and the node it was made on")
        once.set_ylabel("offers sent at once")
        once.legend(fontsize=8)
        c = result["consumption"]
        once.set_title(f"2. One link, {c['contenders']} devices at once: consumed once = {c['link_consumed_once']}")

    if "kill" in result:
        k = result["kill"]
        kill.barh([0], [k["node_kill_interrupted_s"]], color="tab:orange")
        kill.text(k["node_kill_interrupted_s"], 0, f" {k['node_kill_interrupted_s']:.2f} s", va="center")
        kill.set_yticks([0], ["kill -9 b → a's console\nshows interrupted"])
        kill.set_xlabel("seconds")
        lines = [
            f"unopened link opens on a: {k['unopened_link_opens_after_kill']}",
            f"finals seen before the kill, in the transcript: {k['finals_in_transcript']}/"
            f"{k['finals_seen_before_kill']}",
            f"audit: {', '.join(a for a in k['audit_actions'] if a.startswith(('call.', 'link.')))}",
            f"nothing durable lost: {k['nothing_durable_lost']}",
        ]
        kill.text(0.02, 0.95, "\n".join(lines), transform=kill.transAxes, va="top", fontsize=8)
        kill.set_ylim(-1, 1.6)
    kill.set_title("3. Node b killed mid-call")

    if "subtitles" in result:
        runs = result["subtitles"]
        data = [[r["final_s"] for r in runs[m]["rows"] if r["final_s"] is not None] for m in runs]
        labels = [f"{m}\n({runs[m]['finals']} finals)" for m in runs]
        subs.boxplot(data, whis=(5, 95), showfliers=True)
        subs.set_xticks(range(1, len(labels) + 1), labels)
        for i, m in enumerate(runs, start=1):
            subs.text(i + 0.1, runs[m]["final_p95_s"] or 0, f"p95 {runs[m]['final_p95_s']}", fontsize=8)
            subs.text(i + 0.1, runs[m]["final_p50_s"] or 0, f"p50 {runs[m]['final_p50_s']}", fontsize=8)
        subs.set_ylabel("end of the words → last final on the console, s")
        calls = next(iter(runs.values()))["calls"]
        flags = " ".join(result.get("subtitle_node_args", []))
        subs.set_title(f"4. Subtitles, {calls} calls: {result['asr_workers']} ASR worker(s) vs local {flags}".strip())

    if "links" in result:
        runs = result["links"]
        rate.bar([f"{r['nodes']} node{'s' if r['nodes'] > 1 else ''}" for r in runs], [r["per_second"] for r in runs])
        for i, r in enumerate(runs):
            rate.text(i, r["per_second"], f"{r['per_second']}/s\np95 {r['latency_p95_s']} s", ha="center", va="bottom")
        rate.set_ylim(0, max(r["per_second"] for r in runs) * 1.25)
        rate.set_ylabel("links created per second")
        rate.set_title(f"5. POST /api/links, {runs[0]['clients']} clients, {runs[0]['seconds']:.0f} s")

    for ax, key, what in (
        (ev, "events", "1. events"),
        (once, "consumption", "2. exactly once"),
        (kill, "kill", "3. kill"),
        (subs, "subtitles", "4. subtitles"),
        (rate, "links", "5. link creations"),
    ):
        if key not in result:
            ax.clear()
            ax.axis("off")
            ax.text(0.5, 0.5, f"{what}: not run (--phases)", ha="center", color="grey")
    text.axis("off")
    keys = [k for k in result if k.endswith(("_s", "_once", "_kill", "_lost", "_node", "_nodes")) or "_s_" in k]
    text.text(0, 1, "\n".join(f"{k}: {result[k]}" for k in keys), va="top", family="monospace", fontsize=8)
    m = result["machine"]
    fig.suptitle(
        f"VoxGate, {result['nodes']} nodes on one PostgreSQL and one Valkey: {m['cpus']} cores ({m['cpu_model']}) "
        f"shared by every process, {result['date']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- main ---------------------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="voxgate-cluster-"))
    result: dict = {
        "machine": {**machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python -m benchmarks.cluster " + " ".join(sys.argv[1:]),
        "nodes": args.nodes,
        "asr_workers": args.asr_workers,
        "calls": args.calls,
        "ingress": args.ingress,
        "subtitle_node_args": args.serve_arg,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))

    try:
        if {"events", "once", "kill"} & set(args.phases):
            await events_once_kill(args, work, result, save)
        if "links" in args.phases:
            await links(args, work, result, save)
        if "subtitles" in args.phases:
            await subtitles(args, work, result, save)
    finally:
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        save()
        if args.keep:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=2, help="voxgate serve processes (at least 2)")
    p.add_argument("--asr-workers", type=int, default=1, help="voxgate asr-worker processes (at least 1)")
    p.add_argument("--calls", type=int, default=2, help="concurrent calls in the subtitle runs")
    p.add_argument("--utterances", type=int, default=40, help="lines said in each subtitle run, at least")
    p.add_argument("--events", type=int, default=300, help="events made on node b")
    p.add_argument("--contenders", type=int, default=20, help="devices opening one link at once")
    p.add_argument("--rounds", type=int, default=5, help="links contended")
    p.add_argument("--link-seconds", type=float, default=10.0)
    p.add_argument("--link-clients", type=int, default=16)
    p.add_argument("--ingress", choices=tuple(INGRESSES), default="audiohook", help="how the subtitle calls come in")
    p.add_argument("--phases", type=lambda s: s.split(","), default=list(PHASES), help=",".join(PHASES))
    p.add_argument(
        "--serve-arg", action="append", default=[], metavar="ARG", help="passed to the subtitle runs' node (repeatable)"
    )
    p.add_argument("--keep", action="store_true", help="keep the nodes' and workers' logs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cluster.json"))
    args = p.parse_args()
    if args.nodes < 2 or args.asr_workers < 1 or set(args.phases) - set(PHASES):
        p.error(f"--nodes at least 2, --asr-workers at least 1, --phases among {','.join(PHASES)}")
    result = asyncio.run(main_async(args))
    plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
