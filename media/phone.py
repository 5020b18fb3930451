"""A phone call's audio as a contact-centre platform streams it: G.711 μ-law at 8 kHz, one stream per leg.

The ingress protocols (``media.audiohook``, ``media.twilio``) parse their
messages and hand each leg's decoded samples to a ``PhoneMedia``, the
transport a ``Call`` listens to. It ends the call once: when the platform
closes the stream, when the server hangs up, or when a stream that should be
sending has been silent past the timeout (a platform that vanished sends
nothing more, not even a close).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from media.frames import AudioFrame
from media.transport import AudioListener, watchdog

log = logging.getLogger(__name__)

RATE = 8000
LEGS = ("customer", "agent")


# -- G.711 μ-law (ITU-T G.711, the North American and Japanese telephone network's 8-bit code) ----------------


def _decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


_ULAW = _decode_table()
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes to int16 samples."""
    return _ULAW[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples to μ-law bytes, as a phone network codes a caller's voice (the 14-bit reference coder)."""
    x = np.asarray(pcm, dtype=np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), 8159) + 0x21
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude)
    code = np.where(segment < 8, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F), 0x7F)  # 8: clipped
    return (code ^ mask).astype(np.uint8).tobytes()


# -- the call ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhoneCall:
    """What the platform tells us about a call as its stream opens.

    ``agent``: the VoxGate agent's name, or ``queue`` when the platform knows only the queue (the server maps
    queues to agents). ``language``: the caller's, as a code such as ``es`` (a locale such as ``es-ES`` is
    cut to it); None: the agent's language.
    """

    channel: str  # audiohook, twilio, whip
    external_id: str | None = None  # the platform's id of the call (conversation id, call SID)
    caller: str | None = None  # the calling number (ANI)
    agent: str | None = None
    queue: str | None = None
    language: str | None = None


class PhoneMedia:
    """The transport of a call heard through a platform's stream: ``hear`` feeds a leg, ``end`` hangs up.

    ``on_end(reason)`` runs once when the call ends, whichever side ends it; ``hangup(reason)`` closes the
    platform's stream when the server is the one ending the call.
    """

    narrowband = True
    latest_frame = None  # no video on a phone call
    heard_by: dict = {}  # nothing is played back: the platform carries both voices

    def __init__(
        self,
        call_id: str,
        on_end: Callable[[str], Awaitable[None]],
        *,
        hangup: Callable[[str], Awaitable[None]] | None = None,
        media_timeout: float = 8.0,
    ) -> None:
        self.call_id = call_id
        self._on_end, self._hangup = on_end, hangup
        self.media_timeout = media_timeout
        self.customer_listeners: list[AudioListener] = []
        self.agent_listeners: list[AudioListener] = []
        self.paused = False  # the platform paused the audio (hold, a secure pause): silence is expected
        self.heard = {leg: 0 for leg in LEGS}  # samples per leg
        self._last = time.monotonic()
        self._ended = False
        self._watchdog: asyncio.Task | None = None

    def start(self) -> None:
        """Watch the stream: one that stops sending ends the call (a paused one needs only its pings)."""
        stopped = "the platform's stream stopped sending"
        self._watchdog = asyncio.get_running_loop().create_task(
            watchdog(lambda: self._last, self.media_timeout, self.end, stopped)
        )

    def alive(self) -> None:
        """Any sign of life from the platform (a ping, a pause)."""
        self._last = time.monotonic()

    def hear(self, leg: str, pcm: np.ndarray) -> None:
        """One stretch of a leg's audio, int16 at 8 kHz, to that leg's listeners (the speech taps)."""
        if self._ended:
            return
        self.alive()
        frame = AudioFrame.mono(pcm, RATE, self.heard[leg] / RATE)
        self.heard[leg] += len(pcm)
        for listener in self.customer_listeners if leg == "customer" else self.agent_listeners:
            try:
                listener(frame)
            except Exception:  # a failing listener must not stop the call's audio
                log.exception("call %s: a %s audio listener failed", self.call_id, leg)

    @property
    def ended(self) -> bool:
        return self._ended

    async def end(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self._hangup is not None:
            try:
                await self._hangup(reason)
            except Exception:  # the platform's socket may be gone already
                log.debug("call %s: hang-up of the stream failed", self.call_id, exc_info=True)
        await self._on_end(reason)
