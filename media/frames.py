"""The audio frame that moves through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """Interleaved int16 PCM, shape (samples, channels), starting ``pts`` seconds into its stream."""

    samples: np.ndarray
    sample_rate: int
    pts: float = 0.0

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 2:
            raise ValueError("AudioFrame.samples must be int16 with shape (samples, channels)")
        if not 1 <= self.sample_rate <= 384_000:
            raise ValueError(f"implausible sample rate {self.sample_rate}")

    @property
    def channels(self) -> int:
        return self.samples.shape[1]

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @classmethod
    def mono(cls, pcm: np.ndarray, sample_rate: int, pts: float = 0.0) -> AudioFrame:
        return cls(np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1, 1), sample_rate, pts)
