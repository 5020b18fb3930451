"""Anti-spoofing evaluation: how well a spoof detector tells live voices from replayed and synthetic ones.

``voxgate voiceid spoof-eval --bonafide DIR --spoof DIR`` (each repeatable) scores every recording under the
folders (any depth, any audio format) as a live call would: its net speech (the VAD calls use), the detector's
first ``seconds`` of it. It prints the equal error rate and its threshold over everything, then, for each kind
(a folder given, or its first-level sub-folder: a kind of attack, or of live caller), how its recordings fare
at that threshold, or at ``--threshold`` (the server's, say): the share of spoofs passed for live, and of live
voices refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from identity.evaluation import AUDIO_SUFFIXES
from media.audio_io import AudioFormatError, read_pcm
from media.speech import net_speech
from models.base import SAMPLE_RATE, SpoofDetector, VadEngine, pcm_to_float
from models.metrics import equal_error_rate

MIN_SECONDS = 1.0  # less net speech than this is no test of a voice

Scores = dict[str, list[float]]  # per kind ("root" for files at its top, "root/sub" for a sub-folder's), the scores


def score_tree(root: Path, detector: SpoofDetector, vad: VadEngine) -> Scores:
    """Every recording under ``root`` with at least ``MIN_SECONDS`` of net speech, scored, by kind."""
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise AudioFormatError(f"{root}: no recordings (WAV, FLAC, OGG, Opus or MP3) under it")
    scores: Scores = {}
    for f in files:
        speech = pcm_to_float(net_speech(read_pcm(f), vad))
        if len(speech) < MIN_SECONDS * SAMPLE_RATE:
            continue
        parts = f.relative_to(root).parts
        kind = f"{root.name}/{parts[0]}" if len(parts) > 1 else root.name
        scores.setdefault(kind, []).append(detector.score(speech[: int(detector.seconds * SAMPLE_RATE)]))
    return scores


def summarise(bonafide: Scores, spoof: Scores, threshold: float | None = None) -> dict:
    """The EER over everything, and per kind the rates at the EER's threshold (or ``threshold``)."""
    live = np.concatenate([np.asarray(v) for v in bonafide.values()])
    fake = np.concatenate([np.asarray(v) for v in spoof.values()])
    if not len(live) or not len(fake):
        raise AudioFormatError("need bona fide and spoof recordings with speech")
    eer, at_eer = equal_error_rate(live, fake)
    judged = at_eer if threshold is None else threshold
    return {
        "eer_percent": round(eer * 100, 2),
        "threshold_at_eer": round(at_eer, 4),
        "threshold": round(judged, 4),
        "bonafide": len(live),
        "spoof": len(fake),
        "bonafide_refused_percent": _percent(live < judged),
        "spoof_accepted_percent": _percent(fake >= judged),
        "spoof_kinds": {
            kind: {
                "files": len(v),
                "eer_percent": round(equal_error_rate(live, np.asarray(v))[0] * 100, 2),
                "accepted_percent": _percent(np.asarray(v) >= judged),
                "median_score": round(float(np.median(v)), 3),
            }
            for kind, v in sorted(spoof.items())
        },
        "bonafide_kinds": {
            kind: {"files": len(v), "refused_percent": _percent(np.asarray(v) < judged), "median": _median(v)}
            for kind, v in sorted(bonafide.items())
        },
    }


def _percent(flags: np.ndarray) -> float:
    return round(float(np.mean(flags)) * 100, 2)


def _median(v: list[float]) -> float:
    return round(float(np.median(v)), 3)
