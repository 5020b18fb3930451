"""One scheduler for every Whisper decode on the server, and the decode itself, batched.

Every call's utterances compete for the same cores. The scheduler keeps one
queue for all their finals (and speculative finals), in arrival order, several
at once when they share a model and a window (CTranslate2 encodes a batch in
one call, which pays little on a CPU and a lot on a GPU). Partials have a lane
of their own, one decode at a time, started only when no final waits and the
finals decoding leave a core spare: a partial never queues in front of a
final, a final never waits for a partial in flight (it starts beside it), and
a busy server shows fewer partials rather than late finals.

``WhisperRunner`` decodes on CTranslate2 directly, the way faster-whisper's
``transcribe`` does for an utterance shorter than the window (greedy, no
timestamps, blank and non-speech tokens suppressed, the no-speech rule), so
that a batch shares one encoder call and a speech translation reuses the
encoder output of the transcription. A hypothesis that looks like a runaway
loop (or, transcribing, an unlikely one) is decoded once more by sampling.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.base import SAMPLE_RATE
from models.errors import ModelUnavailable

FINAL, PARTIAL = 0, 1
FULL_WINDOW = 3000  # 10 ms feature frames: Whisper's own 30 s
QUICK_WINDOW = 1000  # 10 s: about 3x cheaper, less accurate (partials)
CAREFUL_TEMPERATURE = 0.4


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one decode found: the text per task asked, and the language it was decoded as.

    ``detected_language`` and ``language_probability``: language identification's top language and its
    probability, for a job that asked (no language, or ``detect``); None otherwise, and on an English-only model.
    ``avg_logprob``: the first task's greedy hypothesis, its average log-probability per token: how sure the decoder
    was (None for a language-ID-only job). The English-only model scores speech in another language low, which is
    how an English leg notices that its speaker may have changed language.
    """

    texts: dict[str, str]
    language: str
    detected_language: str | None = None
    language_probability: float | None = None
    avg_logprob: float | None = None


@dataclass(eq=False)
class Job:
    """One utterance to decode. ``tasks``: "transcribe" and/or "translate" (into English), from one encoding; none:
    language identification only (an encoder pass and one decoder step).
    ``detect``: identify the spoken language even though ``language`` is given (which generation still uses)."""

    runner: WhisperRunner
    audio: np.ndarray  # float32, 16 kHz mono
    language: str | None
    tasks: tuple[str, ...] = ("transcribe",)
    window: int = FULL_WINDOW
    priority: int = FINAL
    detect: bool = False
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.monotonic)

    @property
    def detects(self) -> bool:
        return self.detect or self.language is None

    def batches_with(self, other: Job) -> bool:
        # ``detect`` is not part of the key: languages are per job already, and one detection call over the whole
        # batch (cheap: one decoder step) serves whichever jobs asked for it.
        return other.runner is self.runner and other.window == self.window and other.tasks == self.tasks


class Scheduler:
    """One queue of finals served by ``workers`` threads, and a lane of its own for partials; see the module
    docstring. A partial starts only when no final waits and fewer than ``partials_below`` decode (finals that
    leave a core spare), and runs in its own thread, so a final that arrives meanwhile starts at once instead of
    waiting for it."""

    def __init__(self, workers: int = 1, max_batch: int = 4, partials_below: int = 1) -> None:
        self.workers, self.max_batch = max(1, workers), max(1, max_batch)
        self.partials_below = max(1, partials_below)  # finals decoding at once that still leave a core spare
        self._queue: deque[Job] = deque()  # finals, by arrival
        self._partial: Job | None = None  # the partial offered and not yet finished
        self._cond = threading.Condition()
        self._busy = 0  # final workers decoding
        self._closed = False
        self._askers: dict[object, tuple[float, float]] = {}  # partial requester -> (asking since, last asked)
        self.counts: Counter[str] = Counter()  # decodes run ("final", "partial"), "batches", "cancelled"
        self.on_wait: Callable[[float], None] | None = None  # told how long each final waited (the server's metrics)
        lanes = [(self._serve_finals, f"whisper-{i}") for i in range(self.workers)]
        for target, name in [*lanes, (self._serve_partials, "whisper-partials")]:
            threading.Thread(target=target, name=name, daemon=True).start()

    def submit(self, job: Job) -> Future:
        """Queue a final (or a speculative final); it runs after the finals queued before it."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the decoder is closed")
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    def offer(self, job: Job, requester: object) -> Future | None:
        """Run a partial only if the cores are not all taken by finals, no final waits, the partial lane is free
        and no other stream has asked for longer (streams take turns, so no call starves another); else None: try
        again with more audio."""
        now = time.monotonic()
        with self._cond:
            first, _ = self._askers.get(requester, (now, now))
            self._askers[requester] = (first, now)
            for key, (_, last) in list(self._askers.items()):
                if now - last > 1.0:  # it stopped asking: its utterance ended
                    del self._askers[key]
            if self._closed or self._queue or self._partial is not None or self._busy >= self.partials_below:
                return None
            if min(self._askers, key=lambda k: self._askers[k][0]) is not requester:
                return None
            del self._askers[requester]
            self._partial = job
            self._cond.notify_all()
        return job.future

    @property
    def waiting(self) -> int:
        """Finals queued and not started."""
        return len(self._queue)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _serve_finals(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                batch = [job, *self._take_batch(job)]
                self._busy += 1
            if self.on_wait is not None:
                now = time.monotonic()
                for queued in batch:
                    self.on_wait(now - queued.queued)
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy -= 1

    def _serve_partials(self) -> None:
        while True:
            with self._cond:
                while self._partial is None and not self._closed:
                    self._cond.wait()
                if self._partial is None:
                    return
                job = self._partial
            try:
                self._run([job])
            finally:
                with self._cond:
                    self._partial = None

    def _take_batch(self, first: Job) -> list[Job]:
        """Queued finals that can share ``first``'s encoder call (the lock is held)."""
        taken = [job for job in self._queue if first.batches_with(job)][: self.max_batch - 1]
        for job in taken:
            self._queue.remove(job)
        return taken

    def _run(self, batch: list[Job]) -> None:
        running = [j for j in batch if j.future.set_running_or_notify_cancel()]
        with self._cond:
            self.counts["cancelled"] += len(batch) - len(running)
            self.counts["final" if batch[0].priority == FINAL else "partial"] += len(running)
            self.counts["batches"] += bool(running)
        if not running:
            return
        try:
            results = running[0].runner.decode(running)
        except BaseException as e:  # every waiter learns of it; the worker lives on
            for job in running:
                job.future.set_exception(e)
            return
        for job, result in zip(running, results, strict=True):
            job.future.set_result(result)


def resolve_device(device: str) -> str:
    """``auto``: CUDA when CTranslate2 sees a GPU, else the CPU; ``cuda`` without one is an error, said plainly."""
    import ctranslate2

    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if device == "cuda" and gpus == 0:
        raise ModelUnavailable(
            "--device cuda: CTranslate2 sees no CUDA GPU (is the NVIDIA driver there, and a CUDA build of "
            "ctranslate2 installed?); use --device cpu or auto"
        )
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device is auto, cpu or cuda, not {device!r}")
    return device


class WhisperRunner:
    """One CTranslate2 Whisper model, decoding batches of ``Job``s, with a replica per final worker (replicas share
    their weights). A partial takes a replica only while no final decodes (the scheduler's rule), so a final that
    arrives then takes the other."""

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        compute_type: str | None = None,
        cpu_threads: int = 0,
        workers: int = 1,
        beam_size: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel

        self.path, self.device, self.beam_size = path, device, beam_size
        compute_type = compute_type or ("int8" if device == "cpu" else "int8_float16")
        self.model = WhisperModel(
            str(path), device=device, compute_type=compute_type, num_workers=workers, cpu_threads=cpu_threads
        )
        self.multilingual = self.model.model.is_multilingual
        self.languages = frozenset(self.model.supported_languages) if self.multilingual else frozenset({"en"})

    def decode(self, jobs: list[Job]) -> list[Decoded]:
        """Decode jobs that share a window and tasks: one encoder call, one generate call per task."""
        import ctranslate2

        window = jobs[0].window
        features = np.stack([self._features(j.audio, window) for j in jobs])
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(features), to_cpu=self.device == "cpu")
        detected = self._detect(jobs, encoded)  # per job: (top language, probability), or None
        languages = [self._language(j, d) for j, d in zip(jobs, detected, strict=True)]
        texts: list[dict[str, str]] = [{} for _ in jobs]
        scores: list[float | None] = [None] * len(jobs)
        for task in jobs[0].tasks:
            for i, (text, score) in enumerate(self._generate(jobs, encoded, languages, task)):
                texts[i][task] = text
                if task == jobs[0].tasks[0]:
                    scores[i] = score
        return [
            Decoded(t, lang, *(d or (None, None)), score)
            for t, lang, d, score in zip(texts, languages, detected, scores, strict=True)
        ]

    def _features(self, audio: np.ndarray, window: int) -> np.ndarray:
        f = self.model.feature_extractor(audio)[:, :window]
        return np.ascontiguousarray(np.pad(f, ((0, 0), (0, window - f.shape[1]))), dtype=np.float32)

    def _detect(self, jobs: list[Job], encoded) -> list[tuple[str, float] | None]:
        """The top detected language and its probability for each job that asks (no language, or ``detect``): one
        detection call over the batch, and none when no job asks or the model is English-only (nothing to tell)."""
        if not self.multilingual or not any(j.detects for j in jobs):
            return [None] * len(jobs)
        detected = self.model.model.detect_language(encoded)
        return [(d[0][0][2:-2], float(d[0][1])) if j.detects else None for j, d in zip(jobs, detected, strict=True)]

    def _language(self, job: Job, detected: tuple[str, float] | None) -> str:
        """The language to decode in: the job's own when given, else the detected one (English on an English-only
        model, whatever the job says)."""
        if not self.multilingual:
            return "en"
        return job.language or (detected[0] if detected else "en")

    def _generate(self, jobs: list[Job], encoded, languages: list[str], task: str) -> list[tuple[str, float]]:
        """Each job's text for ``task``, and its greedy hypothesis's average log-probability."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        tokenizers = [
            Tokenizer(self.model.hf_tokenizer, self.multilingual, task=task, language=lang) for lang in languages
        ]
        longest = max(len(j.audio) for j in jobs) / SAMPLE_RATE
        results = self.model.model.generate(
            encoded,
            [[*t.sot_sequence, t.no_timestamps] for t in tokenizers],
            beam_size=self.beam_size,
            max_length=min(448, 32 + math.ceil(longest * 12)),  # bounds a runaway hypothesis
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizers[0], [-1])),
            return_scores=True,
            return_no_speech_prob=True,
        )
        out = []
        for job, tokenizer, r in zip(jobs, tokenizers, results, strict=True):
            tokens = r.sequences_ids[0]
            text = tokenizer.decode(tokens).strip()
            avg_logprob = r.scores[0] * len(tokens) / (len(tokens) + 1)
            if r.no_speech_prob > 0.6 and avg_logprob < -1.0:
                text = ""  # a cough, a click, a breath: faster-whisper's own no-speech rule
            elif job.priority == FINAL and (_looping(text) or (task == "transcribe" and avg_logprob < -1.0)):
                # Speech translation scores about -1 when it is fine, so only a loop sends it back.
                text = self._careful(job.audio, job.language or tokenizer.language_code, task)
            out.append((text, avg_logprob))
        return out

    def _careful(self, audio: np.ndarray, language: str, task: str) -> str:
        """A doubtful greedy hypothesis, decoded once more by sampling (faster-whisper's fallback, one step of it:
        its whole ladder of temperatures could cost a busy server six decodes for one line)."""
        segments, _ = self.model.transcribe(
            audio,
            language=language,
            task=task,
            beam_size=self.beam_size,
            temperature=CAREFUL_TEMPERATURE,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
        )
        return " ".join(s.text.strip() for s in segments).strip()


def _looping(text: str) -> bool:
    """Whisper's sign of a hallucinated loop: text that compresses too well (faster-whisper's 2.4)."""
    data = text.encode()
    return len(data) > 24 and len(data) / len(zlib.compress(data)) > 2.4
