"""VAD-driven segmentation: cut a frame stream into speech segments with pre-roll and hang-over.

Speech starts when ``start_ms`` of the last ``window_ms`` are voiced (a lone
voiced frame in noise is not speech); after ``pause_ms`` of silence a ``Pause``
says the speaker may have finished (the moment to start a speculative final);
it ends after ``hangover_ms`` of unbroken silence (the endpoint), or is cut at ``max_segment_s`` so a speaker
who never pauses still gets results. Segments carry ``preroll_ms`` of audio
from before the detected start, because VADs trigger a little late and the
recogniser needs the onset of the first word.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from models.base import SAMPLE_RATE, VadEngine


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    window_ms: int = 200
    start_ms: int = 120
    hangover_ms: int = 400
    pause_ms: int = 120
    preroll_ms: int = 300
    max_segment_s: float = 20.0


@dataclass(frozen=True, slots=True)
class Start:
    """Speech began at ``speech_start``; ``audio`` is the pre-roll and the frames that triggered it."""

    speech_start: float
    audio_start: float
    audio: np.ndarray


@dataclass(frozen=True, slots=True)
class Audio:
    """More audio inside the current segment; ``voiced``: the VAD heard speech in it (pauses are not)."""

    audio: np.ndarray
    voiced: bool = True


@dataclass(frozen=True, slots=True)
class Pause:
    """``pause_ms`` of silence since ``speech_end`` inside a segment: it may end here (if the silence lasts to the
    endpoint), or speech may resume and the segment go on."""

    speech_end: float


@dataclass(frozen=True, slots=True)
class End:
    """Speech ended at ``speech_end`` (the last voiced frame); ``forced`` when cut at the length limit.

    ``end_wall``: the wall time at which the end of speech arrived (set by the tap that heard it live).
    """

    speech_start: float
    speech_end: float
    forced: bool = False
    end_wall: float = 0.0


Signal = Start | Audio | Pause | End


@dataclass
class Segmenter:
    vad: VadEngine
    config: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        n = self.vad.frame_samples
        self._frame_s = n / SAMPLE_RATE
        c = self.config
        self._window = deque(maxlen=max(1, round(c.window_ms / 1000 / self._frame_s)))
        self._start_frames = max(1, round(c.start_ms / 1000 / self._frame_s))
        self._hang_frames = max(1, round(c.hangover_ms / 1000 / self._frame_s))
        self._pause_frames = max(1, round(c.pause_ms / 1000 / self._frame_s))
        self._preroll = deque(maxlen=max(1, round(c.preroll_ms / 1000 / self._frame_s)) + self._window.maxlen)
        self._buf = np.zeros(0, np.int16)
        self._samples = 0  # samples classified so far: audio time kept exact, not summed in floats
        self._in_speech = False
        self._speech_start = 0.0
        self._last_voiced_end = 0.0
        self._silent = 0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def time(self) -> float:
        """Audio time of the next VAD frame."""
        return self._samples / SAMPLE_RATE

    def push(self, pcm: np.ndarray) -> list[Signal]:
        """Feed 16 kHz mono int16 of any length; returns what happened, in order."""
        self._buf = np.concatenate([self._buf, pcm]) if len(self._buf) else pcm
        n = self.vad.frame_samples
        out: list[Signal] = []
        while len(self._buf) >= n:
            frame, self._buf = self._buf[:n], self._buf[n:]
            out.extend(self._frame(frame))
        return out

    def flush(self) -> list[Signal]:
        """End of stream: close an open segment at its last voiced frame."""
        if not self._in_speech:
            return []
        tail = self._buf
        self._buf = np.zeros(0, np.int16)
        self._in_speech = False
        return ([Audio(tail)] if len(tail) else []) + [End(self._speech_start, self._last_voiced_end)]

    def _frame(self, frame: np.ndarray) -> list[Signal]:
        t0, voiced = self.time, self.vad.is_speech(frame)
        self._samples += len(frame)
        if not self._in_speech:
            self._preroll.append((t0, frame))
            self._window.append((t0, voiced))
            if sum(v for _, v in self._window) < self._start_frames:
                return []
            first = next(t for t, v in self._window if v)
            self._in_speech, self._speech_start, self._silent = True, first, 0
            self._last_voiced_end = self.time
            keep = [(t, f) for t, f in self._preroll if t >= first - self.config.preroll_ms / 1000 - 1e-9]
            self._preroll.clear()
            self._window.clear()
            return [Start(first, keep[0][0], np.concatenate([f for _, f in keep]))]
        out: list[Signal] = [Audio(frame, voiced)]
        if voiced:
            self._silent = 0
            self._last_voiced_end = self.time
        else:
            self._silent += 1
        if self._silent >= self._hang_frames:
            self._in_speech = False
            out.append(End(self._speech_start, self._last_voiced_end))
        elif self._silent == self._pause_frames:
            out.append(Pause(self._last_voiced_end))
        elif self.time - self._speech_start >= self.config.max_segment_s - 1e-9:
            # Cut without losing audio: the next segment starts straight away if speech continues.
            self._in_speech = False
            out.append(End(self._speech_start, self.time, forced=True))
        return out
