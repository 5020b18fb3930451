"""Which engine translates a language pair: a neural text engine that covers it, else Whisper's speech translation
(into English), else a rule-based text engine, else two text engines through a pivot language (en->fr as
en->es->fr)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from models.base import TextTranslator
from models.errors import UnsupportedLanguage

TIER_ORDER = ("neural", "rule-based")  # best first; a tier not listed ranks below them


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
        """What to expect of its translations: "none", the text engine's tier ("neural", "rule-based", or
        "rule-based, via es" through a pivot), or "speech" (Whisper's own speech translation, a neural model)."""
        if self.kind == "text":
            assert self.engine is not None
            return self.engine.tier
        return self.kind


class RouteInfo(NamedTuple):
    """One row of the route table: ``engine`` is the text engine's name, or "whisper" for speech translation."""

    source: str
    target: str
    engine: str
    tier: str


def _rank(tier: str) -> int:
    return TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER)


class PivotTranslator(TextTranslator):
    """Two hops through a pivot language, for a pair no engine translates directly. Its tier is the weaker hop's,
    with the pivot named ("rule-based, via es"): each hop's errors carry into the next."""

    def __init__(self, first: TextTranslator, second: TextTranslator, source: str, via: str, target: str) -> None:
        self.first, self.second, self.via = first, second, via
        self._pair = (source, target)
        self.name = first.name if first.name == second.name else f"{first.name}+{second.name}"
        self.weaker = max(first.tier, second.tier, key=_rank)
        self.tier = f"{self.weaker}, via {via}"

    def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset({self._pair})

    def translate(self, text: str, source: str, target: str) -> str:
        if (source, target) != self._pair:
            raise UnsupportedLanguage(f"this pivot translates {self._pair[0]}->{self._pair[1]}, not {source}->{target}")
        middle = self.first.translate(text, source, self.via)
        return self.second.translate(middle, self.via, target) if middle else ""


class Router:
    """Routes, in order of preference: the same language (none); a neural text engine that covers the pair;
    Whisper's speech translation (``speech_languages`` into English); a rule-based text engine; two text engines
    through one pivot language (the best tiers, then the pivot's code). A direct pair is the first translator's in
    ``translators`` that covers it. Computed once, from the translators given."""

    def __init__(self, translators: list[TextTranslator], speech_languages: frozenset[str] = frozenset()) -> None:
        self.translators = translators
        self.speech_languages = speech_languages
        self._direct: dict[tuple[str, str], TextTranslator] = {}
        for tr in translators:
            for pair in sorted(tr.pairs()):
                self._direct.setdefault(pair, tr)
        self._pivots = self._find_pivots()

    def _find_pivots(self) -> dict[tuple[str, str], PivotTranslator]:
        pivots: dict[tuple[str, str], PivotTranslator] = {}
        for (source, via), first in sorted(self._direct.items()):
            for (via2, target), second in sorted(self._direct.items()):
                if via2 != via or target == source or (source, target) in self._direct:
                    continue
                candidate = PivotTranslator(first, second, source, via, target)
                known = pivots.get((source, target))
                if known is None or (_rank(candidate.weaker), via) < (_rank(known.weaker), known.via):
                    pivots[(source, target)] = candidate
        return pivots

    def pairs(self) -> list[str]:
        """Every available route, as ``src->tgt`` strings, for error messages and ``voxgate models``."""
        text = {f"{s}->{t}" for s, t in [*self._direct, *self._pivots]}
        speech = "any Whisper language->en (speech translation)" if self.speech_languages else None
        return sorted(text) + ([speech] if speech else [])

    def find(self, source: str, target: str) -> Route | None:
        """The route from ``source`` to ``target``, or None where there is none."""
        if source == target:
            return Route(source, target, "none")
        direct = self._direct.get((source, target))
        if direct is not None and direct.tier == "neural":
            return Route(source, target, "text", direct)
        if target == "en" and source in self.speech_languages:
            return Route(source, target, "speech")  # a neural model, from the same decode: over rule-based text
        if direct is not None:
            return Route(source, target, "text", direct)
        if (source, target) in self._pivots:
            return Route(source, target, "text", self._pivots[(source, target)])
        return None

    def route(self, source: str, target: str) -> Route:
        found = self.find(source, target)
        if found is None:
            raise UnsupportedLanguage(
                f"no translation route from {source!r} to {target!r}; available: {', '.join(self.pairs()) or 'none'}"
            )
        return found

    def both_ways(self, a: str, b: str) -> None:
        """Raise ``UnsupportedLanguage`` unless ``a`` translates into ``b`` and ``b`` into ``a``: a call needs both."""
        self.route(a, b)
        self.route(b, a)

    def tiers(self, language: str, others: frozenset[str]) -> dict[str, tuple[str | None, str | None]]:
        """For each of ``others``: the tier of the route into ``language`` and of the route out of it (None where
        there is none), so that a console can say before a call what its subtitles will be like."""

        def tier(source: str, target: str) -> str | None:
            found = self.find(source, target)
            return found.tier if found is not None else None

        return {other: (tier(other, language), tier(language, other)) for other in sorted(others)}

    def table(self, languages: frozenset[str] | None = None) -> list[RouteInfo]:
        """The route the router takes between every two of ``languages`` (default: every language a text engine
        handles), where there is one: for ``voxgate models`` and the console."""
        if languages is None:
            languages = frozenset(lang for pair in self._direct for lang in pair)
        rows = []
        for source in sorted(languages):
            for target in sorted(languages - {source}):
                found = self.find(source, target)
                if found is not None:
                    engine = found.engine.name if found.engine is not None else "whisper"
                    rows.append(RouteInfo(source, target, engine, found.tier))
        return rows
