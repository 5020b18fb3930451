"""Any PCM to 16 kHz mono int16, with filter state kept across frames (no clicks at frame edges)."""

from __future__ import annotations

import av
import numpy as np

from media.frames import AudioFrame
from models.base import SAMPLE_RATE

_LAYOUTS = {1: "mono", 2: "stereo"}


class Resampler:
    """Wraps libswresample; rebuilt when the input format changes mid-stream (a renegotiated track)."""

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self._key: tuple[int, int] | None = None
        self._resampler: av.AudioResampler | None = None

    def __call__(self, frame: AudioFrame | av.AudioFrame) -> np.ndarray:
        """Resample one frame; returns int16 mono samples (possibly none, as the filter fills)."""
        src = frame if isinstance(frame, av.AudioFrame) else _to_av(frame)
        key = (src.sample_rate, len(src.layout.channels))
        if key != self._key:
            self._key = key
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        return _collect(self._resampler.resample(src))

    def flush(self) -> np.ndarray:
        """Drain the filter's tail at the end of a stream."""
        return _collect(self._resampler.resample(None)) if self._resampler else np.zeros(0, np.int16)


def resample(pcm: np.ndarray, rate: int, to: int = SAMPLE_RATE) -> np.ndarray:
    """A whole mono int16 recording from ``rate`` to ``to`` Hz, the filter's tail included."""
    r = Resampler(to)
    return np.concatenate([r(AudioFrame.mono(pcm, rate)), r.flush()])


def _to_av(frame: AudioFrame) -> av.AudioFrame:
    layout = _LAYOUTS.get(frame.channels)
    if layout is None:
        # Downmix anything wider than stereo ourselves; swresample needs a named layout.
        data = frame.samples.mean(axis=1, keepdims=True).astype(np.int16)
        layout = "mono"
    else:
        data = frame.samples
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(data).reshape(1, -1), format="s16", layout=layout)
    out.sample_rate = frame.sample_rate
    return out


def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, np.int16)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16, copy=False)
