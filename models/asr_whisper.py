"""Whisper (faster-whisper / CTranslate2) as a streaming recogniser.

Whisper is not a streaming model: its encoder always reads a 30 s window, so a
decode costs about the same whatever the audio length (about 0.7 s for Whisper
base on two cores). Streams therefore buffer the utterance and decode:

* partials: every ``partial_interval`` seconds of new speech until the first
  words show, then every ``partial_refresh`` seconds, the growing buffer
  is re-decoded (on a cheaper 10 s encoder window) and only the words that two
  consecutive hypotheses agree on are shown (LocalAgreement-2), so partial
  text does not flicker; a partial is skipped while the model is busy, and
  streams take turns, so partials follow the CPU and never delay finals;
* final: once, at the end of the utterance (the VAD endpoint), on the full 30 s
  window; ``final_window=10`` trades accuracy for latency (measured on 19 real
  sentences: WER 19.0% -> 26.8%, decode 0.99 s -> 0.31 s on 2 cores).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from models.base import SAMPLE_RATE, AsrEngine, AsrResult, AsrStream, pcm_to_float
from models.errors import ModelUnavailable, UnsupportedLanguage
from models.locate import whisper_base_dir

QUICK_WINDOW_SECONDS = 10
QUICK_MAX_SECONDS = 8.0


class WhisperEngine(AsrEngine):
    """One loaded model serving many streams; decodes are serialised by CTranslate2's worker."""

    name = "whisper"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        cpu_threads: int = 0,
        compute_type: str = "int8",
        beam_size: int = 1,
        partial_interval: float = 0.5,
        partial_refresh: float = 1.0,
        final_window: int = 30,
        workers: int = 1,
    ) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:  # pragma: no cover - part of the default install
            raise ModelUnavailable("faster-whisper is not installed: pip install faster-whisper") from e
        path = Path(model_dir) if model_dir else whisper_base_dir()
        if not (path / "model.bin").is_file():
            raise ModelUnavailable(
                f"{path} is not a CTranslate2 Whisper model directory (no model.bin): "
                "point --whisper-model at one, or leave it unset to use the bundled Whisper base"
            )
        self.model_dir = path
        self.beam_size = beam_size
        if final_window not in (10, 30):
            raise ValueError("final_window is 30 (Whisper's own, most accurate) or 10 seconds (about 3x faster)")
        self.final_window = final_window
        # A partial decode costs most of a final's CPU: decode often until the first words show (they matter
        # most), then refresh at a calmer pace.
        self.partial_interval, self.partial_refresh = partial_interval, partial_refresh
        # ``workers`` decodes run at once, sharing the cores between them: one decode uses them all (lowest
        # latency); two single-threaded ones finish more decodes per second when many calls talk at once.
        self.workers = max(1, workers)
        self._model = WhisperModel(
            str(path),
            device="cpu",
            compute_type=compute_type,
            num_workers=self.workers,
            cpu_threads=cpu_threads or max(1, min(4, _cores()) // self.workers),
        )
        self._languages = frozenset(self._model.supported_languages)
        self._lock = threading.BoundedSemaphore(self.workers)
        self._turns_lock = threading.Lock()
        self._waiting: dict[object, tuple[float, float]] = {}  # stream -> (waiting since, last asked)

    def languages(self) -> frozenset[str]:
        return self._languages

    def stream(self, language: str | None = None, *, task: str = "transcribe", partials: bool = True) -> AsrStream:
        if language is not None and language not in self._languages:
            raise UnsupportedLanguage(f"Whisper does not know the language {language!r}")
        if task not in ("transcribe", "translate"):
            raise ValueError(f"unknown task {task!r}")
        intervals = (self.partial_interval, self.partial_refresh) if partials else None
        return WhisperStream(self, language, task, intervals)

    def _my_turn(self, requester: object) -> bool:
        """Partials take turns: the stream that has waited longest goes first, so no call starves another.

        A waiter that stopped asking (its utterance ended) is forgotten after a second.
        """
        now = time.monotonic()
        with self._turns_lock:
            first, _ = self._waiting.get(requester, (now, now))
            self._waiting[requester] = (first, now)
            for key, (_, last) in list(self._waiting.items()):
                if now - last > 1.0:
                    del self._waiting[key]
            return min(self._waiting, key=lambda k: self._waiting[k][0]) is requester

    def decode(
        self, audio: np.ndarray, language: str | None, task: str, *, wait: bool = True, requester: object = None
    ) -> tuple[str, str] | None:
        """Decode float32 audio at once; returns (text, language).

        ``workers`` decodes run at a time per model (more would only fight for the same cores). A final
        waits its turn; a partial (``wait=False``) is skipped, returning None, when the model is busy: partials then
        come as often as the CPU allows and never delay a final by more than the one decode in flight.
        """
        if not wait and not self._my_turn(requester):
            return None
        if not self._lock.acquire(blocking=wait):
            return None
        if not wait:
            with self._turns_lock:
                self._waiting.pop(requester, None)
        try:
            quick = not wait or self.final_window == QUICK_WINDOW_SECONDS
            if quick and language is not None and len(audio) <= QUICK_MAX_SECONDS * SAMPLE_RATE:
                return self._quick(audio, language, task), language
            segments, info = self._model.transcribe(
                audio,
                language=language,
                task=task,
                beam_size=self.beam_size,
                condition_on_previous_text=False,
                vad_filter=False,
                without_timestamps=True,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        finally:
            self._lock.release()
        return text, info.language

    def _quick(self, audio: np.ndarray, language: str, task: str) -> str:
        """A decode with the encoder on a 10 s window instead of 30 s, about 3 times cheaper.

        Accuracy drops (19.0% -> 26.8% WER over 19 real sentences, some finals cut short), which suits
        tentative partials; finals take it only with ``final_window=10``. Shorter windows hallucinate loops.
        """
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        frames = QUICK_WINDOW_SECONDS * 100  # 10 ms feature frames
        features = self._model.feature_extractor(audio)[:, :frames]
        features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        tokenizer = Tokenizer(self._model.hf_tokenizer, True, task=task, language=language)
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32)),
            [[*tokenizer.sot_sequence, tokenizer.no_timestamps]],
            beam_size=1,
            max_length=16 + int(len(audio) / SAMPLE_RATE * 8),  # bounds a runaway hypothesis
        )
        return tokenizer.decode(result[0].sequences_ids[0]).strip()


class WhisperStream(AsrStream):
    def __init__(
        self, engine: WhisperEngine, language: str | None, task: str, intervals: tuple[float, float] | None
    ) -> None:
        self._engine = engine
        self._language = language
        self._task = task
        self._intervals = intervals  # (until the first words show, then); None: no partials
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._decoded_at = 0
        self._previous: list[str] = []
        self._shown = ""

    def accept(self, pcm: np.ndarray, *, partial: bool = True) -> list[AsrResult]:
        self._chunks.append(pcm)
        self._samples += len(pcm)
        if not partial or self._intervals is None:
            return []
        interval = self._intervals[1] if self._shown else self._intervals[0]
        if self._samples - self._decoded_at < interval * SAMPLE_RATE:
            return []
        decoded = self._engine.decode(self._audio(), self._language, self._task, wait=False, requester=self)
        if decoded is None:
            return []  # the model is busy with another stream: try again with more audio
        self._decoded_at = self._samples
        text, language = decoded
        self._language = self._language or language
        words = text.split()
        stable = _common_prefix(self._previous, words)
        self._previous = words
        if not stable or " ".join(stable) == self._shown:
            return []
        self._shown = " ".join(stable)
        return [AsrResult(self._shown, 0.0, self._samples / SAMPLE_RATE, False, self._language)]

    def finish(self) -> list[AsrResult]:
        if not self._samples:
            return []
        text, language = self._engine.decode(self._audio(), self._language, self._task)  # type: ignore[misc]
        self._language = self._language or language
        return [AsrResult(text, 0.0, self._samples / SAMPLE_RATE, True, self._language)]

    def _audio(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return pcm_to_float(self._chunks[0])


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    """LocalAgreement: the words two hypotheses agree on, compared without case or punctuation."""
    out = []
    for x, y in zip(a, b, strict=False):
        if _norm(x) != _norm(y):
            break
        out.append(y)
    return out


def _norm(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
