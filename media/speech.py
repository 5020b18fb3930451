"""Net speech: the voiced part of a recording, as voice ID counts it ("12 of 20 s")."""

from __future__ import annotations

import numpy as np

from media.segmenter import Audio, Segmenter, SegmenterConfig, Start
from models.base import VadEngine


def net_speech(pcm: np.ndarray, vad: VadEngine, config: SegmenterConfig | None = None) -> np.ndarray:
    """The speech segments of 16 kHz mono int16 audio, concatenated, without the pauses between them.

    Segments keep a short pre-roll and hang-over, so word edges survive; long silences do not count.
    """
    seg = Segmenter(vad, config or SegmenterConfig(preroll_ms=100, hangover_ms=200))
    out: list[np.ndarray] = []
    for signal in seg.push(pcm) + seg.flush():
        if isinstance(signal, Start | Audio):
            out.append(signal.audio)
    return np.concatenate(out) if out else np.zeros(0, np.int16)
