"""The interface of each stage, and the results they return.

Audio crosses these interfaces as 16 kHz mono: ``int16`` arrays for VAD and
streaming ASR (what WebRTC and files decode to), ``float32`` in [-1, 1] for
speaker encoders (what their feature extractors want). Times are seconds of
audio from the start of the stream the engine was fed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


class VadEngine(ABC):
    """Frame classifier: is this frame speech? Stateful engines keep state per instance."""

    name: str
    frame_samples: int

    @abstractmethod
    def is_speech(self, frame: np.ndarray) -> bool:
        """Classify one frame of exactly ``frame_samples`` int16 samples."""

    def reset(self) -> None:
        """Forget any state carried between frames."""


@dataclass(frozen=True, slots=True)
class AsrResult:
    """A hypothesis for a stretch of audio; ``final`` results are never revised.

    ``language`` is the language the text was decoded in. ``detected_language`` and ``language_probability`` are
    what language identification heard in the same audio (its top language and that language's probability), on
    finals of streams that detected (``language=None`` or ``detect=True``); None where the engine does not detect.
    They may differ from ``language`` when the stream was told a language but also asked to detect: that is how a
    caller votes on, and corrects, a language it is not yet sure of.
    """

    text: str
    start: float
    end: float
    final: bool
    language: str
    translation: str | None = None  # English, from the same decode, when the stream was opened with translate=True
    detected_language: str | None = None
    language_probability: float | None = None


class AsrStream(ABC):
    """One utterance (or stream) being recognised: feed PCM, collect results.

    ``language_passes``: language-ID decodes this stream paid for beyond its transcript (a recheck's), for the cost
    to be counted."""

    language_passes: int = 0

    @abstractmethod
    def accept(self, pcm: np.ndarray, *, partial: bool = True) -> list[AsrResult]:
        """Feed int16 16 kHz mono samples; return any new partial or final results.

        ``partial=False``: keep the audio but compute no partial now (a pause, or the end is already known).
        """

    @abstractmethod
    def finish(self) -> list[AsrResult]:
        """End of audio: return the final result(s) for whatever is still pending."""

    def guess_final(self) -> list[AsrResult] | None:
        """The final as if the utterance ended now, without ending the stream: a speculative final, started at
        the first short pause so that it is ready when the endpoint confirms the pause. None: this engine does
        not guess (its final needs the end), or the guess was withdrawn."""
        return None

    def withdraw_guess(self) -> None:
        """Speech resumed after the pause: a guess not yet started is not worth its decode."""


class AsrEngine(ABC):
    """A speech recogniser that opens streams; one engine serves many streams."""

    name: str

    @abstractmethod
    def languages(self) -> frozenset[str]:
        """ISO 639-1 codes this engine can transcribe."""

    @abstractmethod
    def stream(
        self,
        language: str | None = None,
        *,
        task: str = "transcribe",
        partials: bool = True,
        translate: bool = False,
        detect: bool | str = False,
    ) -> AsrStream:
        """Open a stream. ``language=None`` asks the engine to detect it (if it can).

        ``task="translate"`` asks for English text from speech in another language
        (Whisper's own speech translation); ``translate=True`` asks for both, each
        final carrying its English ``translation`` from the same decode. Engines
        that cannot raise UnsupportedLanguage.

        ``detect=True``: decode in ``language`` (when given) but also identify the spoken language of every final,
        reported in its ``detected_language`` and ``language_probability``; the stream never latches a detected
        language of its own. Engines that cannot detect ignore it (those fields stay None). ``detect="recheck"``: the
        language is settled, but a change must still be noticed: identify it only where that is cheap, or where the
        decode looks unsure of the settled language (a caller who switched language mid-call).
        """


class TextTranslator(ABC):
    """Text-to-text machine translation for a fixed set of language pairs.

    ``tier`` says what to expect of its translations, shown beside each route and each translated line: "neural"
    (a trained translation model) or "rule-based" (dictionaries and transfer rules: literal, visible errors).
    """

    name: str
    tier: str = "neural"

    @abstractmethod
    def pairs(self) -> frozenset[tuple[str, str]]:
        """(source, target) pairs this engine translates."""

    @abstractmethod
    def translate(self, text: str, source: str, target: str) -> str:
        """Translate one utterance."""


class SpeechSynthesizer(ABC):
    """Text to speech, for the languages it has voices for. One engine serves every call: implementations guard
    whatever is not thread-safe, since calls synthesise on executor threads at once."""

    name: str
    sample_rate: int

    @abstractmethod
    def languages(self) -> frozenset[str]:
        """ISO 639-1 codes it can speak."""

    @abstractmethod
    def voice(self, language: str) -> str:
        """The name of the voice it speaks ``language`` with (for the console and ``voxgate models``)."""

    @abstractmethod
    def synthesize(self, text: str, language: str) -> np.ndarray:
        """Speak ``text`` (a sentence or so): int16 mono samples at ``sample_rate``. Raises UnsupportedLanguage."""


class SpeakerEncoder(ABC):
    """Maps speech to a fixed-size, L2-normalised voice embedding; cosine similarity compares two."""

    name: str
    dim: int

    @abstractmethod
    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Embed float32 16 kHz mono speech; returns a unit vector of length ``dim``."""


class SpoofDetector(ABC):
    """Tells live human speech (bona fide) from a replayed recording or a synthetic voice.

    ``score`` is higher for bona fide speech; a calibrated threshold (``voxgate voiceid spoof-eval``) turns it
    into a decision. ``seconds``: how much speech the detector looks at (it scores the first that much).
    """

    name: str
    seconds: float

    @abstractmethod
    def score(self, audio: np.ndarray) -> float:
        """Score float32 16 kHz mono speech: higher is more likely a live human voice."""


def language_of(tag: str) -> str:
    """A locale as platforms and voices write it (``pt-BR``, ``en_US``, ``ES``) to its language (``pt``, ``en``,
    ``es``): engines, voices and routes are chosen by language, not by region."""
    return tag.replace("_", "-").split("-")[0].lower()


def pcm_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM to float32 in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


def unit(v: np.ndarray) -> np.ndarray:
    """L2-normalise; a zero vector stays zero rather than becoming NaN."""
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)
