"""An "audio bomb" (a small FLAC holding hours of silence) is refused by its decoded length, while it decodes, in
little time and memory: the headers' declared length is a shortcut, never trusted alone."""

from __future__ import annotations

import re
import time
from pathlib import Path

import av
import numpy as np
import pytest

from media.audio_io import AudioTooLong, read_pcm
from models.engines import Engines
from models.speaker import DVectorEncoder
from models.vad import WebRtcVad
from signaling.voiceprints import MAX_RECORDING_SECONDS
from tests.server import TestServer

BOMB_SECONDS, BOMB_RATE = 2 * 3600, 8000  # 12x the cap; ~20 kB of FLAC, written in ~0.6 s on a 2-core machine
SHORT = "voiceid/librispeech-test-other/1688/1688-142285-0002.flac"  # the folder's shortest: ~3 s
TOO_LONG = "the recording is longer than 10 min; send at most 10 min of audio"
# Generous for a shared 2-core CI machine: the capped decode takes under 1 s here; uncapped, many seconds.
TIME_BOUND_S, MEMORY_BOUND_MIB = 5.0, 100.0


def silent_flac(path: Path, seconds: int = BOMB_SECONDS, rate: int = BOMB_RATE) -> Path:
    """Hours of silence in a few kB: FLAC's largest blocks keep the encoding well under a second."""
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono", options={"frame_size": "65535"})
        stream.format = "s16"
        chunk = np.zeros((1, rate * 60), np.int16)
        for minute in range(seconds // 60):
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, minute * chunk.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def declaring(path: Path, samples: int) -> Path:
    """The same FLAC with its STREAMINFO claiming ``samples`` in all (0: "unknown"): a header that lies."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first, at byte 8; total samples at 21-25
    data[21] = (data[21] & 0xF0) | (samples >> 32)
    data[22:26] = (samples & 0xFFFFFFFF).to_bytes(4, "big")
    out = path.with_name(f"{path.stem}-declares-{samples}.flac")
    out.write_bytes(data)
    return out


def reset_peak_rss() -> float:
    """Reset the process's peak RSS to its current RSS (Linux), so that an earlier test's higher peak cannot hide
    this one's (ru_maxrss never goes down); the new baseline in MiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return peak_rss()


def peak_rss() -> float:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())[1]) / 1024


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """Honest headers, an unknown length, and a header claiming one minute: all hold 2 h."""
    bomb = silent_flac(tmp_path_factory.mktemp("bombs") / "bomb.flac")
    return {"honest": bomb, "unknown": declaring(bomb, 0), "lying": declaring(bomb, BOMB_RATE * 60)}


def test_read_pcm_refuses_decoded_audio_past_the_cap_whatever_the_header_says(bombs, data):
    for declared, bomb in zip((BOMB_SECONDS, None, 60), bombs.values(), strict=True):
        with av.open(str(bomb)) as container:
            assert container.duration == (declared and declared * av.time_base)  # what each header claims
        with pytest.raises(AudioTooLong, match=r"is longer than 10 min; send at most 10 min of audio$"):
            read_pcm(bomb, max_seconds=MAX_RECORDING_SECONDS)
    short = data / SHORT
    assert np.array_equal(read_pcm(short, max_seconds=MAX_RECORDING_SECONDS), read_pcm(short))
    # A real 11 s recording whose honest header is under twice the cap: refused by the count, not the header.
    with pytest.raises(AudioTooLong, match=r"longer than 8 s; send at most 8 s of audio$"):
        read_pcm(data / "asr/jfk.flac", max_seconds=8)


@pytest.fixture
async def server(tmp_path, whisper):
    engines = Engines(vad=WebRtcVad, asr=whisper, speaker=DVectorEncoder())
    s = await TestServer(tmp_path / "data", engines).start()
    s.headers = {"Authorization": f"Bearer {s.add_agent(role='supervisor')}"}
    yield s
    await s.stop()


async def test_an_audio_bomb_recording_gets_413_quickly_in_bounded_memory(server, http, bombs, data):
    base = f"{server.base}/api/voiceprints/C-1"
    async with http.post(f"{base}/consent", json={"wording": "I agree to a voice print."}, headers=server.headers) as r:
        assert r.status == 201
    for header, bomb in bombs.items():
        body = bomb.read_bytes()
        baseline, started = reset_peak_rss(), time.perf_counter()
        async with http.post(f"{base}/recordings", data=body, headers=server.headers) as r:
            answer = await r.json()
        took, rise = time.perf_counter() - started, peak_rss() - baseline
        assert took < TIME_BOUND_S and rise < MEMORY_BOUND_MIB, f"{header}: {took:.1f} s, peak RSS +{rise:.0f} MiB"
        assert (r.status, answer) == (413, {"error": TOO_LONG}), header
    assert server.voice_id.status("C-1")["enrolment"]["speech_seconds"] == 0
    # A real recording still goes in.
    async with http.post(f"{base}/recordings", data=(data / SHORT).read_bytes(), headers=server.headers) as r:
        assert r.status == 200 and (await r.json())["speech_seconds"] > 0


async def measure(
    unknown_length: bool = False, path: Path = Path("/tmp/voxgate-bomb-4h-16k.flac")
) -> tuple[int, float, float]:
    """By hand, the finding's exact case: a 4 h, 16 kHz FLAC of silence (~2.7 MB, written once, ~4 s) posted as a
    voice-print recording, as written or with its length unknown (so the count, not the header, refuses it).
    Answers (status, seconds to the answer, peak RSS rise in MiB). Run: .venv/bin/python -m tests.test_audio_bomb"""
    import tempfile

    import aiohttp

    from models.asr_whisper import WhisperEngine

    if not path.exists():
        with av.open(str(path), "w", format="flac") as out:  # default FLAC blocks, as a real encoder writes them
            stream = out.add_stream("flac", rate=16000, layout="mono")
            stream.format = "s16"
            chunk = np.zeros((1, 16000 * 10), np.int16)
            for i in range(4 * 360):
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                frame.sample_rate, frame.pts = 16000, i * chunk.shape[1]
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    engines = Engines(vad=WebRtcVad, asr=WhisperEngine(beam_size=1), speaker=DVectorEncoder())
    with tempfile.TemporaryDirectory() as tmp:
        server = await TestServer(Path(tmp) / "data", engines).start()
        headers = {"Authorization": f"Bearer {server.add_agent(role='supervisor')}"}
        base = f"{server.base}/api/voiceprints/C-1"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/consent", json={"wording": "I agree to a voice print."}, headers=headers):
                    pass
                body = (declaring(path, 0) if unknown_length else path).read_bytes()
                baseline, started = reset_peak_rss(), time.perf_counter()
                async with http.post(f"{base}/recordings", data=body, headers=headers) as r:
                    print(r.status, await r.text())
                took, rise = time.perf_counter() - started, peak_rss() - baseline
        finally:
            await server.stop()
    header = "length unknown" if unknown_length else "honest header"
    print(f"{path} ({len(body) / 1e6:.1f} MB, {header}): HTTP {r.status} in {took:.2f} s, peak RSS +{rise:.0f} MiB")
    return r.status, took, rise


if __name__ == "__main__":
    import asyncio

    asyncio.run(measure())
    asyncio.run(measure(unknown_length=True))
