"""A caller's voice as a phone network delivers it: real recordings band-limited to 8 kHz and μ-law coded.

Shared by the tests and the benchmarks, with the protocol clients beside it
(``peers.audiohook``, ``peers.twilio``), which play these bytes at real time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from media.audio_io import read_pcm
from media.phone import ulaw_encode
from media.resample import resample

RATE = 8000


def narrowband(pcm16k: np.ndarray) -> np.ndarray:
    """16 kHz int16 to 8 kHz int16 through FFmpeg's resampler (its low-pass filter is the phone's band limit)."""
    return resample(pcm16k, 16000, RATE)


def phone_audio(source: Path | np.ndarray, pad_seconds: float = 0.0) -> bytes:
    """A recording (a file, or 16 kHz int16) as 8 kHz μ-law bytes, with ``pad_seconds`` of silence each side."""
    pcm = read_pcm(source) if isinstance(source, Path) else source
    pad = np.zeros(int(pad_seconds * RATE), np.int16)
    return ulaw_encode(np.concatenate([pad, narrowband(pcm), pad]))


def silence(seconds: float) -> bytes:
    return ulaw_encode(np.zeros(int(seconds * RATE), np.int16))
