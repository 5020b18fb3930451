"""Kaldi's log mel filterbank (``compute-fbank-feats`` defaults), in numpy: what CAM++ and most Kaldi-lineage
speaker encoders were trained on. Without it they would need torchaudio, which no longer loads beside the torch
the other engines use.

Per 25 ms frame at a 10 ms shift (frames that would run past the end are dropped: ``snip_edges``): remove the DC
offset, pre-emphasise (0.97), Povey window, power spectrum over 512 points, 80 triangular filters evenly spaced on
Kaldi's mel scale (``1127 ln(1 + f / 700)``) from 20 Hz to the Nyquist, natural log floored at float32's epsilon.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from models.base import SAMPLE_RATE

FRAME, SHIFT, FFT = 400, 160, 512
PREEMPHASIS, LOW_HZ = 0.97, 20.0


def fbank(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """(frames, n_mels) float32 from 16 kHz mono audio. Scale matters only through the floor: near-silent
    frames (a few LSBs, as in pauses of some LibriSpeech files) hit it at [-1, 1] but not at int16 scale. CAM++
    was trained on [-1, 1] (3D-Speaker reads audio with ``torchaudio.load``), so pass floats as they are."""
    x = np.asarray(audio, dtype=np.float64)
    if len(x) < FRAME:
        return np.zeros((0, n_mels), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::SHIFT].copy()
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= PREEMPHASIS * frames[:, :-1].copy()
    frames[:, 0] -= PREEMPHASIS * frames[:, 0]
    power = np.abs(np.fft.rfft(frames * _povey(), n=FFT, axis=1)) ** 2
    energies = power[:, : FFT // 2] @ _mel_banks(n_mels).T
    return np.log(np.maximum(energies, np.finfo(np.float32).eps)).astype(np.float32)


@cache
def _povey() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / (FRAME - 1))) ** 0.85


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)


@cache
def _mel_banks(n_mels: int) -> np.ndarray:
    """(n_mels, FFT / 2): Kaldi's triangles, computed in the mel domain on the FFT bins' frequencies."""
    low, high = _mel(LOW_HZ), _mel(SAMPLE_RATE / 2)
    step = (high - low) / (n_mels + 1)
    left = low + step * np.arange(n_mels)[:, None]
    centre, right = left + step, left + 2 * step
    mel = _mel(np.arange(FFT // 2) * SAMPLE_RATE / FFT)[None, :]
    rising, falling = (mel - left) / (centre - left), (right - mel) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))
