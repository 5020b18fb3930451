"""ASR engines on real speech: accuracy, streaming behaviour, the bundled-model cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.base import pcm_to_float
from models.errors import ModelUnavailable, UnsupportedLanguage
from models.metrics import normalise_words, word_error_rate
from tests.conftest import pcm, transcripts


def recognise(engine, audio: np.ndarray, language: str | None, chunk: int = 16000, **kw):
    stream = engine.stream(language, **kw)
    results = []
    for i in range(0, len(audio), chunk):
        results += stream.accept(audio[i : i + chunk])
    return results + stream.finish()


def final_text(results) -> str:
    return " ".join(r.text for r in results if r.final)


@pytest.mark.parametrize("name,language", [("test.wav", "en"), ("test_pt.wav", "pt")])
def test_whisper_wer_on_english_and_portuguese(whisper, data, name, language):
    folder = data / "asr" / "multilingual"
    ref = transcripts(folder)[name]
    hyp = final_text(recognise(whisper, pcm(folder / name), language, partials=False))
    wer = word_error_rate([(ref, hyp)])
    print(f"\n{name}: WER {wer:.1%}  hyp={hyp!r}")
    assert wer <= 0.10


def test_whisper_wer_on_speechbrain_english(whisper, data):
    folder = data / "asr" / "speechbrain-en"
    pairs = [
        (ref, final_text(recognise(whisper, pcm(folder / wav), "en", partials=False)))
        for wav, ref in transcripts(folder).items()
    ]
    wer = word_error_rate(pairs)
    print(f"\nspeechbrain-en: {len(pairs)} utterances, WER {wer:.1%}")
    assert len(pairs) == 10
    assert wer <= 0.30  # measured 21% (several references are Harvard sentences with odd words)


def test_whisper_detects_language_when_not_given(whisper, data):
    results = recognise(whisper, pcm(data / "asr/multilingual/test_pt.wav"), None, partials=False)
    assert results[-1].language == "pt"


def test_whisper_translates_speech_to_english(whisper, data):
    results = recognise(whisper, pcm(data / "asr/multilingual/test_es.wav"), "es", task="translate", partials=False)
    assert "white" in normalise_words(final_text(results))  # "blanquecinas"; the rest varies run to run


def test_whisper_partials_are_stable_prefixes_before_the_final(whisper, data):
    audio = pcm(data / "asr/multilingual/test.wav")
    results = recognise(whisper, audio, "en", chunk=8000)  # 0.5 s chunks, a partial decode every 1 s
    partials = [r for r in results if not r.final]
    assert partials, "no partial before the final"
    assert results[-1].final and all(not r.final for r in results[:-1])
    final_words = normalise_words(results[-1].text)
    for p in partials:
        words = normalise_words(p.text)
        assert words == final_words[: len(words)], f"partial {p.text!r} is not a prefix of the final"


def test_whisper_rejects_unknown_language(whisper):
    with pytest.raises(UnsupportedLanguage, match="xx"):
        whisper.stream("xx")


def test_whisper_model_dir_must_hold_a_model(tmp_path):
    from models.asr_whisper import WhisperEngine

    with pytest.raises(ModelUnavailable, match="no model.bin"):
        WhisperEngine(model_dir=tmp_path)


def test_whisper_parts_are_joined_once_and_verified(tmp_path, monkeypatch):
    from models import locate

    monkeypatch.setenv("VOXGATE_CACHE", str(tmp_path))
    target = locate.whisper_base_dir()
    assert locate.verify_whisper_base(target)
    mtime = (target / "model.bin").stat().st_mtime_ns
    assert locate.whisper_base_dir() == target and (target / "model.bin").stat().st_mtime_ns == mtime  # reused
    # A torn file (wrong size) is detected and joined again.
    with (target / "model.bin").open("r+b") as f:
        f.truncate(1000)
    assert locate.whisper_base_dir() == target
    assert locate.verify_whisper_base(target)
    assert json.loads((target / "voxgate-manifest.json").read_text())["model.bin"]["size"] > 100_000_000


def test_vosk_korean_streams_partials_before_the_final(vosk_ko, data):
    audio = pcm(data / "asr/multilingual/test_ko.wav")
    results = recognise(vosk_ko, audio, "ko", chunk=320)  # 20 ms chunks, as from WebRTC
    first_final = next(i for i, r in enumerate(results) if r.final)
    assert first_final > 0 and not results[0].final, "Vosk gave no partial before its first final"
    assert final_text(results).strip()
    assert all(r.language == "ko" for r in results)
    assert results[first_final].end > results[first_final].start >= 0


def test_vosk_loads_any_model_directory_a_user_names(vosk_ko, tmp_path, data):
    from models.asr_vosk import VoskEngine

    user_dir = tmp_path / "my-vosk-model"
    shutil.copytree(vosk_ko.model_dir, user_dir)
    engine = VoskEngine(model_dir=user_dir, language="ko")
    assert final_text(recognise(engine, pcm(data / "asr/multilingual/test_ko.wav"), "ko"))
    with pytest.raises(UnsupportedLanguage, match="recognises 'ko'"):
        engine.stream("en")
    with pytest.raises(UnsupportedLanguage, match="--language"):
        VoskEngine(model_dir=user_dir)
    with pytest.raises(ModelUnavailable, match="not a Vosk model directory"):
        VoskEngine(model_dir=tmp_path / "empty", language="en")


def test_pcm_to_float_range():
    x = pcm_to_float(np.array([-32768, 0, 32767], np.int16))
    assert x.dtype == np.float32 and x[0] == -1.0 and 0.999 < x[2] < 1.0
