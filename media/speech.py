"""Net speech: the voiced part of a recording or a live stream, as voice ID counts it ("12 of 20 s")."""

from __future__ import annotations

import av
import numpy as np

from media.frames import AudioFrame
from media.resample import Resampler
from media.segmenter import Audio, Segmenter, SegmenterConfig, Start
from models.base import VadEngine

# Short pre-roll and hang-over: word edges survive, pauses do not count as speech.
NET_SPEECH = SegmenterConfig(preroll_ms=100, hangover_ms=200)


class NetSpeech:
    """A stream's speech segments as they arrive, without the pauses between them (16 kHz mono int16).

    One per stream: the VAD and the resampler keep state across frames.
    """

    def __init__(self, vad: VadEngine, config: SegmenterConfig = NET_SPEECH) -> None:
        self._segmenter = Segmenter(vad, config)
        self._resample = Resampler()

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Feed 16 kHz mono int16; returns the speech it completes (often none, a frame at a time)."""
        return _voiced(self._segmenter.push(pcm))

    def push_frame(self, frame: AudioFrame | av.AudioFrame) -> np.ndarray:
        """Like ``push``, for a frame at any rate and channel count (a WebRTC frame, say)."""
        return self.push(self._resample(frame))

    def flush(self) -> np.ndarray:
        """End of stream: the rest of a segment still open."""
        return _voiced(self._segmenter.flush())


def net_speech(pcm: np.ndarray, vad: VadEngine, config: SegmenterConfig = NET_SPEECH) -> np.ndarray:
    """The speech of a whole 16 kHz mono int16 recording, concatenated without its pauses."""
    tap = NetSpeech(vad, config)
    return np.concatenate([tap.push(pcm), tap.flush()])


def _voiced(signals) -> np.ndarray:
    parts = [s.audio for s in signals if isinstance(s, Start | Audio)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)
