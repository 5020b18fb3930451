"""The WebRTC transport of one call: the customer's peer connection, the agent console's, and the media between.

The customer's camera and microphone reach the agent through aiortc's
``MediaRelay`` (one decode, many readers). What each side hears is a
``VoiceOut`` (``heard_by``): the other side's voice, with its translation
spoken into it when the listener chose to hear it. The customer's is negotiated
at answer time and sends nothing until the agent connects. It keeps the latest
video frame (for snapshots) and ends itself when the customer's media stops
(tab closed, network gone) or their connection fails. Each side's decoded
audio goes to its leg's listeners (the speech taps), on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

import aiortc.rtp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from media.transport import watchdog
from media.voice_out import Hearing, VoiceOut

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 32 * 1024


class SdpError(ValueError):
    """A session description we cannot use; the message is safe to show the sender."""


def parse_offer(body: object) -> RTCSessionDescription:
    if not isinstance(body, dict) or not isinstance(body.get("sdp"), str) or body.get("type") != "offer":
        raise SdpError('expected JSON {"type": "offer", "sdp": "v=0..."}')
    sdp = body["sdp"]
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise SdpError(f"SDP offer is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.startswith("v=0") or "\nm=" not in sdp:
        raise SdpError("malformed SDP offer: no version line or no media section")
    return RTCSessionDescription(sdp=sdp, type="offer")


async def _apply_offer(pc: RTCPeerConnection, offer: RTCSessionDescription) -> None:
    try:
        await pc.setRemoteDescription(offer)
    except Exception as e:  # aiortc's SDP parser raises a variety of errors on garbage
        raise SdpError(f"malformed SDP offer: {type(e).__name__}: {e}") from None


def audio_level_dbov(frame: av.AudioFrame) -> int:
    """RFC 6465 (appendix A) audio level of a frame, vectorised.

    aiortc computes this for every outgoing audio packet with a per-sample Python loop (1-2 ms a
    packet, 50 packets a second per sender); this gives the same integers in microseconds.
    """
    samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).astype(np.float64)
    # Like aiortc: every sample of the packed plane, divided by the samples per channel.
    rms = math.sqrt(float(np.dot(samples, samples)) / (frame.samples * 32767.0 * 32767.0))
    return round(min(max(20 * math.log10(rms), -127), 0)) if rms > 0 else -127


AIORTC_AUDIO_LEVEL = aiortc.rtp.compute_audio_level_dbov  # kept: the test holds ours to its answers


def use_fast_audio_level() -> None:
    """Make aiortc's senders use ``audio_level_dbov``. Process-wide (aiortc looks the function up in its
    ``rtp`` module on every packet), so the server's composition root calls it once, explicitly."""
    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov


AudioListener = Callable[[av.AudioFrame], None]


class CallMedia:
    narrowband = False  # Opus in the browser: wideband speech

    def __init__(
        self,
        call_id: str,
        ice_servers: list[RTCIceServer],
        on_end: Callable[[str], Awaitable[None]],
        media_timeout: float = 8.0,
    ) -> None:
        self.call_id = call_id
        self._config = RTCConfiguration(iceServers=ice_servers)
        self._on_end = on_end
        self.media_timeout = media_timeout
        self.relay = MediaRelay()
        self.customer_pc = RTCPeerConnection(self._config)
        self.agent_pc: RTCPeerConnection | None = None
        # What each side hears: the other's voice, and its translation spoken. A WHIP sender hears nothing.
        self.heard_by = {"customer": VoiceOut(Hearing.BOTH), "agent": VoiceOut(Hearing.ORIGINAL)}
        self.customer_audio: MediaStreamTrack | None = None
        self.customer_video: MediaStreamTrack | None = None
        self.latest_frame: av.VideoFrame | None = None
        self.video_frames = self.audio_frames = 0
        self.created = time.monotonic()
        self.media_started: float | None = None
        self._last_media = time.monotonic()
        self._tasks: list[asyncio.Task] = []
        self._ended = False
        # Who hears each side (the legs' speech taps): called with every decoded frame, on the event loop.
        self.customer_listeners: list[AudioListener] = []
        self.agent_listeners: list[AudioListener] = []
        self.on_agent_left: Callable[[], None] | None = None  # the console's connection failed or closed

    # -- the customer ------------------------------------------------------------------------------------------

    async def receive_customer_offer(self, offer: RTCSessionDescription, *, ingest: bool = False) -> None:
        """Apply the customer's offer (raises SdpError); nothing is answered or started yet.

        ``ingest``: a sender that only sends (WHIP): nothing goes back to it, and a second audio track it sends
        is the agent's side of the call (a gateway streams both legs of a phone call).
        """
        pc = self.customer_pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self.customer_video is None:
                self.customer_video = track
                self._spawn(self._watch_video(self.relay.subscribe(track, buffered=False)))
            elif track.kind == "audio" and self.customer_audio is None:
                self.customer_audio = track
                self._spawn(self._read_audio(self.relay.subscribe(track), self.customer_listeners, watched=True))
                if "agent" in self.heard_by:
                    self.heard_by["agent"].attach(self.relay.subscribe(track, buffered=False))
            elif track.kind == "audio" and ingest:
                self._spawn(self._read_audio(track, self.agent_listeners))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.end(f"customer connection {pc.connectionState}")

        if ingest:
            self.heard_by = {}
        await _apply_offer(pc, offer)
        if not ingest:
            pc.addTrack(self.heard_by["customer"])

    async def answer_customer(self) -> RTCSessionDescription:
        """Answer with every ICE candidate in it (aiortc does not trickle) and start watching the media."""
        await self.customer_pc.setLocalDescription(await self.customer_pc.createAnswer())
        self._spawn(watchdog(lambda: self._last_media, self.media_timeout, self.end, "customer media stopped"))
        return self.customer_pc.localDescription

    async def _watch_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.latest_frame = frame
            self.video_frames += 1
            self._media()

    async def _read_audio(self, track: MediaStreamTrack, listeners: list[AudioListener], watched: bool = False) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if watched:
                self.audio_frames += 1
                self._media()
            for listener in listeners:
                try:
                    listener(frame)
                except Exception:  # a failing listener must not stop the call's audio
                    log.exception("call %s: an audio listener failed", self.call_id)

    def _media(self) -> None:
        self._last_media = time.monotonic()
        if self.media_started is None:
            self.media_started = self._last_media

    # -- the agent ---------------------------------------------------------------------------------------------

    async def accept_agent(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """(Re)connect the agent console: it receives the customer (as the agent chose to hear them) and sends its
        microphone."""
        if self.agent_pc is not None:
            await self.agent_pc.close()
        pc = self.agent_pc = RTCPeerConnection(self._config)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and (voice := self.heard_by.get("customer")) is not None:
                voice.attach(self.relay.subscribe(track, buffered=False))
                self._spawn(self._read_audio(self.relay.subscribe(track), self.agent_listeners))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and pc is self.agent_pc and self.on_agent_left:
                self.on_agent_left()

        await _apply_offer(pc, offer)
        if self.customer_video is not None:
            pc.addTrack(self.relay.subscribe(self.customer_video, buffered=False))
        if (voice := self.heard_by.get("agent")) is not None:
            pc.addTrack(voice)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription

    # -- the end -----------------------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    async def end(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        for voice in self.heard_by.values():
            voice.attach(None)
        for pc in (self.customer_pc, self.agent_pc):
            if pc is not None:
                await pc.close()
        await self._on_end(reason)

    async def discard(self) -> None:
        """Drop media that never started (its offer was refused, another device won the link): no end event, the
        link untouched; its readers are cancelled and awaited, never left pending for the collector."""
        self._ended = True
        for t in self._tasks:
            t.cancel()
        await self.customer_pc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))
