"""What one side hears: the original voice, the translation spoken, or both with the original ducked."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from media.voice_out import DUCKED, FRAME, RATE, Hearing, VoiceOut


class Tone(MediaStreamTrack):
    """A microphone holding one steady level (a constant signal makes gains exact to read), at real time."""

    kind = "audio"

    def __init__(self, level: int = 8000) -> None:
        super().__init__()
        self.level, self._n, self._start = level, 0, None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - time.monotonic()))
        samples = np.full((1, FRAME), self.level, np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._n * FRAME, fractions.Fraction(1, RATE)
        self._n += 1
        return frame


def clip(seconds: float, level: int = 3000) -> np.ndarray:
    return np.full(int(seconds * RATE), level, np.int16)


async def frames(track: VoiceOut, n: int) -> list[np.ndarray]:
    return [(await track.recv()).to_ndarray().reshape(-1) for _ in range(n)]


def level(samples: np.ndarray) -> float:
    return float(np.median(samples))


async def test_the_original_only_ignores_translated_speech():
    out = VoiceOut(Hearing.ORIGINAL)
    out.attach(Tone(8000))
    out.speak(clip(0.2), RATE)
    assert not out.speaking  # nothing is queued for a listener who hears the original only
    heard = await frames(out, 10)
    assert all(abs(level(f) - 8000) <= 1 for f in heard[2:])


async def test_translated_mutes_the_original_and_both_ducks_it_under_the_speech():
    out = VoiceOut(Hearing.TRANSLATED)
    out.attach(Tone(8000))
    started = []
    out.speak(clip(0.1), RATE, on_start=lambda: started.append(time.monotonic()))
    heard = await frames(out, 12)
    assert started and abs(level(heard[1]) - 3000) <= 1  # the speech alone, the original muted
    assert level(heard[-1]) == 0  # speech over: silence, not the original
    assert not out.speaking

    out.hear(Hearing.BOTH)
    out.speak(clip(0.2), RATE)
    heard = await frames(out, 20)
    assert abs(level(heard[3]) - (8000 * DUCKED + 3000)) <= 2  # the original ducked under the speech
    assert abs(level(heard[-1]) - 8000) <= 1  # speech over: the original back at full level
    ramp = heard[0]  # from muted to ducked: the gain ramps across the frame, no click
    assert ramp[0] == 3000 and abs(ramp[-1] - 4600) <= 2 and 3000 < ramp[FRAME // 2] < 4600


async def test_speech_without_an_original_is_paced_at_real_time_and_idle_sends_nothing():
    out = VoiceOut(Hearing.BOTH)
    t0 = time.monotonic()
    out.speak(clip(0.3), 24000)  # any rate: resampled to the track's
    heard = await frames(out, 15)
    assert time.monotonic() - t0 >= 0.25  # 20 ms a frame, not as fast as it can
    assert sum(len(f) for f in heard) == 15 * FRAME
    assert abs(level(np.concatenate(heard)) - 3000) <= 1
    while out.speaking:  # the resampler's tail
        await out.recv()
    with pytest.raises(TimeoutError):  # nothing queued, no original: no packets (discontinuous transmission)
        await asyncio.wait_for(out.recv(), 0.2)


async def test_choosing_the_original_mid_line_drops_what_is_still_queued():
    out = VoiceOut(Hearing.TRANSLATED)
    out.speak(clip(2.0), RATE)
    await frames(out, 3)
    assert out.queued_seconds > 1.5
    out.hear(Hearing.ORIGINAL)
    assert not out.speaking and out.queued_seconds == 0


async def test_catching_up_keeps_the_clip_playing_and_drops_the_queue():
    out = VoiceOut(Hearing.TRANSLATED)
    for _ in range(3):
        out.speak(clip(1.0), RATE)
    await frames(out, 2)  # the first clip is playing
    assert out.catch_up() == 2
    assert 0.9 < out.queued_seconds < 1.0
    assert VoiceOut(Hearing.TRANSLATED).catch_up() == 0
