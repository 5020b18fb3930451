"""Typed events out of the pipeline: what happened, on which leg, for which stretch of audio, and when.

Every event carries its audio span (seconds into the leg's stream) and the wall
clock time it was produced (``time.time()``), so the same objects that feed the
console, the transcript store and the benchmarks measure the latency a user sees.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    leg: str
    segment: int
    audio_start: float
    audio_end: float
    wall: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 3) if k.startswith("audio") else round(v, 6)
        return {"type": self.type, **d}


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted(Event):
    type: ClassVar[str] = "speech_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechEnded(Event):
    """``forced``: cut at the segment length limit rather than at a pause."""

    type: ClassVar[str] = "speech_ended"
    forced: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PartialTranscript(Event):
    type: ClassVar[str] = "partial"
    text: str
    language: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalTranscript(Event):
    """``speech_end_wall``: when the end of the speech arrived; ``wall``: when ASR finished."""

    type: ClassVar[str] = "final"
    text: str
    language: str
    speech_end_wall: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LanguageChanged(Event):
    """The leg's spoken language, as the pipeline now decodes and translates it: sent when a detected leader changes
    or settles, just before the final that caused it (its segment and span), or when someone sets it.

    ``confidence``: the leader's share of the detection votes (None when set by hand); ``settled``: no more
    detection, the language stays; ``by``: "detected" or "agent". Set by hand, ``segment`` is the last segment heard
    and the audio span is the leg's audio position at that moment (zero-length)."""

    type: ClassVar[str] = "language"
    language: str
    confidence: float | None
    settled: bool
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Translation(Event):
    """A final's translation; ``wall`` is when MT finished, ``asr_wall`` when its transcript did. ``tier``: the
    route's quality tier ("neural", "rule-based", "speech"), which the console shows beside the line."""

    type: ClassVar[str] = "translation"
    text: str
    source_text: str
    source_language: str
    target_language: str
    engine: str
    tier: str
    speech_end_wall: float
    asr_wall: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakerEmbedding(Event):
    """A voice embedding of one segment. Biometric data: ``to_dict`` leaves the vector out."""

    type: ClassVar[str] = "speaker_embedding"
    vector: np.ndarray = field(repr=False, compare=False)
    encoder: str
    speech_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "leg": self.leg,
            "segment": self.segment,
            "audio_start": round(self.audio_start, 3),
            "audio_end": round(self.audio_end, 3),
            "wall": round(self.wall, 6),
            "encoder": self.encoder,
            "dim": int(self.vector.shape[0]),
            "speech_seconds": round(self.speech_seconds, 3),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineError(Event):
    """A stage failed for one segment (the pipeline goes on); ``message`` is for people."""

    type: ClassVar[str] = "error"
    message: str
