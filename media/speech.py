"""Net speech: the voiced part of a recording or a live stream, as voice ID counts it ("12 of 20 s")."""

from __future__ import annotations

from collections.abc import Iterable

import av
import numpy as np

from media.frames import AudioFrame
from media.resample import Resampler
from media.segmenter import Audio, End, Segmenter, SegmenterConfig, Signal, Start
from models.base import SAMPLE_RATE, VadEngine

# Short pre-roll and hang-over: word edges survive, pauses do not count as speech.
NET_SPEECH = SegmenterConfig(preroll_ms=100, hangover_ms=200)


class NetSpeech:
    """A stream's speech as it arrives, without the pauses between segments (16 kHz mono int16).

    ``take`` reads the segments of any tap (a call leg's, cut for subtitles with a longer pre-roll and
    hang-over) and keeps only ``NET_SPEECH``'s share of their edges, so voice ID counts the same seconds
    however the segments were cut. Given a VAD, it also cuts a stream of its own (``push``, ``push_frame``).
    """

    def __init__(self, vad: VadEngine | None = None, config: SegmenterConfig = NET_SPEECH) -> None:
        self._segmenter = Segmenter(vad, config) if vad is not None else None
        self._resample = Resampler()
        self._preroll = NET_SPEECH.preroll_ms * SAMPLE_RATE // 1000
        self._trailing = NET_SPEECH.hangover_ms * SAMPLE_RATE // 1000
        self._held: list[np.ndarray] = []  # a pause in progress: speech only if more speech follows

    def take(self, signals: Iterable[Signal]) -> np.ndarray:
        """The net speech these signals complete."""
        out: list[np.ndarray] = []
        for s in signals:
            if isinstance(s, Start):
                skip = round((s.speech_start - s.audio_start) * SAMPLE_RATE) - self._preroll
                out.append(s.audio[max(0, skip) :])
                self._held = []
            elif isinstance(s, Audio) and s.voiced:
                out += self._held
                out.append(s.audio)
                self._held = []
            elif isinstance(s, Audio):
                self._held.append(s.audio)
            elif isinstance(s, End):
                kept = 0
                for chunk in self._held:  # the hang-over: the tail of the last word, up to NET_SPEECH's
                    if kept >= self._trailing:
                        break
                    out.append(chunk)
                    kept += len(chunk)
                self._held = []
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Feed 16 kHz mono int16 to this stream's own segmenter; returns the speech it completes."""
        return self.take(self._own().push(pcm))

    def push_frame(self, frame: AudioFrame | av.AudioFrame) -> np.ndarray:
        """Like ``push``, for a frame at any rate and channel count (a WebRTC frame, say)."""
        return self.push(self._resample(frame))

    def flush(self) -> np.ndarray:
        """End of stream: the rest of a segment still open."""
        return self.take(self._own().flush())

    def _own(self) -> Segmenter:
        if self._segmenter is None:
            raise RuntimeError("this NetSpeech reads a tap's signals (take); give it a VAD to cut a stream itself")
        return self._segmenter


def net_speech(pcm: np.ndarray, vad: VadEngine, config: SegmenterConfig = NET_SPEECH) -> np.ndarray:
    """The speech of a whole 16 kHz mono int16 recording, concatenated without its pauses."""
    tap = NetSpeech(vad, config)
    return np.concatenate([tap.push(pcm), tap.flush()])
