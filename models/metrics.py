"""Accuracy measures shared by tests, benchmarks and the operator's evaluation commands."""

from __future__ import annotations

import re
import unicodedata

import numpy as np

_PUNCT = re.compile(r"[^\w\s']|_")


def normalise_words(text: str) -> list[str]:
    """Lower-case words without punctuation (accents kept: they change meaning in Portuguese)."""
    text = unicodedata.normalize("NFC", text).lower()
    return _PUNCT.sub(" ", text).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


def word_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER over (reference, hypothesis) pairs: total edits / total reference words."""
    errors = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors, words = errors + e, words + n
    return errors / max(words, 1)


def det_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, false-reject rate, false-accept rate), thresholds ascending over every observed score."""
    genuine, impostor = np.sort(np.asarray(genuine, float)), np.sort(np.asarray(impostor, float))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    frr = np.searchsorted(genuine, thresholds, side="left") / len(genuine)  # genuine scores below threshold
    far = 1 - np.searchsorted(impostor, thresholds, side="left") / len(impostor)  # impostors at or above it
    return thresholds, frr, far


def equal_error_rate(genuine, impostor) -> tuple[float, float]:
    """(EER, threshold): where the false-reject and false-accept curves cross, interpolated linearly
    between the two thresholds that straddle the crossing (with few trials, each error is a big step)."""
    thresholds, frr, far = det_curve(genuine, impostor)
    d = frr - far  # rises with the threshold
    i = int(np.argmax(d >= 0)) if (d >= 0).any() else len(d) - 1
    if i == 0 or d[i] < 0:
        return float((frr[i] + far[i]) / 2), float(thresholds[i])
    alpha = -d[i - 1] / (d[i] - d[i - 1])
    eer = frr[i - 1] + alpha * (frr[i] - frr[i - 1])
    return float(eer), float(thresholds[i - 1] + alpha * (thresholds[i] - thresholds[i - 1]))


def min_dcf(genuine, impostor, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Minimum normalised detection cost (NIST SRE): the best threshold's cost, relative to a system
    that always says no (or always yes, whichever is cheaper)."""
    _, frr, far = det_curve(genuine, impostor)
    cost = c_miss * p_target * frr + c_fa * (1 - p_target) * far
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def frr_at_far(genuine, impostor, far_target: float = 0.01) -> tuple[float, float]:
    """(false-reject rate, threshold) at the lowest threshold whose false-accept rate is <= far_target."""
    thresholds, frr, far = det_curve(genuine, impostor)
    ok = np.flatnonzero(far <= far_target)
    i = int(ok[0]) if len(ok) else len(thresholds) - 1
    return float(frr[i]), float(thresholds[i])
