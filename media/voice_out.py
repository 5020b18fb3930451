"""What one side of a call hears: the other side's own voice, its translation spoken, or both.

A ``VoiceOut`` is the audio track a WebRTC peer receives. Its *original* is the
other side's microphone (a relay subscription, attached when it arrives); its
*speech* is translated speech queued clip by clip (a sentence each) as it is
synthesised. ``Hearing`` is the listener's choice: the original only, the
translation only, or both with the original ducked while the translation plays,
so the listener keeps the speaker's tone under the words they understand.

Frames leave as s16 mono 48 kHz on one timeline. While the original is attached
its frames set the pace (the translation rides along, mixed in); without one,
queued speech is paced by the track's own 20 ms clock; with neither, no packets
are sent (encoding silence 50 times a second costs a sixth of a core in aiortc),
and a gap advances the RTP clock as discontinuous transmission does.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media.resample import Resampler, resample

RATE = 48_000
FRAME = RATE // 50  # 20 ms
DUCKED = 0.2  # the original's gain under the translation: about -14 dB


class Hearing(StrEnum):
    """What a listener chose to hear of the other side."""

    ORIGINAL = "original"
    TRANSLATED = "translated"
    BOTH = "both"  # the original, ducked while the translation speaks


@dataclass
class _Clip:
    """One synthesised sentence; ``on_start`` runs as its first sample leaves (the first audio the listener gets)."""

    samples: np.ndarray
    on_start: Callable[[], None] | None
    played: int = 0


class VoiceOut(MediaStreamTrack):
    kind = "audio"

    def __init__(self, hearing: Hearing = Hearing.ORIGINAL) -> None:
        super().__init__()
        self.hearing = hearing
        self._source: MediaStreamTrack | None = None
        self._resampler = Resampler(RATE)
        self._speech: deque[_Clip] = deque()
        self._wake = asyncio.Event()
        self._gain = 1.0  # the original's gain at the end of the last frame: changes ramp over a frame, no clicks
        self._clock: float | None = None  # when the next self-paced frame is due
        self._pts = 0
        self._start: float | None = None

    # -- inputs --------------------------------------------------------------------------------------------------

    def attach(self, source: MediaStreamTrack | None) -> None:
        """The other side's microphone (None: it left)."""
        self._source = source
        if source is not None:
            self._wake.set()

    def speak(self, samples: np.ndarray, rate: int, on_start: Callable[[], None] | None = None) -> None:
        """Queue one clip of int16 mono speech at ``rate`` Hz, after whatever is queued."""
        if self.hearing is Hearing.ORIGINAL or not len(samples):
            return
        self._speech.append(_Clip(resample(samples, rate, RATE), on_start))
        self._wake.set()

    def hear(self, hearing: Hearing) -> None:
        """The listener's choice, from the next frame; the original only drops the speech still queued."""
        self.hearing = hearing
        if hearing is Hearing.ORIGINAL:
            self._speech.clear()

    def catch_up(self) -> int:
        """Drop every queued clip but the one playing, so the next speech is heard now rather than after a backlog
        (the subtitles still carry every word); the number of clips dropped."""
        dropped = len(self._speech) - (1 if self._speech and self._speech[0].played else 0)
        while len(self._speech) > 1 or (self._speech and not self._speech[0].played):
            self._speech.pop()
        return dropped

    @property
    def speaking(self) -> bool:
        """Translated speech is playing or queued."""
        return bool(self._speech)

    @property
    def queued_seconds(self) -> float:
        return sum(len(c.samples) - c.played for c in self._speech) / RATE

    # -- output --------------------------------------------------------------------------------------------------

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        original = await self._next_original()
        speech = self._take_speech(len(original))
        return self._stamp(self._mix(original, speech))

    async def _next_original(self) -> np.ndarray:
        """The original's next samples; silence at our own pace while only speech is queued; else wait."""
        while True:
            source = self._source
            if source is not None:
                try:
                    samples = self._resampler(await source.recv())
                except MediaStreamError:
                    if self._source is source:
                        self._source = None
                    continue
                self._clock = None
                if len(samples):
                    return samples
                continue
            if self._speech:
                await self._tick()
                return np.zeros(FRAME, np.int16)
            self._wake.clear()
            await self._wake.wait()

    async def _tick(self) -> None:
        now = time.monotonic()
        if self._clock is None or self._clock < now - 0.1:  # starting, or after a stall: no burst to catch up
            self._clock = now
        await asyncio.sleep(max(0.0, self._clock - now))
        self._clock += FRAME / RATE

    def _take_speech(self, n: int) -> np.ndarray | None:
        """The next ``n`` samples of queued speech (zero-filled past its end); None when none is queued."""
        if not self._speech:
            return None
        out = np.zeros(n, np.int16)
        filled = 0
        while filled < n and self._speech:
            clip = self._speech[0]
            if clip.played == 0 and clip.on_start is not None:
                clip.on_start()
            take = min(n - filled, len(clip.samples) - clip.played)
            out[filled : filled + take] = clip.samples[clip.played : clip.played + take]
            clip.played += take
            filled += take
            if clip.played >= len(clip.samples):
                self._speech.popleft()
        return out

    def _mix(self, original: np.ndarray, speech: np.ndarray | None) -> np.ndarray:
        hearing = self.hearing
        if hearing is Hearing.TRANSLATED:
            gain = 0.0
        elif hearing is Hearing.BOTH and (speech is not None or self._speech):
            gain = DUCKED
        else:
            gain = 1.0
        ramp = np.linspace(self._gain, gain, len(original), dtype=np.float32)
        self._gain = gain
        mixed = original.astype(np.float32) * ramp
        if speech is not None and hearing is not Hearing.ORIGINAL:
            mixed += speech
        return np.clip(mixed, -32768, 32767).astype(np.int16)

    def _stamp(self, samples: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._pts = max(self._pts, int((now - self._start) * RATE) - 2 * frame.samples)  # after a gap
        frame.pts, frame.time_base = self._pts, fractions.Fraction(1, RATE)
        self._pts += frame.samples
        return frame
