"""One leg's ear: resample once, run the VAD once, and hand the same speech segments to every listener.

A call's leg feeds its decoded frames here; subtitles (ASR) and voice ID listen
to the segments it cuts, so neither resamples nor classifies the audio again.
Listeners are called on the event loop with each batch of signals and must
stay cheap: they queue model work elsewhere.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import av

from media.frames import AudioFrame
from media.resample import Resampler
from media.segmenter import End, Segmenter, SegmenterConfig, Signal
from models.base import VadEngine

log = logging.getLogger(__name__)

Listener = Callable[[list[Signal]], None]


class SpeechTap:
    def __init__(self, vad: VadEngine, config: SegmenterConfig = SegmenterConfig(), name: str = "leg") -> None:
        self.name = name
        self._resample = Resampler()
        self._segmenter = Segmenter(vad, config)
        self._listeners: list[Listener] = []
        self.closed = False

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def time(self) -> float:
        """Audio time heard so far on this leg, in seconds."""
        return self._segmenter.time

    def feed(self, frame: AudioFrame | av.AudioFrame) -> None:
        """One frame of any rate and channel count; cheap (microseconds), never blocks on models."""
        if self.closed:
            raise RuntimeError(f"the {self.name} tap is closed")
        pcm = self._resample(frame)
        if len(pcm):
            self._dispatch(self._segmenter.push(pcm))

    def close(self) -> None:
        """End of stream: the filter's tail and any open segment go out, once."""
        if self.closed:
            return
        self.closed = True
        tail = self._resample.flush()
        self._dispatch((self._segmenter.push(tail) if len(tail) else []) + self._segmenter.flush())

    def _dispatch(self, signals: list[Signal]) -> None:
        if not signals:
            return
        now, heard = time.time(), self._segmenter.time
        # The end of speech arrived (hang-over) seconds before the VAD could know it was the end.
        signals = [
            dataclasses.replace(s, end_wall=now - max(0.0, heard - s.speech_end)) if isinstance(s, End) else s
            for s in signals
        ]
        for listener in self._listeners:
            try:
                listener(signals)
            except Exception:  # one failing listener must not deafen the others
                log.exception("%s tap: a listener failed", self.name)
