"""Enrolment quality: is a recording fit to make a voice print from?

Two things spoil a print. Noise: the print learns the room, and the customer's
clean calls then score low. A second voice: the print learns both people, and
can then verify the other one. Both are judged on net speech (what the print
is made of), per recording added to an enrolment, and shown to the agent.

* SNR: WADA-SNR (C. Kim and R. M. Stern, "Robust signal-to-noise ratio
  estimation based on waveform amplitude distribution analysis", Interspeech
  2008). Clean speech amplitudes follow a Gamma distribution (shape 0.4),
  noise a Gaussian; the statistic log E|z| - E log|z| of the noisy signal falls
  monotonically with the SNR, so the SNR is read off that curve. It needs no
  silence, so it works after the VAD has removed the pauses. The curve is
  computed here from the model (numerical integration), not copied.
* A second voice: the recording's enrolment windows (``models.voiceprint.windows``,
  3 s at 1.5 s hops: the windows a print averages) are split in two by
  spherical 2-means; the cosine between the two halves' centroids is low when
  two people speak. Those embeddings are what the print is made of, so the
  caller that embeds them once can use them for both (``Quality.embeddings``).

Thresholds were measured with ``python -m benchmarks.enrol_quality`` (figures in
benchmarks/results/2026-11-28/enrol-quality.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from models.base import SAMPLE_RATE, SpeakerEncoder, unit
from models.voiceprint import windows

# Prints from 20 s of LibriSpeech with noise added, scored against clean 3 s of the same speaker at the cosine that
# passes 1% of impostors on clean prints: white noise at 10 dB (read 7-12 dB) passes 24% of genuine trials, at 20 dB
# (read 11-28) 82%, babble at 10 dB (read 8-16) 98%; clean 100%. Clean recordings read 12-100 dB, median 23 (one
# FSDD speaker with a hum: 7 dB).
REFUSE_SNR_DB = 10.0  # below: refused, the print would fail the customer's clean calls
WARN_SNR_DB = 15.0  # below: stored, with a warning
SNR_MIN_SECONDS = 1.0  # WADA on less speech than this says little
# The centroid cosine of the 2-means split: 30 single-speaker enrolments (LibriSpeech, FSDD, speechbrain) 0.86-0.98,
# and 0.82 and up with white noise or babble at 10 dB; a second real speaker with 20-50% of the speech 0.28-0.83
# (47 of 48 below 0.82). Refused: such a print accepted 32-90% of the second voice's trials.
SECOND_SPEAKER_BELOW = 0.82
MIN_CLUSTER_WINDOWS = 2  # one odd window (a cough, a laugh) is not a person: the check needs 4 windows (7.5 s)
TOO_SHORT_SECONDS = 2.0  # a recording with less net speech adds little, and is often no speech at all


@dataclass(frozen=True)
class Quality:
    """A recording's fitness for a print. ``refuse``: do not add it; other problems are warnings."""

    speech_seconds: float
    snr_db: float | None  # None: too little speech to tell
    second_speaker_score: float | None  # None: too few windows to tell; lower is more likely two voices
    problems: tuple[str, ...] = ()  # "too_short", "noisy", "second_speaker"
    refuse: bool = False
    # The enrolment windows' embeddings (one row per ``windows(speech)``), for the caller to build the print from.
    embeddings: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def second_speaker(self) -> bool:
        return "second_speaker" in self.problems

    @property
    def messages(self) -> tuple[str, ...]:
        """One line per problem, for the agent."""
        return tuple(_message(p, self) for p in self.problems)

    def to_dict(self) -> dict:
        return {
            "speech_seconds": round(self.speech_seconds, 2),
            "snr_db": None if self.snr_db is None else round(self.snr_db, 1),
            "second_speaker": self.second_speaker,
            "second_speaker_score": None if self.second_speaker_score is None else round(self.second_speaker_score, 3),
            "problems": list(self.problems),
            "refuse": self.refuse,
            "messages": list(self.messages),
        }


def assess(speech: np.ndarray, encoder: SpeakerEncoder | None = None, embeddings: np.ndarray | None = None) -> Quality:
    """Judge float32 16 kHz net speech. The second-voice check uses ``embeddings`` (the rows of ``embed_windows``,
    when the caller has them) or embeds with ``encoder``; with neither, it is skipped."""
    seconds = len(speech) / SAMPLE_RATE
    snr = wada_snr(speech) if seconds >= SNR_MIN_SECONDS else None
    if embeddings is None and encoder is not None and len(speech):
        embeddings = embed_windows(encoder, speech)
    score = second_speaker_score(embeddings) if embeddings is not None else None
    problems = []
    if seconds < TOO_SHORT_SECONDS:
        problems.append("too_short")
    if snr is not None and snr < WARN_SNR_DB:
        problems.append("noisy")
    if score is not None and score < SECOND_SPEAKER_BELOW:
        problems.append("second_speaker")
    refuse = "second_speaker" in problems or (snr is not None and snr < REFUSE_SNR_DB)
    return Quality(seconds, snr, score, tuple(problems), refuse, embeddings)


def embed_windows(encoder: SpeakerEncoder, speech: np.ndarray) -> np.ndarray:
    """(n, dim): one embedding per enrolment window of ``speech``, as a print averages them (weighted by
    ``min(1, len(window) / 3 s)`` in ``VoiceId._sums``)."""
    return np.stack([encoder.embed(w) for w in windows(speech)])


def second_speaker_score(embeddings: np.ndarray) -> float | None:
    """The cosine between the centroids of a 2-means split of the windows (1.0: no split found); None with too
    few windows to split into two groups of ``MIN_CLUSTER_WINDOWS``."""
    e = np.asarray(embeddings, np.float64)
    if len(e) < 2 * MIN_CLUSTER_WINDOWS:
        return None
    e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
    i, j = np.unravel_index(np.argmin(e @ e.T), (len(e), len(e)))  # start from the two least alike windows
    centroids = e[[i, j]]
    for _ in range(20):
        label = np.argmax(e @ centroids.T, axis=1)
        if label.min() == label.max():
            return 1.0
        moved = np.stack([unit(e[label == k].mean(axis=0)) for k in (0, 1)])
        if np.allclose(moved, centroids):
            break
        centroids = moved
    if np.bincount(label, minlength=2).min() < MIN_CLUSTER_WINDOWS:
        return 1.0  # an odd window or so, not a second person
    return float(centroids[0] @ centroids[1])


def wada_snr(speech: np.ndarray) -> float | None:
    """The SNR in dB of speech (any scale) by WADA (Kim & Stern 2008), clamped to [-20, 100]; None for silence.
    Exact zeros (digital silence, padding) are left out: the model has none."""
    z = np.abs(np.asarray(speech, np.float64))
    z = z[z > 0]
    if len(z) == 0:
        return None
    statistic = math.log(z.mean()) - float(np.log(z).mean())
    db, g = _wada_curve()
    return float(np.interp(statistic, g, db))


GAMMA_SHAPE = 0.4  # Kim & Stern's shape for clean speech amplitudes


@cache
def _wada_curve() -> tuple[np.ndarray, np.ndarray]:
    """(SNR in dB, G) for -20..100 dB: G = log E|x+n| - E log|x+n| with |x| ~ Gamma(0.4, b), n ~ N(0, 1) and
    SNR = E[x^2] = 0.4 * 1.4 * b^2. Inner expectations over the noise for a grid of |x| = s, on a log axis
    (t = e^u) where the integrands are smooth; then over s ~ Gamma, also on a log axis. ~0.1 s, once."""
    a = GAMMA_SHAPE
    u = np.linspace(-30.0, 8.0, 2500)
    t = np.exp(u)
    log_s = np.linspace(-25.0, 3.5, 500)  # beyond e^3.5 the noise barely moves |x+n|: E|.| = s, E log|.| = log s
    s = np.exp(log_s)
    density = np.exp(-0.5 * (t - s[:, None]) ** 2) + np.exp(-0.5 * (t + s[:, None]) ** 2)
    kernel = density * (t * (u[1] - u[0]) / math.sqrt(2 * math.pi))
    mean_abs, mean_log = kernel @ t, kernel @ u
    db = np.arange(-20.0, 101.0)
    g = np.empty_like(db)
    for k, snr in enumerate(db):
        b = math.sqrt(10 ** (snr / 10) / (a * (a + 1)))
        v = np.linspace(math.log(b) - 70, math.log(b) + 4.1, 1500)
        w = np.exp(a * v - np.exp(v) / b)  # the Gamma density times ds = s dv, unnormalised
        m_abs = np.where(v > log_s[-1], np.exp(v), np.interp(v, log_s, mean_abs))
        m_log = np.where(v > log_s[-1], v, np.interp(v, log_s, mean_log))
        g[k] = math.log((m_abs * w).sum() / w.sum()) - (m_log * w).sum() / w.sum()
    return db, g


def _message(problem: str, q: Quality) -> str:
    snr = f"{q.snr_db:.0f}" if q.snr_db is not None else "?"
    similarity = f"{q.second_speaker_score:.2f}" if q.second_speaker_score is not None else "?"
    if problem == "noisy" and q.snr_db is not None and q.snr_db < REFUSE_SNR_DB:
        return (
            f"The recording is too noisy (SNR {snr} dB): a print from it would fail to recognise the customer on a "
            "clear line. Record again somewhere quieter."
        )
    return {
        "noisy": f"The recording is noisy (SNR {snr} dB): the print may recognise the customer less reliably. "
        "A quieter recording would be better.",
        "too_short": f"Only {q.speech_seconds:.1f} s of speech was heard: it adds little to the enrolment. "
        "Ask the customer to speak for longer.",
        "second_speaker": f"Another voice seems to speak in this recording (similarity {similarity}): a print from "
        "it could let that person pass as the customer. Record the customer alone.",
    }[problem]
