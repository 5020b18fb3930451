"""Which engine translates a language pair: text MT where a model exists, else Whisper's speech translation."""

from __future__ import annotations

from dataclasses import dataclass

from models.base import TextTranslator
from models.errors import UnsupportedLanguage


@dataclass(frozen=True, slots=True)
class Route:
    """How speech in ``source`` reaches text in ``target``.

    ``kind`` is ``"none"`` (same language), ``"text"`` (transcribe, then ``engine``
    translates the text) or ``"speech"`` (Whisper decodes the audio a second
    time with ``task="translate"``; English targets only).
    """

    source: str
    target: str
    kind: str
    engine: TextTranslator | None = None

    @property
    def tier(self) -> str:
        """What to expect of its translations: "none", the text engine's tier ("neural", "rule-based"), or
        "speech" (Whisper's own speech translation, a neural model)."""
        if self.kind == "text":
            assert self.engine is not None
            return self.engine.tier
        return self.kind


class Router:
    def __init__(self, translators: list[TextTranslator], speech_languages: frozenset[str] = frozenset()) -> None:
        self.translators = translators
        self.speech_languages = speech_languages

    def pairs(self) -> list[str]:
        """Every available route, as ``src->tgt`` strings, for error messages and ``voxgate models``."""
        text = {f"{s}->{t}" for tr in self.translators for s, t in tr.pairs()}
        speech = "any Whisper language->en (speech translation)" if self.speech_languages else None
        return sorted(text) + ([speech] if speech else [])

    def route(self, source: str, target: str) -> Route:
        if source == target:
            return Route(source, target, "none")
        for tr in self.translators:
            if (source, target) in tr.pairs():
                return Route(source, target, "text", tr)
        if target == "en" and source in self.speech_languages:
            return Route(source, target, "speech")
        raise UnsupportedLanguage(
            f"no translation route from {source!r} to {target!r}; available: {', '.join(self.pairs()) or 'none'}"
        )
