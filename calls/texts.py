"""What customers read, in their language: one catalogue of texts per language, shipped and editable.

The shipped catalogues (``web/i18n/xx.json``) cover the customer page, the link notices, the identity
check's messages and the consent wordings. An operator edits or adds a language by putting ``xx.json`` in a
directory of their own (``voxgate serve --texts DIR``): its keys replace the shipped ones, and a key it lacks
falls back to the shipped text, then to English, so a partial file never leaves a blank on the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DEFAULT = "en"
_CODE = re.compile(r"^[a-z]{2,3}$")


class TextsError(ValueError):
    """A catalogue that cannot be read: named with its file, so the operator can fix it."""


class Catalogue:
    def __init__(self, shipped: Path, override: Path | None = None) -> None:
        self._texts: dict[str, dict[str, str]] = {}
        for folder in (shipped, override):
            if folder is None:
                continue
            if not folder.is_dir():
                raise TextsError(f"{folder}: no such directory of texts")
            for path in sorted(folder.glob("*.json")):
                if _CODE.match(path.stem):
                    self._texts.setdefault(path.stem, {}).update(_read(path))
        if DEFAULT not in self._texts:
            raise TextsError(f"{shipped}: no {DEFAULT}.json")

    @property
    def languages(self) -> list[str]:
        return sorted(self._texts)

    def has(self, language: str | None) -> bool:
        return language in self._texts

    def texts(self, language: str) -> dict[str, str]:
        """Every text in ``language``, English where it has none: what a page renders from."""
        return {**self._texts[DEFAULT], **self._texts.get(language, {})}

    def render(self, language: str, key: str, /, **params: object) -> str:
        """One text with its parameters filled in; ``count`` picks the ``_one`` or ``_other`` form."""
        if "count" in params:
            key = f"{key}_one" if params["count"] == 1 else f"{key}_other"
        for lang in (language, DEFAULT):
            if (text := self._texts.get(lang, {}).get(key)) is not None:
                return text.format_map(_Lenient(params))
        return key

    def choose(self, wanted: str | None, accept_language: str | None = None) -> str:
        """The page's language: the link's when there is a catalogue for it; for ``detect`` (or a language
        with no catalogue) the browser's first preference that has one; else English."""
        if self.has(wanted):
            return wanted  # type: ignore[return-value]
        for tag in _preferences(accept_language or ""):
            if self.has(tag):
                return tag
        return DEFAULT


class _Lenient(dict):
    """A missing parameter shows as its placeholder rather than failing the page (an operator's typo)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TextsError(f"{path}: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise TextsError(f"{path}: must be one JSON object of texts by key")
    return data


def _preferences(header: str) -> list[str]:
    """``pt-BR,pt;q=0.9,en;q=0.8`` to ``["pt", "en"]``, best first."""
    ranked = []
    for i, part in enumerate(header.split(",")):
        tag, _, q = part.strip().partition(";q=")
        code = tag.split("-")[0].strip().lower()
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if _CODE.match(code):
            ranked.append((-weight, i, code))
    return list(dict.fromkeys(code for _, _, code in sorted(ranked)))
