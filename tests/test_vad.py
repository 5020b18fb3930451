"""VAD segmentation on real speech padded with silence: regions found within 100 ms."""

from __future__ import annotations

import numpy as np
import pytest

from media.segmenter import End, Segmenter, SegmenterConfig, Start
from models.base import SAMPLE_RATE
from tests.conftest import pcm


def trim(audio: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    """Cut a clean recording to where its 10 ms frame energy is within ``floor_db`` of its loudest frame."""
    frames = audio[: len(audio) // 160 * 160].astype(np.float64).reshape(-1, 160)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    loud = np.flatnonzero(db > db.max() + floor_db)
    return audio[loud[0] * 160 : (loud[-1] + 1) * 160]


@pytest.fixture(scope="module")
def padded(data):
    """1 s silence, utterance, 1.5 s silence, utterance, 1 s silence, with a faint noise floor (about -60 dBFS)."""
    rng = np.random.default_rng(0)
    a = trim(pcm(data / "asr/multilingual/test_pt.wav"))
    b = trim(pcm(data / "asr/speechbrain-en/spk1_snt1.wav"))
    parts, truth, t = [], [], 0
    for gap, speech in ((1.0, a), (1.5, b), (1.0, None)):
        parts.append(np.zeros(int(gap * SAMPLE_RATE), np.int16))
        t += int(gap * SAMPLE_RATE)
        if speech is not None:
            parts.append(speech)
            truth.append((t / SAMPLE_RATE, (t + len(speech)) / SAMPLE_RATE))
            t += len(speech)
    audio = np.concatenate(parts).astype(np.float64) + rng.normal(0, 30, t)
    return np.clip(audio, -32768, 32767).astype(np.int16), truth


def regions(vad, audio) -> list[tuple[float, float]]:
    seg = Segmenter(vad, SegmenterConfig(hangover_ms=500))
    signals = []
    for i in range(0, len(audio), 480):  # 30 ms pushes, not aligned to VAD frames
        signals += seg.push(audio[i : i + 480])
    signals += seg.flush()
    return [(s.speech_start, s.speech_end) for s in signals if isinstance(s, End)]


@pytest.mark.parametrize("engine", ["webrtc", "silero"])
def test_vad_finds_speech_regions_within_100ms(padded, engine):
    from models import registry

    audio, truth = padded
    found = regions(registry.build("vad", engine), audio)
    print(f"\n{engine}: truth {truth}\n{engine}: found {found}")
    assert len(found) == len(truth)
    for (ts, te), (fs, fe) in zip(truth, found, strict=True):
        assert round(abs(fs - ts), 3) <= 0.1 and round(abs(fe - te), 3) <= 0.1


def test_segments_carry_preroll_and_all_audio(padded):
    from models.vad import WebRtcVad

    audio, truth = padded
    seg = Segmenter(WebRtcVad(), SegmenterConfig(preroll_ms=300))
    starts = [s for s in seg.push(audio) if isinstance(s, Start)]
    assert len(starts) == 2
    first = starts[0]
    assert first.speech_start - first.audio_start == pytest.approx(0.3, abs=0.011)
    # The segment opens with its pre-roll plus every frame up to the trigger: nothing before the start is lost.
    assert len(first.audio) / SAMPLE_RATE >= first.speech_start - first.audio_start + 0.1


def test_long_speech_is_cut_at_the_segment_limit(data):
    from models.vad import WebRtcVad

    speech = pcm(data / "asr/jfk.flac")
    seg = Segmenter(WebRtcVad(aggressiveness=0), SegmenterConfig(hangover_ms=2000, max_segment_s=3.0))
    ends = [s for s in seg.push(speech) + seg.flush() if isinstance(s, End)]
    assert any(e.forced for e in ends)
    assert all(e.speech_end - e.speech_start <= 3.0 + 1e-6 for e in ends)
