"""Argos Translate for installed or user-supplied ``.argosmodel`` packages.

No language package ships on PyPI, so this engine serves what the user brings:
packages already installed in argos's package directory, or ``.argosmodel``
files named in the configuration (installed there on first use).

Argos splits text into sentences before translating, and both of its
splitters reach the network: Stanza's pipeline fetches a resources JSON unless
told ``download_method=None``, and MiniSBD downloads its model. VoxGate
translates one utterance at a time, so each translation gets an offline
splitter instead: the package's own Stanza model loaded without download when
the package has one, otherwise a rule-based splitter.
"""

from __future__ import annotations

import re
from pathlib import Path

from models.base import TextTranslator
from models.errors import ModelUnavailable, UnsupportedLanguage

INSTALL_HINT = "pip install 'voxgate[argos]'"


class ArgosTranslate(TextTranslator):
    name = "argos"

    def __init__(self, packages: list[str | Path] | None = None, packages_dir: str | Path | None = None) -> None:
        try:
            import argostranslate.package
            import argostranslate.settings
            import argostranslate.translate
        except ImportError as e:
            raise ModelUnavailable(f"argostranslate is not installed: {INSTALL_HINT}") from e
        if packages_dir is not None:  # else argos's own directories (~/.local/share/argos-translate)
            argostranslate.settings.package_data_dir = Path(packages_dir)
            argostranslate.settings.package_dirs = [Path(packages_dir)]
            Path(packages_dir).mkdir(parents=True, exist_ok=True)
        for p in packages or []:
            path = Path(p)
            if not path.is_file():
                raise ModelUnavailable(f"argos package {path} does not exist")
            try:
                argostranslate.package.install_from_path(path)
            except Exception as e:  # argos raises bare exceptions on a bad zip or metadata
                raise ModelUnavailable(f"{path} is not a valid .argosmodel package: {e}") from e
        self._translate = argostranslate.translate
        self._translations: dict[tuple[str, str], object] = {}
        for lang in argostranslate.translate.get_installed_languages():
            for tr in lang.translations_from:
                inner = tr
                while hasattr(inner, "underlying"):  # CachedTranslation wraps the PackageTranslation
                    inner = inner.underlying
                if not hasattr(inner, "sentencizer"):
                    continue  # composite or remote translations: not ours to run
                inner.sentencizer = _OfflineSentencizer(inner.pkg)
                self._translations[(tr.from_lang.code, tr.to_lang.code)] = tr

    def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._translations)

    def translate(self, text: str, source: str, target: str) -> str:
        tr = self._translations.get((source, target))
        if tr is None:
            raise UnsupportedLanguage(f"no argos package installed for {source}->{target}")
        return tr.translate(text) if text.strip() else ""


class _OfflineSentencizer:
    """Implements argos's sentence-splitter interface without touching the network."""

    _RULE = re.compile(r"(?<=[.!?。！？])\s+")

    def __init__(self, pkg) -> None:
        self._stanza_dir = Path(pkg.package_path) / "stanza"
        self._lang = {"pb": "pt", "zt": "zh-hant"}.get(pkg.from_code, pkg.from_code)
        self._pipeline = None

    def split_sentences(self, text: str) -> list[str]:
        if self._stanza_dir.is_dir():
            if self._pipeline is None:
                import stanza

                self._pipeline = stanza.Pipeline(
                    lang=self._lang,
                    dir=str(self._stanza_dir),
                    processors="tokenize",
                    use_gpu=False,
                    logging_level="WARNING",
                    download_method=None,
                )
            return [s.text for s in self._pipeline(text).sentences]
        return [s for s in self._RULE.split(text.strip()) if s]
