"""Live subtitles under load: N concurrent calls in which a customer and an agent take turns, both legs transcribed.

    python -m benchmarks.subtitles [--sessions 1,2,4,6,8,10] [--utterances 60] [--baseline]
                                   [--ingress audiohook|webrtc|twilio] [--serve-arg=--whisper-workers=2 ...]
                                   [--label TEXT] [--out benchmarks/results/subtitles.json]

For each N, starts ``voxgate serve`` as its own process and connects N calls
scripted by ``benchmarks.conversation``: real recordings of several speakers
(en, pt, and es/fr/de customers through Whisper's speech translation), the
customer and the agent answering each other with 0.8–1.5 s gaps, each call
staggered by 1–4 s of lead silence. Each run has at least ``--utterances``
lines (so one call is a long call and ten are short ones, never under 6 turns).
Both legs stream at real time, by ``--ingress``:

* ``audiohook`` (default): Genesys AudioHook, both legs in one stereo μ-law
  stream (customer external, agent internal): the cheapest client, which
  matters when client and server share a small machine. Its transcript
  ``event``s back on the stream are timed too;
* ``twilio``: Twilio Media Streams, the customer on the inbound track and the
  agent on the outbound track, 20 ms μ-law messages;
* ``webrtc``: a video link (aiortc customer, no camera) and an aiortc agent
  console sending the agent's speech, connected after the customer and
  aligned to the customer's audio.

Phone audio is the recording band-limited to 8 kHz and μ-law coded
(``peers.phone``). Every ingress takes the es/fr/de calls: they are
announced as ``detect``, and their agents' English lines have no route back
(nothing translates English into es/fr/de), so those lines are counted as
``no_route``, not as untranslated.

The subtitles are read where the agent reads them, on the console's
WebSocket (``/api/ws``), for both speakers. Each of the server's segments is
matched to the scripted line it overlaps, so per line: its final text
(joined, and into how many finals the server broke it), its translation and,
from where the words truly end in the audio (the trimmed recording's last
loud frame), the time to the last final and to the last translation covering
it; from where they start, to the first partial. Per run: percentiles, WER of
the finals against the shared transcripts (overall and per language), lines
never translated, server CPU (% of one core, over the calls) and peak RSS
(sampled every second). Capacity: the largest N whose translated p95 is at
most 1.5 s with every routed line translated, also per core. ``--baseline``
runs every N again with ``--no-partials`` (each utterance decoded once, at
its endpoint). The audio ends, then 4 s for late subtitles, then every call
hangs up and the server is stopped. Writes JSON (rows included) and a PNG
beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.conversation import Conversation, Line, conversations, turns_per_call
from benchmarks.escalation import cpu_seconds, rss_mb
from models.metrics import word_error_rate
from peers.audiohook import AudioHookClient
from peers.phone import phone_audio, silence
from peers.ports import free_port
from peers.prometheus import BINARY as PROMETHEUS
from peers.prometheus import Prometheus
from peers.servers import wait_ready
from peers.twilio import TwilioPeer
from peers.webrtc import Received, SpeechTrack, agent_connect, customer_connect

AUDIOHOOK_KEY, AUDIOHOOK_SECRET = "benchmark-key", b"benchmark client secret"
TWILIO_TOKEN = "benchmark-auth-token"
AGENTS = {"en": "agent-en", "pt": "agent-pt"}
LATE = 4.0  # seconds after the audio ends that late subtitles still count
SLACK = 0.3  # seconds either side of a line within which a server segment is taken as part of it
TARGET_P95 = 1.5
INGRESSES = {"audiohook": "Genesys AudioHook", "twilio": "Twilio Media Streams", "webrtc": "WebRTC video links"}

Hangup = Callable[[], Awaitable[None]]


# -- one call, as the benchmark dials it -----------------------------------------------------------------------


@dataclass
class Call:
    """A dialled call: its script, the id the server gives it, and the wall time of each leg's stream time zero."""

    conversation: Conversation
    key: str  # the link's id (WebRTC) or the platform's id of the call, until the call's id is known
    origins: dict[str, Callable[[], float | None]]  # leg -> wall time of its first sample (None: not started)
    hangup: Hangup
    transcript_events: Callable[[], list[tuple[dict, float]]] = list  # AudioHook: (entity data, arrival)
    heard: dict[str, Received] = field(default_factory=dict)  # WebRTC: what each side's peer received, by listener

    def ends_at(self) -> float:
        start = self.origins["customer"]()  # the customer's stream is the call's time zero
        return (start or time.time()) + self.conversation.duration


@dataclass
class Dialer:
    """Connects a scripted call to the server by one ingress and starts both legs talking."""

    http: aiohttp.ClientSession
    base: str
    tokens: dict[str, str]  # agent's language -> API token

    async def webrtc(self, c: Conversation) -> Call:
        """A customer on a video link (speech only), then the agent's console sending the agent's speech."""
        headers = {"Authorization": f"Bearer {self.tokens[c.agent_language]}"}
        async with self.http.post(f"{self.base}/api/links", json={"language": c.announced}, headers=headers) as r:
            link = await r.json()
            assert r.ok, link
        customer = SpeechTrack(c.customer)
        customer.loop = False
        pc, answer, customer_heard = await customer_connect(self.http, link["url"], customer, video=False)
        agent = SpeechTrack(c.agent, follows=customer)
        agent.loop = False
        agent_pc, agent_heard = await agent_connect(self.http, self.base, link["link"]["id"], headers, speech=agent)
        # Each side hears the other's translation alone (when a voice speaks its language), so that the first
        # loud audio after a line is its translated speech: the latency a listener feels.
        token = link["url"].rsplit("/", 1)[1]
        hearing = {"hear": "translated"}
        async with self.http.post(
            f"{self.base}/api/join/{token}/hearing", json={**hearing, "call_key": answer["call_key"]}
        ) as r:
            assert r.ok, await r.text()
        async with self.http.post(
            f"{self.base}/api/calls/{link['link']['id']}/hearing", json=hearing, headers=headers
        ) as r:
            assert r.ok, await r.text()
        for heard in (customer_heard, agent_heard):
            heard.keep_audio = True

        async def hangup() -> None:
            await agent_pc.close()
            await pc.close()

        origins = {"customer": lambda: customer.started, "agent": lambda: agent.started}
        return Call(c, link["link"]["id"], origins, hangup, heard={"customer": customer_heard, "agent": agent_heard})

    async def audiohook(self, c: Conversation) -> Call:
        """A phone call streamed by Genesys Cloud: one stereo stream, the customer external, the agent internal."""
        url = f"{self.base.replace('http', 'ws')}/audiohook"
        client = AudioHookClient(self.http, url, api_key=AUDIOHOOK_KEY, secret=AUDIOHOOK_SECRET)
        await client.connect()
        config = {"agent": AGENTS[c.agent_language]}
        opened = await client.open(ani="+441632960000", language=c.announced, custom_config=config)
        assert opened["type"] == "opened", opened
        streaming, started = _on_the_line(client.stream, c)

        async def hangup() -> None:
            streaming.cancel()
            await client.close()

        origins = {"customer": started, "agent": started}
        return Call(c, client.conversation_id, origins, hangup, client.transcripts)

    async def twilio(self, c: Conversation) -> Call:
        """A phone call streamed by Twilio Media Streams: the customer inbound, the agent outbound."""
        peer = await TwilioPeer.connect(self.http, f"{self.base.replace('http', 'ws')}/twilio/media", TWILIO_TOKEN)
        parameters = {"agent": AGENTS[c.agent_language], "caller": "+441632960000", "language": c.announced}
        await peer.start(parameters, tracks=("inbound", "outbound"))
        streaming, started = _on_the_line(peer.play, c)

        async def hangup() -> None:
            streaming.cancel()
            await peer.stop()
            await peer.closed(30)

        return Call(c, peer.call_sid, {"customer": started, "agent": started}, hangup)


def _on_the_line(
    play: Callable[[bytes, bytes], Awaitable[None]], c: Conversation
) -> tuple[asyncio.Task, Callable[[], float | None]]:
    """Stream both legs as the phone network delivers them, then silence until hung up; and the wall time of the
    first sample. The μ-law is made before the clock starts."""
    tail = silence(60)
    customer, agent = phone_audio(c.customer) + tail, phone_audio(c.agent) + tail
    started: list[float] = []

    async def stream() -> None:
        started.append(time.time())
        await play(customer, agent)

    return asyncio.create_task(stream()), lambda: started[0] if started else None


# -- what came back, line by line ------------------------------------------------------------------------------


@dataclass
class Row:
    """One scripted line and what the agent's console received for it. Latencies in seconds: ``final_s`` and
    ``translated_s`` from the true end of the words to the last final / translation covering them,
    ``first_partial_s`` from their true start; ``server_*`` the server's own split of the last final."""

    call: int
    pairing: str
    leg: str
    language: str
    speaker: str
    file: str
    start_s: float  # where the words start in the call's time
    speech_s: float
    reference: str
    no_route: bool  # nothing translates this line's language into the other side's
    text: str | None = None
    finals: int = 0
    final_language: str | None = None
    translation: str | None = None
    final_s: float | None = None
    translated_s: float | None = None
    first_partial_s: float | None = None
    event_back_s: float | None = None
    server_speech_end_lag_s: float | None = None
    server_asr_s: float | None = None
    server_sent_after_asr_s: float | None = None
    server_mt_s: float | None = None
    spoken_s: float | None = None  # WebRTC: end of the words -> the first loud translated audio at the listener
    server_spoken_s: float | None = None  # end of the words -> the server sent the translation's first audio
    spoken_voice: str | None = None


@dataclass
class Segment:
    """One of the server's segments on one leg: its messages, with the wall time each arrived."""

    leg: str
    messages: list[tuple[float, dict]] = field(default_factory=list)

    def of(self, kind: str) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.messages if m["kind"] == kind]

    def span(self) -> tuple[float, float]:
        """Stream time the segment covers, by its finals (else whatever it has)."""
        ms = [m for _, m in self.of("final")] or [m for _, m in self.messages]
        return min(m["audio_start"] for m in ms), max(m["audio_end"] for m in ms)


def measure(call: Call, received: list[tuple[float, dict]], spoken: list[dict] = ()) -> list[Row]:
    """One row per scripted line: each server segment goes to the line it overlaps most, in wall time. ``spoken``:
    the call's ``speech_out`` messages (a translated line began to play to its listener)."""
    c = call.conversation
    zero = call.origins["customer"]()
    origins = {leg: origin() for leg, origin in call.origins.items()}
    segments: dict[tuple[str, int], Segment] = {}
    for t, m in received:
        segments.setdefault((m["speaker"], m["segment"]), Segment(m["speaker"])).messages.append((t, m))
    mine: dict[int, list[Segment]] = defaultdict(list)
    for s in segments.values():
        if origins.get(s.leg) is None or zero is None:
            continue
        a, b = (origins[s.leg] + x - zero for x in s.span())  # in the call's time
        overlaps = [
            (min(b, line.end + SLACK) - max(a, line.start - SLACK), i)
            for i, line in enumerate(c.lines)
            if line.leg == s.leg
        ]
        best = max(overlaps, default=(0.0, -1))
        if best[0] > 0:
            mine[best[1]].append(s)
    events = call.transcript_events()
    rows = [_row(c, i, line, sorted(mine[i], key=Segment.span), zero, events) for i, line in enumerate(c.lines)]
    if zero is not None:
        for i, (line, row) in enumerate(zip(c.lines, rows, strict=True)):
            _spoken(row, line, mine[i], spoken, call.heard, zero)
    return rows


LOUD = 300.0  # RMS of a received 20 ms frame that holds speech (int16): the synthesised voice, not the muted original


def _spoken(row: Row, line: Line, segs: list[Segment], spoken: list[dict], heard: dict[str, Received], zero: float):
    """The translation of the line's end as speech: when the server began to play it, and when its first loud
    frame reached the listener's peer (looked for from just before the server's send, so an earlier line's tail is
    not taken). A line the server cut in two is timed by its last part, the one the end of the words is in: the
    first part's speech may rightly play before the line ends."""
    if not segs:
        return
    last = segs[-1]  # sorted by span
    keys = {(last.leg, m["segment"]) for _, m in last.messages}
    mine = [m for m in spoken if (m["speaker"], m["segment"]) in keys]
    if not mine:
        return
    first = min(mine, key=lambda m: m["timing"]["audio"])
    end = zero + line.end
    row.server_spoken_s = round(first["timing"]["audio"] - end, 3)
    row.spoken_voice = f"{first['engine']}:{first['voice']}"
    peer = heard.get(first["listener"])
    if peer is None:
        return
    since = first["timing"]["audio"] - 0.05
    for at, samples in peer.audio:
        if at >= since and float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > LOUD:
            row.spoken_s = round(at - end, 3)
            return


def _row(c: Conversation, i: int, line: Line, segs: list[Segment], zero: float | None, events) -> Row:
    u = line.utterance
    row = Row(
        call=c.index,
        pairing=c.pairing,
        leg=line.leg,
        language=u.language,
        speaker=u.speaker,
        file=u.name,
        start_s=round(line.start, 3),
        speech_s=round(line.end - line.start, 2),
        reference=u.reference,
        no_route=not line.routed,
    )
    if zero is None:
        return row
    start, end = zero + line.start, zero + line.end
    finals = sorted((x for s in segs for x in s.of("final")), key=lambda x: x[1]["audio_start"])
    if finals:
        row.text = " ".join(m["text"] for _, m in finals)
        row.finals = len(finals)
        row.final_language = finals[-1][1]["language"]
        row.final_s = round(max(t for t, _ in finals) - end, 3)
        last = max(finals, key=lambda x: x[1]["audio_end"])[1]
        timing = last["timing"]
        row.server_speech_end_lag_s = round(timing["speech_end"] - end, 3)
        row.server_asr_s = round(timing["asr"] - timing["speech_end"], 3)
        row.server_sent_after_asr_s = round(timing["sent"] - timing["asr"], 3)
    translations = [x for s in segs for x in s.of("translation")]
    if finals and all(s.of("translation") for s in segs if s.of("final")):
        row.translation = " ".join(m["text"] for _, m in sorted(translations, key=lambda x: x[1]["audio_start"]))
        row.translated_s = round(max(t for t, _ in translations) - end, 3)
        last = max(translations, key=lambda x: x[1]["audio_end"])[1]["timing"]
        row.server_mt_s = round(last["mt"] - last["asr"], 3)
    partials = [t for s in segs for t, _ in s.of("partial")]
    if partials:
        row.first_partial_s = round(min(partials) - start, 3)
    row.event_back_s = _event_back(events, line, end)
    return row


def _event_back(events: list[tuple[dict, float]], line: Line, end: float) -> float | None:
    """AudioHook: end of speech -> the first transcript entity back on the stream covering the line's end."""
    channel = 0 if line.leg == "customer" else 1
    spans = []
    for data, t in events:
        offset, duration = (float(data[k][2:-1]) for k in ("offset", "duration"))  # ISO-8601 PTn.nnnS
        if data["channelId"] == channel and offset < line.end + SLACK and offset + duration > line.start - SLACK:
            spans.append((offset + duration, t))
    if not spans:
        return None
    last = max(e for e, _ in spans)
    return round(min(t for e, t in spans if e >= last - SLACK) - end, 3)


# -- one run: N calls against a fresh server ---------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def wer(rows: list[Row]) -> float | None:
    pairs = [(r.reference, r.text or "") for r in rows]
    return round(word_error_rate(pairs), 4) if pairs else None


def summarise(rows: list[Row]) -> dict:
    translated = [r.translated_s for r in rows if r.translated_s is not None]
    finals = [r.final_s for r in rows if r.final_s is not None]
    partials = [r.first_partial_s for r in rows if r.first_partial_s is not None]
    back = [r.event_back_s for r in rows if r.event_back_s is not None]
    routed = [r for r in rows if not r.no_route]
    spoken = {
        leg: [r.spoken_s for r in rows if r.leg == leg and r.spoken_s is not None] for leg in ("agent", "customer")
    }
    return {
        "utterances": len(rows),
        "utterances_customer": sum(r.leg == "customer" for r in rows),
        "utterances_agent": sum(r.leg == "agent" for r in rows),
        "untranslated": sum(r.translated_s is None for r in routed),
        "no_route": len(rows) - len(routed),
        "no_final": sum(r.text is None for r in rows),
        "misdetected": sum(r.final_language not in (None, r.language) for r in rows),  # recognised in another language
        "broken": sum(r.finals > 1 for r in rows),
        "final_p50_s": pct(finals, 50),
        "final_p95_s": pct(finals, 95),
        "translated_p50_s": pct(translated, 50),
        "translated_p95_s": pct(translated, 95),
        "translated_max_s": pct(translated, 100),
        "first_partial_p50_s": pct(partials, 50),
        "first_partial_p95_s": pct(partials, 95),
        # Translated speech: the agent's lines spoken to the customer, the customer's to the agent (WebRTC only).
        "spoken_to_customer_p50_s": pct(spoken["agent"], 50),
        "spoken_to_customer_p95_s": pct(spoken["agent"], 95),
        "spoken_to_customer": len(spoken["agent"]),
        "spoken_to_agent_p50_s": pct(spoken["customer"], 50),
        "spoken_to_agent_p95_s": pct(spoken["customer"], 95),
        "spoken_to_agent": len(spoken["customer"]),
        "event_back_p50_s": pct(back, 50),
        "event_back_p95_s": pct(back, 95),
        "wer": wer(rows),
        "wer_by_language": {
            lang: wer([r for r in rows if r.language == lang]) for lang in sorted({r.language for r in rows})
        },
    }


def serve_args(extra: list[str], partials: bool = True) -> list[str]:
    """What every run passes to ``voxgate serve`` besides its address, data and the platforms' credentials."""
    limits = ["--max-calls", "64", "--max-calls-per-agent", "64"]
    no_idv = ["--no-idv"]  # latency of subtitles alone: no directory lookups beside them
    return [*limits, *no_idv, *([] if partials else ["--no-partials"]), *extra]


@dataclass
class Server:
    """``voxgate serve`` in its own process, with an English and a Portuguese agent."""

    data_dir: Path
    extra: list[str]
    partials: bool = True
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        cli = [sys.executable, "-m", "cli"]
        for language, name in AGENTS.items():
            out = subprocess.run(
                [*cli, "agent", "add", name, "--language", language, "--data-dir", str(self.data_dir)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            self.tokens[language] = out.split("api token:")[1].split()[0]
        secrets = [
            "--audiohook-key",
            f"{AUDIOHOOK_KEY}:{base64.b64encode(AUDIOHOOK_SECRET).decode()}",
            "--twilio-auth-token",
            TWILIO_TOKEN,
        ]
        where = [
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--public-url",
            self.base,
        ]  # Twilio signs it
        log = (self.data_dir / "server.log").open("w")
        args = [*cli, "serve", *where, *secrets, *serve_args(self.extra, self.partials)]
        self.process = subprocess.Popen(args, stdout=log, stderr=log)
        await wait_ready(self.base, self.process, self.data_dir / "server.log")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:  # still draining a backlog of finals: the measurement is done
            self.process.kill()
            self.process.wait()


class Usage:
    """The server's CPU over a window (% of one core) and its RSS, sampled every second."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss: list[float] = []
        self._c0, self._w0 = cpu_seconds(pid), time.monotonic()
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self.rss.append(rss_mb(self.pid))
            await asyncio.sleep(1.0)

    def stop(self) -> dict:
        self._task.cancel()
        cpu = (cpu_seconds(self.pid) - self._c0) / (time.monotonic() - self._w0) * 100
        self.rss.append(rss_mb(self.pid))
        return {"cpu_percent": round(cpu, 1), "rss_peak_mb": round(max(self.rss), 1)}


async def run(
    n: int,
    ingress: str,
    utterances: int,
    work: Path,
    extra: list[str],
    partials: bool = True,
    prometheus: bool = False,
) -> dict:
    mode = "streaming" if partials else "baseline"
    data_dir = work / f"{ingress}-{mode}-{n}"
    data_dir.mkdir(parents=True)
    metrics_port = free_port() if prometheus else None
    if metrics_port is not None:
        extra = [*extra, "--metrics-port", str(metrics_port)]
    server = Server(data_dir, extra, partials)
    scraper, scraped = None, None
    calls: list[Call] = []
    received: dict[str, list[tuple[float, dict]]] = defaultdict(list)  # subtitles by call id, as they arrive
    spoken: dict[str, list[dict]] = defaultdict(list)  # translated speech begun, by call id
    call_of: dict[str, str] = {}  # the platform's call id -> our call's id
    errors: list[dict] = []
    try:
        await server.start()
        assert server.process is not None
        if metrics_port is not None:
            scraper = Prometheus(data_dir / "prometheus", f"127.0.0.1:{metrics_port}")
            await scraper.wait_up()
        async with aiohttp.ClientSession() as http:
            sockets = [
                await http.ws_connect(f"{server.base}/api/ws", headers={"Authorization": f"Bearer {token}"})
                for token in server.tokens.values()
            ]

            async def listen(ws) -> None:
                async for msg in ws:
                    m = json.loads(msg.data)
                    if m.get("type") == "link" and m["link"].get("external_id"):  # a phone call shows
                        call_of[m["link"]["external_id"]] = m["link"]["id"]
                    elif m.get("type") == "subtitle":
                        received[m["link_id"]].append((time.time(), m))
                    elif m.get("type") == "speech_out":
                        spoken[m["link_id"]].append(m)
                    elif m.get("type") in ("subtitle_error", "speech_error"):
                        errors.append(m)

            listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
            usage = Usage(server.process.pid)
            dial = getattr(Dialer(http, server.base, server.tokens), ingress)
            for c in conversations(n, utterances):
                calls.append(await dial(c))
            deadline = time.monotonic() + 30
            while any(call.origins["customer"]() is None for call in calls) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # WebRTC: until every customer's microphone plays
            await asyncio.sleep(max(call.ends_at() for call in calls) + LATE - time.time())
            used = usage.stop()
            if scraper is not None:
                scraped = await scraper.quantiles()
            await asyncio.gather(*(call.hangup() for call in calls))
            for task in listeners:
                task.cancel()
    finally:
        server.stop()
        if scraper is not None:
            scraper.stop()
    rows = [
        row
        for call in calls
        for row in measure(call, received[call_of.get(call.key, call.key)], spoken[call_of.get(call.key, call.key)])
    ]
    summary = summarise(rows)
    if ingress != "audiohook":
        del summary["event_back_p50_s"], summary["event_back_p95_s"]
    if ingress != "webrtc":
        summary = {k: v for k, v in summary.items() if not k.startswith("spoken_")}
    return {
        "sessions": n,
        "mode": mode,
        "ingress": ingress,
        "turns_per_call": turns_per_call(n, utterances),
        "pairings": [call.conversation.pairing for call in calls],
        **summary,
        **used,
        "subtitle_errors": len(errors),
        **({"prometheus_subtitle_sent": scraped} if scraped is not None else {}),
        "rows": [asdict(r) for r in rows],
    }


# -- the sweep ---------------------------------------------------------------------------------------------------


def passes(r: dict) -> bool:
    p95 = r["translated_p95_s"]
    return p95 is not None and p95 <= TARGET_P95 and r["untranslated"] == 0


def capacity(runs: list[dict], mode: str) -> dict:
    """The largest N whose translated p95 is within the target with every routed line translated."""
    ok = [r["sessions"] for r in runs if r["mode"] == mode and passes(r)]
    calls = max(ok, default=0)
    return {"calls": calls, "calls_per_core": round(calls / (os.cpu_count() or 1), 2), "passing": sorted(ok)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    rss = b.twinx()
    for mode, style in (("streaming", "-"), ("baseline", "--")):
        runs = sorted((r for r in result["runs"] if r["mode"] == mode), key=lambda r: r["sessions"])
        if not runs:
            continue
        n = [r["sessions"] for r in runs]
        p50, p95 = ([r[f"translated_{q}_s"] for r in runs] for q in ("p50", "p95"))
        a.plot(n, p50, "o" + style, color="tab:blue", label=f"{mode}: translated p50")
        a.plot(n, p95, "s" + style, color="tab:orange", label=f"{mode}: translated p95")
        if mode == "streaming":
            partial = [r["first_partial_p50_s"] for r in runs]
            a.plot(n, partial, "^:", color="tab:green", label="first partial p50 (from speech start)")
            for side, marker in (("customer", "D"), ("agent", "v")):
                spoken = [(r["sessions"], r.get(f"spoken_to_{side}_p50_s")) for r in runs]
                if any(y is not None for _, y in spoken):
                    xs, ys = zip(*((x, y) for x, y in spoken if y is not None), strict=True)
                    a.plot(xs, ys, marker + "-", color="tab:purple", label=f"translated speech at the {side}, p50")
        scraped = [(r["sessions"], r["prometheus_subtitle_sent"]) for r in runs if "prometheus_subtitle_sent" in r]
        for q, color in (("p50", "tab:blue"), ("p95", "tab:orange")):
            if scraped:
                xs, ys = zip(*((x, p[f"{q}_s"]) for x, p in scraped), strict=True)
                a.plot(xs, ys, "x", ms=10, color=color, label=f"{mode}: {q} as Prometheus saw it")
        b.plot(n, [r["cpu_percent"] for r in runs], "o" + style, color="tab:blue", label=f"CPU, {mode}")
        rss.plot(n, [r["rss_peak_mb"] for r in runs], "s" + style, color="tab:red", label=f"RSS peak, {mode}")
    targets = ((0.6, ":", "1 call: p50"), (1.0, "--", "1 call: p95"), (TARGET_P95, "-", "8 calls: p95"))
    if result["ingress"] == "webrtc":
        targets += ((1.2, "-.", "speech at the customer, 1 call: p50"),)
    for y, ls, what in targets:
        a.axhline(y, color="grey", lw=0.8, ls=ls, label=f"target {y} s ({what})")
    cap = result["capacity"]["streaming"]["calls"]
    if cap:
        a.axvline(cap, color="green", lw=1, ls="--", label=f"capacity: {cap} calls")
    for axes in (a, b):
        axes.set_xticks(sorted({r["sessions"] for r in result["runs"]}))
    a.set_xlabel("concurrent calls")
    a.set_ylabel("seconds (after the words end; partial: after they start)")
    a.set_title("Translated subtitle on the agent's console")
    a.legend(fontsize=8)
    b.set_xlabel("concurrent calls")
    b.set_ylabel("server CPU, % of one core", color="tab:blue")
    rss.set_ylabel("server RSS peak, MB", color="tab:red")
    rss.axhline(1024, color="tab:red", lw=0.8, ls=":", label="target: RSS 1 GB at 8 calls")
    b.set_ylim(bottom=0)
    rss.set_ylim(bottom=0)
    b.set_title("Server CPU and memory")
    b.legend(loc="upper left", fontsize=8)
    rss.legend(loc="lower right", fontsize=8)
    label = f" [{result['label']}]" if result.get("label") else ""
    fig.suptitle(f"VoxGate live subtitles over {INGRESSES[result['ingress']]}{label}, {result['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def main_async(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="voxgate-subtitles-"))
    extra = list(args.serve_arg)
    if args.final_window is not None:
        extra += ["--final-window", str(args.final_window)]
    if args.whisper_workers is not None:
        extra += ["--whisper-workers", str(args.whisper_workers)]
    result: dict = {
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "label": args.label,
        "ingress": args.ingress,
        "utterances_per_run": args.utterances,
        "server_args": serve_args(extra),
        "notes": [
            "es/fr/de customers are announced as 'detect'; their agents' English lines have no translation route "
            "(counted as no_route, not untranslated)",
            "Portuguese lines are all asr/multilingual/test_pt.wav, the one Portuguese recording there is",
        ],
        "runs": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    modes = ["streaming", "baseline"] if args.baseline else ["streaming"]
    for n in args.sessions:
        for mode in modes:
            r = await run(
                n, args.ingress, args.utterances, work, extra, partials=mode == "streaming", prometheus=args.prometheus
            )
            print(json.dumps({k: v for k, v in r.items() if k != "rows"}), flush=True)
            result["runs"].append(r)
            result["capacity"] = {m: capacity(result["runs"], m) for m in modes}
            args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))  # a crash later keeps these
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 6, 8, 10])
    p.add_argument("--utterances", type=int, default=60, help="lines said in each run, at least (6 turns a call)")
    p.add_argument("--baseline", action="store_true", help="also run each N with --no-partials")
    p.add_argument("--ingress", choices=tuple(INGRESSES), default="audiohook", help="how the calls come in")
    p.add_argument(
        "--serve-arg", action="append", default=[], metavar="ARG", help="passed to voxgate serve (repeatable)"
    )
    p.add_argument("--label", default="", help="names this configuration in the JSON and the plot")
    p.add_argument("--final-window", choices=("fit", "30", "10"), help="passed to voxgate serve")
    p.add_argument("--whisper-workers", type=int, help="passed to voxgate serve")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/subtitles.json"))
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="Debian's prometheus scrapes each run's server; its end of speech -> translated subtitle p50/p95 "
        "go into the JSON beside the benchmark's own",
    )
    args = p.parse_args()
    if args.prometheus and PROMETHEUS is None:
        raise SystemExit("--prometheus needs Debian's prometheus: apt-get install -y prometheus")
    result = asyncio.run(main_async(args))
    plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
