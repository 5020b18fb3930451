"""Which synthesizer speaks each language, and translated text cut into sentences to speak one after another.

``Voices`` takes the synthesizers in preference order (Piper's neural voices first, espeak-ng's formant voices as
the fallback for every other language): per language, the first that speaks it. ``sentences`` cuts a translation
so that its first sentence can play while the rest is synthesised; a long sentence is cut again at a clause comma,
so the first thing heard is short and comes soon.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from models.base import SpeechSynthesizer, language_of
from models.errors import UnsupportedLanguage


class Voices:
    def __init__(self, synthesizers: Sequence[SpeechSynthesizer]) -> None:
        self.synthesizers = list(synthesizers)
        self._by_language: dict[str, SpeechSynthesizer] = {}
        for synthesizer in self.synthesizers:
            for language in sorted(synthesizer.languages()):
                self._by_language.setdefault(language, synthesizer)

    def for_language(self, language: str) -> SpeechSynthesizer:
        synthesizer = self._by_language.get(language_of(language))
        if synthesizer is None:
            known = ", ".join(sorted(self._by_language)) or "none"
            raise UnsupportedLanguage(f"no voice speaks {language!r}; voices speak: {known}")
        return synthesizer

    def languages(self) -> frozenset[str]:
        return frozenset(self._by_language)

    def table(self) -> list[tuple[str, str, str]]:
        """(language, engine, voice) for every language, in language order."""
        return [(lang, s.name, s.voice(lang)) for lang, s in sorted(self._by_language.items())]


LONG = 80  # characters: a sentence longer than this is cut at a clause comma
SHORTEST = 20  # characters: no clause shorter than this is cut off on its own (a lone "Yes," sounds choppy)
# Words whose period never ends a sentence: titles before a name, and Latin and Spanish abbreviations. Lower case,
# without the final period. Tokens with inner periods ("e.g", "U.S", "EE.UU") and single letters (initials) count too.
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr sra srta dra drs st mt mme mlle hr fr ing lic gen col capt lt sgt rev hon "
    "jr vs etc approx dept est ca cf al ud uds vd vds av avda tel pág pag aprox máx mín "
    "jan feb mar apr jun jul aug sep sept oct nov dec ene abr ago dic".split()
)
BEFORE_NUMBER = frozenset({"no", "nr", "nº", "núm", "num", "art", "p", "pp", "vol", "fig", "ch", "cap"})  # "No. 5"
_END = re.compile(r"(?:\.{3}|[.!?…;])+[\"'”’»)\]]*")  # a sentence's end: . ! ? … ; ..., then closing quotes
_OPENERS = "¿¡"
_CLAUSE = re.compile(r"(?:,|:| —| –)\s")  # a comma, colon or dash followed by a space: not "1,000" nor "10:30"
_LAST_WORD = re.compile(r"([^\s\"'“‘«(\[¿¡]+)$")
_NEXT_WORD = re.compile(r"\s*(\S+)")
_DOTTED = re.compile(r"^(?:\w{1,3}\.)+\w{1,3}$")  # e.g, i.e, U.S, a.m, EE.UU


def sentences(text: str) -> list[str]:
    """Sentences (and clauses of long ones) to synthesise one after another, in order, each stripped."""
    out: list[str] = []
    for line in text.splitlines():
        for sentence in _split_sentences(line):
            out += _clauses(sentence)
    return [s for s in out if any(c.isalnum() for c in s)]


def _split_sentences(text: str) -> list[str]:
    pieces, start = [], 0
    for m in _END.finditer(text):
        after = text[m.end() : m.end() + 1]
        if after and not after.isspace() and after not in _OPENERS:
            continue  # "3.5", "example.com", "?!" inside a word
        if m.group().rstrip("\"'”’»)]") == "." and _abbreviation(text[: m.start()], text[m.end() :]):
            continue
        if m.group()[0] in ".…" and m.group().rstrip("\"'”’»)]") != "." and text[m.end() :].lstrip()[:1].islower():
            continue  # an ellipsis inside a sentence: "Wait... let me check"
        pieces.append(text[start : m.end()].strip())
        start = m.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _abbreviation(before: str, after: str) -> bool:
    """Is the word before this period an abbreviation, rather than the end of a sentence?"""
    last = _LAST_WORD.search(before)
    if last is None:
        return False
    word = last.group(1).lower()
    if word in ABBREVIATIONS or _DOTTED.match(word) or (len(word) == 1 and word.isalpha()):
        return True
    following = _NEXT_WORD.match(after)
    return word in BEFORE_NUMBER and following is not None and following.group(1)[0].isdigit()


def _clauses(sentence: str) -> list[str]:
    """A sentence longer than ``LONG``, cut at its first clause boundary that leaves both sides at least
    ``SHORTEST`` long; what is left is cut the same way."""
    if len(sentence) <= LONG:
        return [sentence]
    for m in _CLAUSE.finditer(sentence):
        head, tail = sentence[: m.end()].strip(), sentence[m.end() :].strip()
        if len(head) >= SHORTEST and len(tail) >= SHORTEST:
            return [head, *_clauses(tail)]
    return [sentence]
