"""Voice prints and their scores: what voice ID compares, independent of where the audio came from.

A print is the average of embeddings of several enrolment windows (averaging
irons out what one stretch of speech says about the room rather than the
voice). A raw score is the cosine similarity, averaged over encoders when
several are fused. Raw cosines shift from one population to another (a
threshold set on ten speakers let four times its false accepts through on 251
others), so ``Scorer`` normalises them against a ``Cohort`` of other voices
(adaptive symmetric S-norm: how far this trial stands out from the scores
each side gets against the people closest to it who are not them). Thresholds
are calibrated on data, in the units of the scoring used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.base import SAMPLE_RATE, SpeakerEncoder, unit
from models.errors import ModelUnavailable

ENROL_WINDOW_S = 3.0


@dataclass(frozen=True)
class VoicePrint:
    """Per encoder, the unit-norm mean of the enrolment windows' embeddings."""

    vectors: dict[str, np.ndarray]
    speech_seconds: float


def windows(speech: np.ndarray, seconds: float = ENROL_WINDOW_S) -> list[np.ndarray]:
    """Half-overlapping windows of ``seconds``; speech shorter than one window is one window."""
    n = int(seconds * SAMPLE_RATE)
    if len(speech) <= n:
        return [speech]
    starts = range(0, len(speech) - n + 1, n // 2)
    return [speech[s : s + n] for s in starts]


def enrol(encoders: Sequence[SpeakerEncoder], speech: np.ndarray) -> VoicePrint:
    """A print from float32 16 kHz net speech."""
    chunks = windows(speech)
    vectors = {e.name: unit(np.mean([e.embed(c) for c in chunks], axis=0)) for e in encoders}
    return VoicePrint(vectors, len(speech) / SAMPLE_RATE)


def embed(encoders: Sequence[SpeakerEncoder], speech: np.ndarray) -> dict[str, np.ndarray]:
    """A test utterance's embeddings, one per encoder."""
    return {e.name: e.embed(speech) for e in encoders}


class Cohort:
    """Embeddings of voices that are nobody's print: per stored key (``dvector``, ``dvector@phone``, as prints
    keep their vectors), an (n, dim) matrix of unit rows. Built by ``voxgate voiceid cohort`` from recordings of
    people who will never call (public speech), shipped with VoxGate for its encoders."""

    def __init__(self, vectors: dict[str, np.ndarray], about: str = "", top_k: int = 200) -> None:
        self.vectors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in vectors.items()}
        self.about, self.top_k = about, top_k

    @classmethod
    def load(cls, path: str | Path) -> Cohort:
        with np.load(path, allow_pickle=False) as data:
            about = str(data["__about__"]) if "__about__" in data.files else ""
            return cls({k: data[k] for k in data.files if k != "__about__"}, about)

    def save(self, path: str | Path) -> None:
        # float16 halves the file; a cosine between unit vectors moves by less than 1e-3.
        arrays = {k: v.astype(np.float16) for k, v in self.vectors.items()}
        with open(path, "wb") as f:
            np.savez_compressed(f, __about__=np.array(self.about), **arrays)

    def scorer(self, keys: dict[str, str]) -> Scorer:
        """A scorer for vectors named by encoder, whose cohort rows are stored under ``keys[encoder]``; a cohort
        without some of them cannot normalise those scores, and says what to do."""
        if missing := [k for k in keys.values() if k not in self.vectors]:
            raise ModelUnavailable(
                f"the S-norm cohort has no {', '.join(missing)} embeddings: build one for these encoders with "
                "`voxgate voiceid cohort DIR --out FILE` and pass it with --voiceid-cohort (or --cohort), or score "
                "by cosine with thresholds calibrated for it"
            )
        return Scorer({name: self.vectors[key] for name, key in keys.items()}, self.top_k)


class Scorer:
    """Fused S-norm scores against a cohort: one (n, dim) matrix of unit embeddings per encoder."""

    def __init__(self, cohort: dict[str, np.ndarray], top_k: int = 200) -> None:
        self.cohort = cohort
        self.top_k = top_k

    def score(
        self, enrolled: dict[str, np.ndarray], test: dict[str, np.ndarray], exclude: np.ndarray | None = None
    ) -> float:
        """The mean over encoders of 0.5 * (z-score against the print's cohort + against the test's).

        ``exclude`` masks cohort rows that must not count (in evaluation: the two speakers of the trial).
        """
        fused = []
        for name, e in enrolled.items():
            cohort = self.cohort[name]
            if exclude is not None:
                cohort = cohort[~exclude]
            raw = float(e @ test[name])
            fused.append(0.5 * (_z(raw, cohort @ e, self.top_k) + _z(raw, cohort @ test[name], self.top_k)))
        return float(np.mean(fused))


def raw_score(enrolled: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> float:
    return float(np.mean([enrolled[k] @ test[k] for k in enrolled]))


def _z(raw: float, against: np.ndarray, top_k: int) -> float:
    """Adaptive normalisation: against the closest ``top_k`` cohort voices, the ones that matter."""
    top = np.sort(against)[-top_k:]
    return (raw - top.mean()) / (top.std() + 1e-6)
