"""espeak-ng: formant synthesis of about 100 languages, through its C library with ctypes.

Robotic but intelligible, small and fast (a sentence in about 10 ms): the fallback for every language no neural
voice speaks. The library comes from the ``espeakng-loader`` wheel (libespeak-ng 1.52 with its data), else from
Debian's ``espeak-ng`` (libespeak-ng.so.1 and /usr/lib/.../espeak-ng-data). It runs in synchronous mode: a synth
callback collects the samples while ``espeak_Synth`` runs. The library keeps its voice, parameters and callback in
global state, so one process-wide lock per loaded library serialises every call (each is short). Piper links its
own static copy of espeak-ng for phonemizing, loaded privately (RTLD_LOCAL), so the two never share state.

Languages: every voice whose language tag is a two-letter code (``es``, ``pt-br`` -> ``pt``, ``en-us`` -> ``en``),
plus Mandarin for ``zh``. Per language the voice is espeak-ng's own first choice, except where most callers speak
another variety (``PREFERRED``). Licence: espeak-ng is GPL-3.0-or-later.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from models import locate
from models.base import SpeechSynthesizer, language_of
from models.errors import ModelUnavailable, UnsupportedLanguage

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000  # report a data error instead of exiting the process
CHARS_UTF8, ENDPAUSE = 0x1, 0x1000  # ENDPAUSE: a sentence's pause at the end, as between sentences in speech
POS_CHARACTER = 1
RATE = 1  # espeak_PARAMETER espeakRATE, words per minute (espeak-ng's default 175)
NORMAL_RATE = 160  # conversational speech runs at about 150-170 words a minute; a little slower helps a formant voice
# Where espeak-ng's first choice is not what most callers speak: US English (the larger accent on the phone, and the
# Piper voice's), Brazilian Portuguese (about 200 of the 260 million speakers) and Latin American Spanish (about
# 420 of the 500 million). Spanish with the Klatt variant: Whisper base heard more of it (20 agent sentences: 69% of
# the words against 56%; Castilian "es" was heard worst), where for English and Portuguese it made no difference.
# ``voices={...}`` overrides any of them.
PREFERRED = {"en": "en-us", "pt": "pt-br", "es": "es-419+klatt"}
ALIASES = {"cmn": "zh"}  # three-letter tags that have a two-letter code

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated tag)*, then a zero byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _Library:
    """One loaded libespeak-ng, initialised once; ``lock`` guards its global state."""

    def __init__(self, path: Path, data: Path) -> None:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise ModelUnavailable(f"cannot load {path}: {e}; {locate.TTS_INSTALL} or apt-get install espeak-ng") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data).encode(), INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise ModelUnavailable(f"espeak-ng could not start with its data in {data}: reinstall espeak-ng")
        self.lib, self.path, self.data = lib, path, data
        self.version = lib.espeak_Info(None).decode()
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it for as long as it lives
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count: int, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # go on

    def voices(self) -> list[tuple[str, list[tuple[int, str]]]]:
        """(identifier, [(priority, language tag)]) of every voice whose dictionary is installed (the wheel's data
        lacks a few: fo, kaa); a lower priority is espeak-ng's preference."""
        with self.lock:
            listed = self.lib.espeak_ListVoices(None)
            out, i = [], 0
            while listed[i]:
                voice = listed[i].contents
                out.append((voice.identifier.decode(), _languages(voice.languages)))
                i += 1
        return [(ident, tags) for ident, tags in out if tags and self._has_dictionary(ident, tags[0][1])]

    def _has_dictionary(self, identifier: str, tag: str) -> bool:
        """A voice speaks with ``<dictionary>_dict``: its file's ``dictionary`` line, else its language's base."""
        name = tag.split("-")[0]
        try:
            for line in (self.data / "lang" / identifier).read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("dictionary ") and len(line.split()) > 1:
                    name = line.split()[1]
        except OSError:
            pass
        return (self.data / f"{name}_dict").is_file()

    def speak(self, identifier: str, text: str, rate: int) -> np.ndarray:
        data = text.encode("utf-8")
        with self.lock:
            if self.lib.espeak_SetVoiceByName(identifier.encode()) != 0:
                raise ModelUnavailable(f"espeak-ng could not load its voice {identifier!r}")
            self.lib.espeak_SetParameter(RATE, rate, 0)
            self._chunks = []
            self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | ENDPAUSE, None, None)
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def _languages(pointer: int) -> list[tuple[int, str]]:
    out = []
    while priority := ctypes.c_ubyte.from_address(pointer).value:
        tag = ctypes.string_at(pointer + 1)
        out.append((priority, tag.decode()))
        pointer += len(tag) + 2
    return out


_LIBRARIES: dict[Path, _Library] = {}
_LOADING = threading.Lock()


def library(path: Path | None = None, data: Path | None = None) -> _Library:
    """The process's copy of libespeak-ng (the installed one by default), loaded and initialised once."""
    if path is None:
        path, data = locate.espeak_library()
    with _LOADING:
        if path not in _LIBRARIES:
            _LIBRARIES[path] = _Library(path, data or path.parent / "espeak-ng-data")
        return _LIBRARIES[path]


def choose_voices(voices: list[tuple[str, list[tuple[int, str]]]]) -> dict[str, tuple[str, str]]:
    """Language -> (voice tag, identifier): a voice tagged with the bare code first (espeak-ng's ``en`` is British
    English), then its varieties (``ru-lv``), each by espeak-ng's priority; then ``PREFERRED``, where installed."""
    ranked: dict[str, tuple[tuple[int, int], tuple[str, str]]] = {}
    for identifier, languages in voices:
        for priority, tag in languages:
            base = tag.split("-")[0].lower()
            code = ALIASES.get(base, base)
            if len(code) != 2 or not code.isalpha():
                continue
            rank = (0 if tag.lower() in (code, base) else 1, priority)
            if code not in ranked or rank < ranked[code][0]:
                ranked[code] = (rank, (languages[0][1], identifier))  # named by its own (first) tag
    chosen = {code: voice for code, (_, voice) in ranked.items()}
    for code, tag in PREFERRED.items():
        if code in chosen and (voice := find_voice(voices, tag)):
            chosen[code] = voice
    return chosen


def find_voice(voices: list[tuple[str, list[tuple[int, str]]]], name: str) -> tuple[str, str] | None:
    """(tag, identifier) of the voice named by its tag ("es-419") or identifier ("roa/es-419"), with any variant
    espeak-ng applies on top ("es-419+klatt", "en-us+f3")."""
    base, plus, variant = name.partition("+")
    for identifier, languages in voices:
        if base.lower() in (identifier.lower(), languages[0][1].lower()):
            return languages[0][1] + plus + variant, identifier + plus + variant
    return None


class EspeakTts(SpeechSynthesizer):
    name = "espeak"

    def __init__(
        self,
        voices: Mapping[str, str] | None = None,
        rate: int = NORMAL_RATE,
        library_path: str | Path | None = None,
        data_path: str | Path | None = None,
    ) -> None:
        """``voices``: language -> espeak-ng voice by tag or identifier ({"es": "es"} for Castilian Spanish), over
        the defaults. ``library_path``/``data_path``: another libespeak-ng (default: the installed one)."""
        self._library = library(Path(library_path) if library_path else None, Path(data_path) if data_path else None)
        self.sample_rate = self._library.sample_rate
        self.rate = rate
        listed = self._library.voices()
        self._voices = choose_voices(listed)
        for language, name in (voices or {}).items():
            voice = find_voice(listed, name)
            if voice is None:
                raise ModelUnavailable(f"espeak-ng has no voice {name!r} (for {language!r})")
            self._voices[language] = voice

    def languages(self) -> frozenset[str]:
        return frozenset(self._voices)

    def _choice(self, language: str) -> tuple[str, str]:
        voice = self._voices.get(language_of(language))
        if voice is None:
            raise UnsupportedLanguage(f"espeak-ng has no voice for {language!r}")
        return voice

    def voice(self, language: str) -> str:
        return self._choice(language)[0]

    def synthesize(self, text: str, language: str) -> np.ndarray:
        voice = self._choice(language)[1]
        return self._library.speak(voice, text, self.rate) if text.strip() else np.zeros(0, np.int16)
