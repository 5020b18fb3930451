"""Enrolment quality on real voices: a clean recording passes, noise and a second voice are caught."""

from __future__ import annotations

import numpy as np
import pytest

from identity.quality import (
    REFUSE_SNR_DB,
    SECOND_SPEAKER_BELOW,
    TOO_SHORT_SECONDS,
    assess,
    embed_windows,
    wada_snr,
)
from models.base import SAMPLE_RATE

R = SAMPLE_RATE


@pytest.fixture(scope="module")
def encoder():
    from models.engines import build_speaker

    return build_speaker("dvector")


@pytest.fixture(scope="module")
def voices(data):
    """12 s of net speech from each of two men of LibriSpeech test-other."""
    from media.audio_io import read_pcm
    from media.speech import net_speech
    from models.base import pcm_to_float
    from models.vad import WebRtcVad

    vad = WebRtcVad()

    def speech(speaker: str) -> np.ndarray:
        files = sorted((data / "voiceid/librispeech-test-other" / speaker).glob("*.flac"))
        return np.concatenate([pcm_to_float(net_speech(read_pcm(f), vad)) for f in files[:3]])[: 12 * R]

    return speech("1688"), speech("2033")


@pytest.fixture(scope="module")
def clean(voices, encoder):
    return assess(voices[0], encoder)


def test_clean_speech_of_one_speaker_passes(clean, voices):
    assert clean.problems == () and not clean.refuse
    assert clean.snr_db is not None and clean.snr_db > 15
    assert clean.second_speaker_score is not None and clean.second_speaker_score > SECOND_SPEAKER_BELOW
    assert clean.embeddings is not None and len(clean.embeddings) == 7  # the enrolment windows: 3 s at 1.5 s hops
    assert clean.to_dict()["problems"] == [] and clean.to_dict()["messages"] == []


def test_strong_noise_is_refused(voices):
    x = voices[0]
    rng = np.random.default_rng(0)
    noisy = x + rng.standard_normal(len(x)).astype(np.float32) * np.sqrt(np.mean(x**2))  # 0 dB
    q = assess(noisy)  # no encoder: the SNR alone
    assert q.problems == ("noisy",) and q.refuse
    assert q.snr_db < REFUSE_SNR_DB and abs(q.snr_db) < 3
    assert q.messages[0].startswith(f"The recording is too noisy (SNR {q.snr_db:.0f} dB)")


def test_two_speakers_joined_are_flagged(voices, encoder):
    joined = np.concatenate([voices[0][: 6 * R], voices[1][: 6 * R]])
    q = assess(joined, encoder)
    assert "second_speaker" in q.problems and q.second_speaker and q.refuse
    assert q.second_speaker_score < SECOND_SPEAKER_BELOW
    assert "Another voice" in q.to_dict()["messages"][-1]


def test_embeddings_given_are_used_not_recomputed(clean, voices):
    class Refuses:
        def embed(self, audio):
            raise AssertionError("embedded again")

    q = assess(voices[0], Refuses(), embeddings=clean.embeddings)
    assert q.second_speaker_score == clean.second_speaker_score
    assert np.allclose(embed_windows(type("E", (), {"embed": lambda self, a: np.ones(2)})(), voices[0]), 1)


def test_short_recording_warns_without_refusing(voices, encoder):
    q = assess(voices[0][: int(1.5 * R)], encoder)
    assert q.problems == ("too_short",) and not q.refuse
    assert q.speech_seconds < TOO_SHORT_SECONDS and q.second_speaker_score is None  # too few windows to split


def test_wada_snr_of_silence_and_of_noise():
    assert wada_snr(np.zeros(R, np.float32)) is None
    assert wada_snr(np.random.default_rng(1).standard_normal(4 * R)) < -5  # the curve is flat down there
