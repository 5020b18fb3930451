"""Voice ID evaluation: how well voice prints tell speakers apart, on an operator's own recordings.

``voxgate voiceid eval DIR`` reads ``DIR/<speaker>/<files>`` (WAV/FLAC, any
rate). Each speaker enrols from their first files, up to ``enrol_seconds`` of
net speech; every other file is a test utterance cut to ``test_seconds`` of net
speech. Every test is tried against every enrolment: genuine trials (same
speaker) and impostor trials (another). Scores are S-norm'ed against a cohort
made of the *other* speakers' test embeddings (never the two voices of the
trial), so the figures are what a deployment with its own cohort would see.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from media.audio_io import AudioFormatError, read_pcm
from media.resample import Resampler
from media.segmenter import Audio, Segmenter, SegmenterConfig, Start
from media.speech import net_speech
from models.base import SAMPLE_RATE, SpeakerEncoder, VadEngine, pcm_to_float
from models.metrics import det_curve, equal_error_rate, frr_at_far, min_dcf
from models.voiceprint import Scorer, embed, enrol, raw_score

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


@dataclass
class Trial:
    enrolled: str
    tested: str
    score: float  # the one decisions use
    raw: float
    snorm: float

    @property
    def genuine(self) -> bool:
        return self.enrolled == self.tested


def load_speakers(root: Path) -> dict[str, list[Path]]:
    speakers = {
        d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES)
        for d in sorted(root.iterdir())
        if d.is_dir()
    }
    speakers = {k: v for k, v in speakers.items() if len(v) >= 2}
    if len(speakers) < 2:
        raise AudioFormatError(f"{root}: need at least two speaker folders with two recordings each")
    return speakers


def evaluate(
    root: Path,
    encoders: Sequence[SpeakerEncoder],
    vad: VadEngine,
    enrol_seconds: float = 20.0,
    test_seconds: float | None = 3.0,
    scoring: str = "cosine",
) -> tuple[dict, list[Trial]]:
    """Run every trial; returns (summary, trials). ``test_seconds=None`` tests on whole utterances.

    ``scoring``: ``cosine`` (default: measured best with the bundled encoders and 20 s prints) or
    ``snorm``, which pays off only with a cohort of many voices (an operator's own recordings).
    """
    prints, tests = {}, []
    for speaker, files in load_speakers(root).items():
        speech = [pcm_to_float(net_speech(read_pcm(f), vad)) for f in files]
        enrolment, used = [], 0
        while used < len(speech) - 1 and sum(len(s) for s in enrolment) < enrol_seconds * SAMPLE_RATE:
            enrolment.append(speech[used])
            used += 1
        joined = np.concatenate(enrolment)[: int(enrol_seconds * SAMPLE_RATE)]
        prints[speaker] = enrol(encoders, joined)
        for s in speech[used:]:
            if test_seconds is not None:
                if len(s) < 0.9 * test_seconds * SAMPLE_RATE:
                    continue  # too little speech in this file for a test of that length
                s = s[: int(test_seconds * SAMPLE_RATE)]
            tests.append((speaker, embed(encoders, s)))
    names = [e.name for e in encoders]
    cohort = {n: np.stack([t[n] for _, t in tests]) for n in names}
    owners = np.array([spk for spk, _ in tests])
    scorer = Scorer(cohort)
    trials = []
    for speaker, vp in prints.items():
        for tested, t in tests:
            exclude = (owners == speaker) | (owners == tested)
            raw, snorm = raw_score(vp.vectors, t), scorer.score(vp.vectors, t, exclude)
            trials.append(Trial(speaker, tested, snorm if scoring == "snorm" else raw, raw, snorm))
    return summarise(trials, enrol_seconds, test_seconds, names, prints, scoring), trials


def summarise(
    trials: list[Trial],
    enrol_seconds: float,
    test_seconds: float | None,
    encoders: list[str],
    prints: dict,
    scoring: str,
) -> dict:
    genuine = np.array([t.score for t in trials if t.genuine])
    impostor = np.array([t.score for t in trials if not t.genuine])
    if not len(genuine) or not len(impostor):
        raise AudioFormatError("no genuine or no impostor trials: each speaker needs a test file with enough speech")
    eer, threshold = equal_error_rate(genuine, impostor)
    frr, far_threshold = frr_at_far(genuine, impostor, 0.01)
    eers = {
        kind: equal_error_rate(
            [getattr(t, kind) for t in trials if t.genuine], [getattr(t, kind) for t in trials if not t.genuine]
        )[0]
        for kind in ("raw", "snorm")
    }
    return {
        "eer_percent": round(eer * 100, 2),
        "min_dcf": round(min_dcf(genuine, impostor, p_target=0.01), 4),
        "frr_at_far1_percent": round(frr * 100, 2),
        "threshold_at_far1": round(far_threshold, 4),
        "threshold_at_eer": round(threshold, 4),
        "eer_percent_cosine": round(eers["raw"] * 100, 2),
        "eer_percent_snorm": round(eers["snorm"] * 100, 2),
        "genuine_trials": int(len(genuine)),
        "impostor_trials": int(len(impostor)),
        "speakers": len(prints),
        "enrol_seconds": enrol_seconds,
        "enrol_seconds_min": round(min(p.speech_seconds for p in prints.values()), 2),
        "test_seconds": test_seconds,
        "encoders": encoders,
        "scoring": scoring if scoring == "cosine" else "snorm (cohort: other speakers' tests, never the trial's two)",
        "fusion": "mean of the encoders' scores" if len(encoders) > 1 else None,
    }


def plot_det(trials: list[Trial], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    genuine = [t.score for t in trials if t.genuine]
    impostor = [t.score for t in trials if not t.genuine]
    _, frr, far = det_curve(genuine, impostor)
    clip = lambda x: np.clip(x, 1e-4, 1 - 1e-4)  # noqa: E731
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(norm.ppf(clip(far)), norm.ppf(clip(frr)))
    ticks = [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    ax.set_xticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{t:.1%}" for t in ticks])
    ax.set_xlim(norm.ppf(0.0005), norm.ppf(0.5))
    ax.set_ylim(norm.ppf(0.0005), norm.ppf(0.5))
    ax.plot(norm.ppf([0.0005, 0.5]), norm.ppf([0.0005, 0.5]), color="grey", lw=0.5)
    ax.set_xlabel("false accepts")
    ax.set_ylabel("false rejects")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# -- the service: enrol, verify, watch list --------------------------------------------------------------------


class Decision(StrEnum):
    AUTHENTICATED = "authenticated"
    NOT_AUTHENTICATED = "not_authenticated"
    INCONCLUSIVE = "inconclusive"  # not enough speech yet
    NOT_ENROLLED = "not_enrolled"
    OPTED_OUT = "opted_out"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    speech_seconds: float
    score: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict:
        return {
            "decision": self.decision.value,
            "speech_seconds": round(self.speech_seconds, 2),
            "score": None if self.score is None else round(self.score, 4),
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class Calibration:
    """Cosine thresholds by net speech duration, set for a target false-accept rate.

    The defaults are ``threshold_at_far1`` from ``python -m benchmarks.voiceid`` for the bundled d-vector
    encoder and 20 s prints on wideband speech (LibriSpeech test-other), VoxGate's own WebRTC channel.
    Scores live on another scale on 8 kHz telephony (there the same false-accept rate needs 0.77 / 0.80
    / 0.82, which would reject 14-60% of genuine wideband callers): calibrate per channel, with
    ``voxgate voiceid eval`` on your own calls, and set ``voxgate serve --voiceid-thresholds``.
    """

    thresholds: tuple[tuple[float, float], ...] = ((1.5, 0.61), (3.0, 0.64), (6.0, 0.65))
    target_far: float = 0.01
    enrol_seconds: float = 20.0

    @classmethod
    def parse(cls, text: str) -> Calibration:
        """``"1.5:0.61,3:0.64,6:0.65"``: seconds of net speech, and the threshold from then on."""
        try:
            pairs = sorted((float(a), float(b)) for a, b in (p.split(":") for p in text.split(",")))
        except ValueError:
            raise ValueError(f"thresholds look like 1.5:0.61,3:0.64,6:0.65, not {text!r}") from None
        return cls(tuple(pairs))

    def threshold(self, seconds: float) -> float | None:
        """The threshold of the longest calibrated duration not above ``seconds`` (None: too little speech)."""
        usable = [t for s, t in self.thresholds if s <= seconds + 1e-9]
        return usable[-1] if usable else None


class VoiceId:
    """Voice prints in the store, sealed with the vault; never logged, never returned by the API."""

    def __init__(self, store, vault, encoders: Sequence[SpeakerEncoder], calibration: Calibration = Calibration()):
        self.store, self.vault, self.encoders, self.calibration = store, vault, list(encoders), calibration

    def enrol(
        self,
        customer_id: str,
        speech: np.ndarray,
        *,
        consent_by: str,
        consent_wording: str,
        watchlist: bool = False,
        watch_reason: str | None = None,
    ) -> dict:
        """Store a print from float32 net speech; refuses (with progress) below the enrolment length."""
        seconds = len(speech) / SAMPLE_RATE
        if not consent_wording.strip():
            raise ValueError("enrolment needs the consent wording the customer agreed to")
        if seconds < self.calibration.enrol_seconds - 1e-6 and not watchlist:
            return {"enrolled": False, "speech_seconds": round(seconds, 1), "needed": self.calibration.enrol_seconds}
        vp = enrol(self.encoders, speech)
        sealed = self.vault.seal(
            json.dumps({k: v.tolist() for k, v in vp.vectors.items()}).encode(), f"voiceprint:{customer_id}"
        )
        self.store.put_voiceprint(
            customer_id,
            sealed,
            seconds,
            consent_by=consent_by,
            consent_wording=consent_wording,
            watchlist=watchlist,
            watch_reason=watch_reason,
        )
        self.store.audit(
            consent_by,
            "voiceprint.watchlist" if watchlist else "voiceprint.enrol",
            customer_id,
            f"{seconds:.1f} s of speech",
        )
        return {"enrolled": True, "speech_seconds": round(seconds, 1), "needed": self.calibration.enrol_seconds}

    def _print(self, row) -> dict[str, np.ndarray]:
        data = json.loads(self.vault.open(row["sealed"], f"voiceprint:{row['customer_id']}"))
        return {k: np.asarray(v, np.float32) for k, v in data.items()}

    def verify(self, customer_id: str, speech: np.ndarray) -> Verdict:
        seconds = len(speech) / SAMPLE_RATE
        row = self.store.voiceprint(customer_id)
        if row is not None and row["opted_out"]:
            return Verdict(Decision.OPTED_OUT, seconds)
        if row is None or row["sealed"] is None or row["watchlist"]:
            return Verdict(Decision.NOT_ENROLLED, seconds)
        threshold = self.calibration.threshold(seconds)
        if threshold is None:
            return Verdict(Decision.INCONCLUSIVE, seconds)
        score = raw_score(self._print(row), embed(self.encoders, speech))
        decision = Decision.AUTHENTICATED if score >= threshold else Decision.NOT_AUTHENTICATED
        return Verdict(decision, seconds, score, threshold)

    def screen(self, speech: np.ndarray) -> list[dict]:
        """Watch-list hits for this speech, whoever the caller claims to be."""
        threshold = self.calibration.threshold(len(speech) / SAMPLE_RATE)
        rows = self.store.watchlist()
        if threshold is None or not rows:
            return []
        test = embed(self.encoders, speech)
        hits = []
        for row in rows:
            score = raw_score(self._print(row), test)
            if score >= threshold:
                hits.append(
                    {"watchlist_id": row["customer_id"], "reason": row["watch_reason"], "score": round(score, 4)}
                )
        return hits

    def status(self, customer_id: str) -> dict:
        row = self.store.voiceprint(customer_id)
        if row is None:
            return {"customer_id": customer_id, "enrolled": False, "opted_out": False}
        return {
            "customer_id": customer_id,
            "enrolled": row["sealed"] is not None and not row["watchlist"],
            "opted_out": bool(row["opted_out"]),
            "watchlist": bool(row["watchlist"]),
            "speech_seconds": row["speech_seconds"],
            "consent": {"by": row["consent_by"], "at": row["consent_at"], "wording": row["consent_wording"]},
        }

    def delete(self, customer_id: str, actor: str) -> bool:
        gone = self.store.delete_voiceprint(customer_id)
        self.store.audit(actor, "voiceprint.delete", customer_id)
        return gone

    def opt_out(self, customer_id: str, actor: str) -> None:
        self.store.opt_out_voiceprint(customer_id)
        self.store.audit(actor, "voiceprint.opt_out", customer_id)


class LiveVoiceCheck:
    """Passive verification during a call: score the customer's accumulating speech as they talk.

    At 1.5, 3 and 6 s of net speech the speech so far is scored against the claimed customer's print and
    screened against the watch list, off the event loop; each decision goes to the agent's console.
    """

    CHECKPOINTS = (1.5, 3.0, 6.0)

    def __init__(
        self, voice_id: VoiceId, link_id: str, claimed: str | None, publish, vad: VadEngine, executor=None
    ) -> None:
        self.voice_id, self.link_id, self.claimed = voice_id, link_id, claimed
        self._publish, self._executor = publish, executor
        self._resample = Resampler()
        self._segmenter = Segmenter(vad, SegmenterConfig(preroll_ms=100, hangover_ms=200))
        self._speech: list[np.ndarray] = []
        self._samples = 0
        self._next = 0
        first = self.voice_id.verify(claimed, np.zeros(0, np.float32)) if claimed else None
        self._send_verdict(first)

    def feed(self, frame) -> None:
        if self._next >= len(self.CHECKPOINTS):
            return
        for signal in self._segmenter.push(self._resample(frame)):
            if isinstance(signal, Start | Audio):
                self._speech.append(signal.audio)
                self._samples += len(signal.audio)
        if self._samples >= self.CHECKPOINTS[self._next] * SAMPLE_RATE:
            self._next += 1
            speech = pcm_to_float(np.concatenate(self._speech))
            asyncio.get_running_loop().create_task(self._check(speech, time.time()))

    async def _check(self, speech: np.ndarray, reached: float) -> None:
        """``reached``: when the checkpoint's speech had arrived; the decision carries both times."""
        loop = asyncio.get_running_loop()
        if self.claimed:
            verdict = await loop.run_in_executor(self._executor, self.voice_id.verify, self.claimed, speech)
            self._send_verdict(verdict, {"speech_reached": reached, "decided": time.time()})
        hits = await loop.run_in_executor(self._executor, self.voice_id.screen, speech)
        if hits:
            alert = {
                "type": "voiceid_alert",
                "link_id": self.link_id,
                "risk": "high",
                "hits": hits,
                "speech_seconds": round(len(speech) / SAMPLE_RATE, 2),
            }
            self._publish(alert)

    def _send_verdict(self, verdict: Verdict | None, timing: dict | None = None) -> None:
        body = verdict.to_dict() if verdict else {"decision": "not_identified", "speech_seconds": 0.0}
        self._publish(
            {"type": "voiceid", "link_id": self.link_id, "claimed": self.claimed, **body, "timing": timing or {}}
        )
