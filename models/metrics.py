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
    """(EER, threshold): where false accepts and false rejects cross (midpoint of the closest pair)."""
    thresholds, frr, far = det_curve(genuine, impostor)
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2), float(thresholds[i])


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T
