"""Pure-Python WebRTC peers (aiortc) that act as a customer's browser or an agent's console."""

from __future__ import annotations

import asyncio
import fractions
import time
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from media.audio_io import read_pcm


class SpeechTrack(MediaStreamTrack):
    """A microphone playing a real recording (looped) at real time, 48 kHz mono 20 ms frames like a browser."""

    kind = "audio"

    def __init__(self, path: Path | np.ndarray, pad_seconds: float = 0.0, follows: SpeechTrack | None = None) -> None:
        """``follows``: another microphone of the same call that started first (the customer's, for the agent's):
        this one then plays its recording from where that one has got to, so both keep one script's time."""
        super().__init__()
        pad = np.zeros(int(pad_seconds * 16000), np.int16)
        pcm = read_pcm(path) if isinstance(path, Path) else path
        self._pcm = np.repeat(np.concatenate([pad, pcm, pad]), 3)  # 16 -> 48 kHz: fine for a test mic
        self.started: float | None = None  # wall time of the first sample: ground truth for latency
        self.loop = True  # False: play once, then silence (a caller who stopped talking, still on the line)
        self._pos = 0
        self._offset = 0  # where in the stream the recording (re)started
        self._start: float | None = None
        self._follows = follows

    def replay(self) -> None:
        """Say the recording again, from its start, now (a caller who answers again)."""
        self._offset = self._pos

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None and self._follows is not None:
            while self._follows.started is None:
                await asyncio.sleep(0.005)
            self._pos = int((time.time() - self._follows.started) * 48000) // 960 * 960
            self._start = time.monotonic() - self._pos / 48000
            self.started = self._follows.started + self._pos / 48000
        if self._start is None:
            self._start, self.started = time.monotonic(), time.time()
        wait = self._start + self._pos / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        idx = np.arange(self._pos, self._pos + 960) - self._offset
        if self.loop:
            samples = self._pcm[idx % len(self._pcm)]
        else:
            samples = np.where(idx < len(self._pcm), self._pcm[np.minimum(idx, len(self._pcm) - 1)], 0)
        frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._pos, fractions.Fraction(1, 48000)
        self._pos += 960
        return frame


class PatternTrack(MediaStreamTrack):
    """A camera showing a moving colour pattern at 640x480, 20 fps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / 20 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        img = np.zeros((480, 640, 3), np.uint8)
        img[:, :, 0] = np.linspace(0, 255, 640, dtype=np.uint8)[None, :]
        img[:, :, 1] = 128
        img[:, (self._n * 8) % 640 : (self._n * 8) % 640 + 40, 2] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = self._n * 4500, fractions.Fraction(1, 90000)
        self._n += 1
        return frame


async def wait_gathered(pc: RTCPeerConnection) -> None:
    while pc.iceGatheringState != "complete":
        await asyncio.sleep(0.01)


class Received:
    """Counts what a peer receives; keeps audio levels (RMS per 20 ms) to compare with the source, and with
    ``keep_audio`` set, the audio itself (mono int16 at the frame's rate) with the wall time each frame arrived."""

    def __init__(self) -> None:
        self.video_frames = 0
        self.audio_frames = 0
        self.audio_levels: list[float] = []
        self.keep_audio = False
        self.audio: list[tuple[float, np.ndarray]] = []
        self.audio_rate = 48000
        self.last_video: av.VideoFrame | None = None
        self.tasks: list[asyncio.Task] = []

    def attach(self, track: MediaStreamTrack) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                self.video_frames += 1
                self.last_video = frame
            else:
                self.audio_frames += 1
                x = frame.to_ndarray().astype(np.float64)
                self.audio_levels.append(float(np.sqrt((x**2).mean())))
                if self.keep_audio:
                    channels = len(frame.layout.channels)
                    self.audio_rate = frame.sample_rate
                    self.audio.append((time.time(), x.reshape(-1, channels).mean(axis=1).astype(np.int16)))

    def audio_since(self, wall: float) -> np.ndarray:
        """The kept audio that arrived from ``wall`` on, joined."""
        parts = [samples for at, samples in self.audio if at >= wall]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def stop(self) -> None:
        for t in self.tasks:
            t.cancel()


async def customer_connect(
    http: aiohttp.ClientSession, url: str, speech: Path | MediaStreamTrack, video: bool = True
) -> tuple[RTCPeerConnection, dict, Received]:
    """Open the link as a customer's browser does: fetch info, offer camera and microphone, apply the answer."""
    token = url.rsplit("/", 1)[1]
    base = url.split("/j/")[0]
    async with http.get(f"{base}/api/join/{token}") as r:
        assert r.status == 200, await r.text()
    pc = RTCPeerConnection()
    received = Received()
    pc.on("track", received.attach)
    pc.addTrack(speech if isinstance(speech, MediaStreamTrack) else SpeechTrack(speech))
    if video:
        pc.addTrack(PatternTrack())
    await pc.setLocalDescription(await pc.createOffer())
    await wait_gathered(pc)
    async with http.post(f"{base}/api/join/{token}/offer", json={"type": "offer", "sdp": pc.localDescription.sdp}) as r:
        body = await r.json()
        if r.status != 200:
            await pc.close()
            return None, {"status": r.status, **body}, received  # type: ignore[return-value]
    await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
    return pc, body, received


async def agent_connect(
    http: aiohttp.ClientSession, base: str, link_id: str, headers: dict, speech: Path | MediaStreamTrack | None = None
) -> tuple[RTCPeerConnection, Received]:
    pc = RTCPeerConnection()
    received = Received()
    pc.on("track", received.attach)
    pc.addTransceiver("video", direction="recvonly")
    if speech is not None:
        pc.addTrack(speech if isinstance(speech, MediaStreamTrack) else SpeechTrack(speech))
    else:
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    await wait_gathered(pc)
    async with http.post(
        f"{base}/api/calls/{link_id}/agent-offer",
        headers=headers,
        json={"type": "offer", "sdp": pc.localDescription.sdp},
    ) as r:
        body = await r.json()
        assert r.status == 200, body
    await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
    return pc, received
