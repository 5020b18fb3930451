"""Whisper (CTranslate2) as a streaming recogniser.

Whisper is not a streaming model: its encoder always reads a 30 s window, so a
decode costs about the same whatever the audio length. Streams therefore
buffer the utterance, and every decode goes through the engine's one
``Scheduler`` (models/decoding.py), where finals come first:

* partials: every ``partial_interval`` seconds of new speech until the first
  words show, then every ``partial_refresh`` seconds, the growing buffer is
  re-decoded on a cheaper 10 s window, only when a worker is idle, and only
  the words that two consecutive hypotheses agree on are shown
  (LocalAgreement-2), so text does not flicker;
* a speculative final (``guess_final``): the full decode of what was said,
  started at the first short pause, before the endpoint is sure; the pipeline
  keeps it when the utterance does end there;
* final: at the endpoint, unless a guess covered it. The encoder's cost grows
  faster than its window (attention is quadratic), so ``final_window="fit"``
  (the default) gives an utterance the smallest of 15, 20 or 30 s that holds
  it with 5 s to spare: a third of the encoder's cost for most utterances,
  for a WER measured within about a point of the full window
  (benchmarks/README.md). ``30`` always uses Whisper's own window; ``10`` is
  cheaper and worse.

English can go to a second, English-only model (``english_model_dir``: the
bundled Whisper tiny.en), as accurate as base on English and about half the
cost, which is what decides how many calls a machine holds.

A leg whose language is settled may still change it (``detect="recheck"``):
a final decoded on the multilingual model reports the language it hears for
one decoder step; one the English-only model was unsure of (a low average
log-probability) gets one language-ID pass on the multilingual model, so an
ordinary English call pays nothing for it.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import CancelledError, Future
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.base import SAMPLE_RATE, AsrEngine, AsrResult, AsrStream, pcm_to_float
from models.decoding import (
    FINAL,
    FULL_WINDOW,
    PARTIAL,
    QUICK_WINDOW,
    Decoded,
    Job,
    Scheduler,
    WhisperRunner,
    resolve_device,
)
from models.errors import ModelUnavailable, UnsupportedLanguage
from models.locate import whisper_base_dir

QUICK_MAX_SECONDS = 8.0  # longer audio than this does not fit the quick window: partials use the full one
FIT_WINDOWS = (1500, 2000)  # 15 and 20 s, in 10 ms feature frames: the "fit" finals' windows below the full one
FIT_MARGIN_SECONDS = 5.0
RECHECK = "recheck"  # ``stream(detect=RECHECK)``: see the module docstring
# Below this average log-probability, tiny.en is unsure the speech is English: a language-ID pass checks it (how
# English and other languages score: benchmarks/README.md, "Language changes mid-call").
DOUBT_LOGPROB = -0.7
RECHECK_MIN_SECONDS = 1.7  # about 1 s of speech with the pre-roll and hangover: language ID on less is a guess

log = logging.getLogger(__name__)


class WhisperEngine(AsrEngine):
    """Loaded models serving every stream of the server through one scheduler."""

    name = "whisper"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        english_model_dir: str | Path | None = None,
        device: str = "cpu",
        cpu_threads: int = 0,
        compute_type: str | None = None,
        beam_size: int = 1,
        partial_interval: float = 0.2,
        partial_refresh: float = 1.0,
        final_window: str | int = "fit",
        workers: int = 0,
        max_batch: int = 4,
    ) -> None:
        try:
            import faster_whisper  # noqa: F401
        except ImportError as e:  # pragma: no cover - part of the default install
            raise ModelUnavailable("faster-whisper is not installed: pip install faster-whisper") from e
        path = Path(model_dir) if model_dir else whisper_base_dir()
        _check_model_dir(path, "--whisper-model", "the bundled Whisper base")
        final_window = final_window if final_window == "fit" else int(final_window)
        if final_window not in ("fit", 10, 30):
            raise ValueError("final_window is fit (the smallest of 15/20/30 s that holds the utterance), 30 or 10")
        self.model_dir, self.final_window = path, final_window
        self.device = resolve_device(device)
        # A partial decode costs most of a final's CPU: decode often until the first words show (they matter
        # most), then refresh at a calmer pace.
        self.partial_interval, self.partial_refresh = partial_interval, partial_refresh
        # Up to ``workers`` finals decode at once, each on up to 4 threads: alone, a final has every core (the
        # lowest latency); when calls talk at once, two decodes share the cores and finish more per second.
        self.workers = workers or max(2, _cores() // 4)
        threads = cpu_threads or min(4, _cores())
        options = dict(device=self.device, compute_type=compute_type, cpu_threads=threads, workers=self.workers)
        self.runner = WhisperRunner(path, beam_size=beam_size, **options)
        self.english: WhisperRunner | None = None
        if english_model_dir:
            english = Path(english_model_dir)
            _check_model_dir(english, "--english-model", "the bundled Whisper tiny.en")
            self.english = WhisperRunner(english, beam_size=beam_size, **options)
        self.scheduler = Scheduler(self.workers, max_batch, partials_below=max(1, _cores() // threads))
        self._languages = self.runner.languages

    def languages(self) -> frozenset[str]:
        return self._languages

    def stream(
        self,
        language: str | None = None,
        *,
        task: str = "transcribe",
        partials: bool = True,
        translate: bool = False,
        detect: bool | str = False,
    ) -> AsrStream:
        """See ``AsrEngine.stream``. ``detect``: every final also carries the language Whisper hears and its
        probability, decoded on the multilingual model (English-only cannot tell), and the stream keeps decoding
        in ``language`` rather than latching what it detected. ``detect="recheck"``, for a settled language that
        may change: the English model still decodes English, and a final carries a detection only where it is
        cheap (decoded on the multilingual model anyway) or where the English model was unsure of it (one
        language-ID pass, counted in the stream's ``language_passes``)."""
        if language is not None and language not in self._languages:
            raise UnsupportedLanguage(f"Whisper does not know the language {language!r}")
        if task not in ("transcribe", "translate"):
            raise ValueError(f"unknown task {task!r}")
        intervals = (self.partial_interval, self.partial_refresh) if partials else None
        tasks = (task, "translate") if translate and task == "transcribe" else (task,)
        return WhisperStream(self, language, tasks, intervals, detect)

    def runner_for(self, language: str | None, task: str) -> WhisperRunner:
        """English transcription goes to the English model when there is one; the rest to the multilingual."""
        return self.english if self.english and language == "en" and task == "transcribe" else self.runner

    def final_job(
        self,
        audio: np.ndarray,
        language: str | None,
        tasks: tuple[str, ...] = ("transcribe",),
        detect: bool | str = False,
    ) -> Job:
        window = self.window_for(len(audio))
        # A recheck keeps the English model: it detects only where the multilingual model decodes anyway.
        runner = self.runner_for(language, tasks[0]) if len(tasks) == 1 and detect is not True else self.runner
        return Job(runner, audio, language, tasks, window, FINAL, bool(detect))

    def language_id_job(self, audio: np.ndarray) -> Job:
        """Language identification alone, on the multilingual model: an encoder pass and one decoder step. On the
        10 s window when the audio fits it, a third cheaper than a final's: measured as sure as the final's window
        on real speech (no English line another language at 0.8 or more, the other languages alike)."""
        window = QUICK_WINDOW if len(audio) <= QUICK_MAX_SECONDS * SAMPLE_RATE else self.window_for(len(audio))
        return Job(self.runner, audio, None, (), window, FINAL, True)

    def window_for(self, samples: int) -> int:
        """The encoder window (10 ms frames) a final of ``samples`` gets."""
        if self.final_window == 10 and samples <= QUICK_MAX_SECONDS * SAMPLE_RATE:
            return QUICK_WINDOW
        if self.final_window == "fit":
            frames = (samples / SAMPLE_RATE + FIT_MARGIN_SECONDS) * 100
            return next((w for w in FIT_WINDOWS if frames <= w), FULL_WINDOW)
        return FULL_WINDOW

    def close(self) -> None:
        self.scheduler.close()


class WhisperStream(AsrStream):
    def __init__(
        self,
        engine: WhisperEngine,
        language: str | None,
        tasks: tuple[str, ...],
        intervals: tuple[float, float] | None,
        detect: bool | str = False,
    ) -> None:
        self._engine = engine
        self._language = language
        self._detect = detect  # detect on every final (or, RECHECK, where cheap or doubtful); never latch it
        self.language_passes = 0  # language-ID passes run besides the decodes (RECHECK): their cost
        self._tasks = tasks  # the first is what the stream shows; a second ("translate") comes with each final
        self._task = tasks[0]
        self._intervals = intervals  # (until the first words show, then); None: no partials
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._decoded_at = 0
        self._previous: list[str] = []
        self._shown = ""
        self._guess: Future | None = None
        self._lock = threading.Lock()  # a guess reads the buffer in one thread while audio arrives in another

    def accept(self, pcm: np.ndarray, *, partial: bool = True) -> list[AsrResult]:
        with self._lock:
            if not self._samples:  # the pre-roll and the frames that began the speech: too little to decode alone
                self._decoded_at = len(pcm)
            self._chunks.append(pcm)
            self._samples += len(pcm)
        if not partial or self._intervals is None:
            return []
        interval = self._intervals[1] if self._shown else self._intervals[0]
        if self._samples - self._decoded_at < interval * SAMPLE_RATE:
            return []
        audio = self._snapshot()[1]
        short = len(audio) <= QUICK_MAX_SECONDS * SAMPLE_RATE and self._language is not None
        job = Job(
            self._engine.runner_for(self._language, self._task),
            audio,
            self._language,
            (self._task,),
            QUICK_WINDOW if short else FULL_WINDOW,
            PARTIAL,
        )
        future = self._engine.scheduler.offer(job, self)
        if future is None:
            return []  # no worker to spare: try again with more audio
        try:
            decoded = future.result()
        except CancelledError:  # given up (a cluster's workers were too late): try again with more audio
            return []
        self._decoded_at = self._samples
        # A language detected on a partial's first half-second is a guess: only the final's decides.
        words = decoded.texts[self._task].split()
        stable = _common_prefix(self._previous, words)
        self._previous = words
        if not stable or " ".join(stable) == self._shown:
            return []
        self._shown = " ".join(stable)
        return [AsrResult(self._shown, 0.0, self._samples / SAMPLE_RATE, False, self._language or decoded.language)]

    def guess_final(self) -> list[AsrResult] | None:
        return self._final_now(guess=True)

    def withdraw_guess(self) -> None:
        if self._guess is not None:
            self._guess.cancel()  # no effect once it runs: its result is then ignored
            self._guess = None

    def finish(self) -> list[AsrResult]:
        return self._final_now() or []

    def _final_now(self, guess: bool = False) -> list[AsrResult] | None:
        """The final of everything heard so far, decoded in its turn; None if it was withdrawn as a guess."""
        samples, audio = self._snapshot()
        if not samples:
            return []
        job = self._engine.final_job(audio, self._language, self._tasks, self._detect)
        future = self._engine.scheduler.submit(job)
        if guess:
            self._guess = future
        try:
            decoded = future.result()
        except CancelledError:
            return None
        if self._detect == RECHECK and self._doubtful(decoded, samples):
            checked = self._check_language(audio, decoded, future if guess else None)
            if checked is None:
                return None
            decoded = checked
        if not self._detect:
            self._language = self._language or decoded.language
        translation = decoded.texts.get("translate") if len(self._tasks) > 1 else None
        return [
            AsrResult(
                decoded.texts[self._task],
                0.0,
                samples / SAMPLE_RATE,
                True,
                decoded.language,
                translation,
                decoded.detected_language,
                decoded.language_probability,
            )
        ]

    def _doubtful(self, decoded: Decoded, samples: int) -> bool:
        """An English-only decode (no detection) that scored low, of enough audio to identify a language in."""
        return (
            decoded.detected_language is None
            and decoded.avg_logprob is not None
            and decoded.avg_logprob < DOUBT_LOGPROB
            and bool(decoded.texts[self._task].strip())
            and samples >= RECHECK_MIN_SECONDS * SAMPLE_RATE
        )

    def _check_language(self, audio: np.ndarray, decoded: Decoded, guess: Future | None) -> Decoded | None:
        """``decoded`` with the language the multilingual model hears in ``audio``; None if withdrawn as a guess
        (``guess``: the guess's decode, which ``withdraw_guess`` forgets)."""
        if guess is not None and self._guess is not guess:  # withdrawn while it decoded: not worth a pass
            return None
        future = self._engine.scheduler.submit(self._engine.language_id_job(audio))
        if guess is not None:
            self._guess = future  # withdrawing the guess now cancels the check
        try:
            found = future.result()
        except CancelledError:
            return None
        except Exception:  # the check is an extra: its failure must not cost the final
            self.language_passes += 1
            log.warning("language check failed; the final keeps its language", exc_info=True)
            return decoded
        self.language_passes += 1
        return replace(
            decoded, detected_language=found.detected_language, language_probability=found.language_probability
        )

    def _snapshot(self) -> tuple[int, np.ndarray]:
        """The samples so far, as float32 (empty before any audio)."""
        with self._lock:
            if len(self._chunks) > 1:
                self._chunks = [np.concatenate(self._chunks)]
            samples, pcm = self._samples, (self._chunks[0] if self._chunks else np.zeros(0, np.int16))
        return samples, pcm_to_float(pcm)


def _check_model_dir(path: Path, flag: str, default: str) -> None:
    if not (path / "model.bin").is_file():
        raise ModelUnavailable(
            f"{path} is not a CTranslate2 Whisper model directory (no model.bin): "
            f"point {flag} at one, or leave it unset to use {default}"
        )


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
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
