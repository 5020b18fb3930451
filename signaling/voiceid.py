"""Voice ID: voice prints taken with consent, passive verification in calls, and the fraud watch list.

An enrolment starts with the customer's consent (who took it, when, the
wording) and gathers net speech from recordings and live calls until there is
enough (20 s); then the print is stored and replaces any earlier one. Prints
are sealed with AES-GCM under the server key, never logged and never returned
by the API. In a call, ``LiveVoice`` scores the customer's speech against the
claimed customer's print at 1.5, 3 and 6 s of net speech and screens it
against the watch list, whoever the caller claims to be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from enum import StrEnum

import av
import numpy as np

from media.speech import NetSpeech
from models.base import SAMPLE_RATE, SpeakerEncoder, VadEngine, pcm_to_float, unit
from models.voiceprint import ENROL_WINDOW_S, embed, enrol, raw_score, windows

log = logging.getLogger(__name__)

WATCH_MIN_SECONDS = 3.0  # fraud recordings are what they are; below this a print says too little


class Decision(StrEnum):
    AUTHENTICATED = "authenticated"
    NOT_AUTHENTICATED = "not_authenticated"
    INCONCLUSIVE = "inconclusive"  # not enough speech yet
    NOT_ENROLLED = "not_enrolled"
    OPTED_OUT = "opted_out"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    speech_seconds: float
    score: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict:
        return {
            "decision": self.decision.value,
            "speech_seconds": round(self.speech_seconds, 2),
            "score": None if self.score is None else round(self.score, 4),
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class Calibration:
    """Cosine thresholds by net speech duration, set for a target false-accept rate.

    The defaults are ``voxgate voiceid calibrate`` on LibriSpeech test-other (wideband, VoxGate's own WebRTC
    channel) for the bundled d-vector encoder and 20 s prints, at 1% false accepts. Scores live on another
    scale on 8 kHz telephony (the same rate needs 0.77 / 0.80 / 0.82 there, which would reject 14-60% of
    genuine wideband callers): calibrate per channel, on your own calls, and set ``--voiceid-thresholds``.

    ``print_match``: two prints of the same voice (an enrolment against the watch list). Measured with
    ``python -m benchmarks.voiceid`` (20 s prints from the two halves of each speaker's recordings): same
    speaker at least 0.87 (LibriSpeech) / 0.94 (8 kHz FSDD), another speaker at most 0.69 / 0.795; 0.83
    lies in the middle of the gap on both.
    """

    thresholds: tuple[tuple[float, float], ...] = ((1.5, 0.61), (3.0, 0.64), (6.0, 0.65))
    target_far: float = 0.01
    enrol_seconds: float = 20.0
    print_match: float = 0.83
    # ID&V acts on a voice decision from this much speech; earlier ones are shown as early indications.
    # Live (python -m benchmarks.voiceid), 1 of 10 impostors passed at 1.5 s and none at 3 s.
    decide_seconds: float = 3.0

    @classmethod
    def parse(cls, text: str) -> Calibration:
        """``"1.5:0.61,3:0.64,6:0.65"``: seconds of net speech, and the threshold from then on."""
        try:
            pairs = sorted((float(a), float(b)) for a, b in (p.split(":") for p in text.split(",")))
        except ValueError:
            raise ValueError(f"thresholds look like 1.5:0.61,3:0.64,6:0.65, not {text!r}") from None
        return cls(tuple(pairs))

    def threshold(self, seconds: float) -> float | None:
        """The threshold of the longest calibrated duration not above ``seconds`` (None: too little speech)."""
        usable = [t for s, t in self.thresholds if s <= seconds + 1e-9]
        return usable[-1] if usable else None


@dataclass(frozen=True)
class Progress:
    """Where an enrolment stands: "12 of 20 s". ``refused``: why a complete one was not stored."""

    customer_id: str
    speech_seconds: float
    needed: float
    enrolled: bool
    refused: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "speech_seconds": round(self.speech_seconds, 1)}


class EnrolmentError(ValueError):
    """An enrolment step that cannot happen (no consent on record, no speech); the message is for people."""


class VoiceId:
    """Voice prints in the store, sealed with the vault. Synchronous and CPU-bound: call it off the event loop."""

    def __init__(self, store, vault, encoders: Sequence[SpeakerEncoder], calibration: Calibration = Calibration()):
        self.store, self.vault, self.encoders, self.calibration = store, vault, list(encoders), calibration

    # -- enrolment ---------------------------------------------------------------------------------------------

    def consent(self, customer_id: str, *, by: str, wording: str) -> Progress:
        """Record the customer's consent and start an enrolment (the current print stays until it completes)."""
        if not wording.strip():
            raise EnrolmentError("enrolment needs the consent wording the customer agreed to")
        self.store.start_enrolment(customer_id, consent_by=by, consent_wording=wording)
        self.store.audit(by, "voiceprint.consent", customer_id)
        return Progress(customer_id, 0.0, self.calibration.enrol_seconds, False)

    def add_speech(self, customer_id: str, speech: np.ndarray) -> Progress:
        """Add float32 16 kHz net speech to the customer's enrolment; at enough speech, store the print.

        The enrolment is refused (and dropped) when its voice matches the fraud watch list.
        """
        row = self.store.enrolment(customer_id)
        if row is None:
            raise EnrolmentError(f"no consent on record for {customer_id}: record the customer's consent first")
        needed = self.calibration.enrol_seconds
        sums, weight = self._open_sums(row)
        for chunk in windows(speech) if len(speech) else []:
            # Each window counts by its length: the last second of a call says less than a full window.
            w = min(1.0, len(chunk) / (ENROL_WINDOW_S * SAMPLE_RATE))
            for e in self.encoders:
                sums[e.name] = sums.get(e.name, 0) + w * e.embed(chunk)
            weight += w
        seconds = row["speech_seconds"] + len(speech) / SAMPLE_RATE
        if seconds < needed - 1e-6:
            sealed = self.vault.seal(_dump({"weight": weight, "sums": sums}), f"enrolment:{customer_id}")
            self.store.update_enrolment(customer_id, sealed, seconds)
            return Progress(customer_id, seconds, needed, False)
        vectors = {k: unit(v) for k, v in sums.items()}
        self.store.drop_enrolment(customer_id)
        if hits := self._watch_matches(vectors):
            self.store.audit("voiceid", "voiceprint.refused", customer_id, f"matches the watch list: {hits}")
            return Progress(customer_id, seconds, needed, False, refused="the voice matches the fraud watch list")
        self._store_print(customer_id, vectors, seconds, row["consent_by"], row["consent_wording"])
        self.store.audit(row["consent_by"], "voiceprint.enrol", customer_id, f"{seconds:.1f} s of speech")
        return Progress(customer_id, seconds, needed, True)

    def enrol(self, customer_id: str, speech: np.ndarray, *, by: str, wording: str) -> Progress:
        """Consent and speech at once (recordings the customer agreed to, say): a fresh enrolment."""
        self.consent(customer_id, by=by, wording=wording)
        return self.add_speech(customer_id, speech)

    def watch(self, customer_id: str, speech: np.ndarray, *, reason: str, by: str) -> Progress:
        """Put a voice on the fraud watch list from recordings (no consent: the basis is the stated reason)."""
        seconds = len(speech) / SAMPLE_RATE
        if not reason.strip():
            raise EnrolmentError("a watch-list entry needs its reason (a case number, say)")
        if seconds < WATCH_MIN_SECONDS:
            return Progress(customer_id, seconds, WATCH_MIN_SECONDS, False)
        self._store_print(customer_id, enrol(self.encoders, speech).vectors, seconds, by, reason, watch=reason)
        self.store.audit(by, "voiceprint.watchlist", customer_id, f"{seconds:.1f} s of speech")
        return Progress(customer_id, seconds, WATCH_MIN_SECONDS, True)

    def flag(self, customer_id: str, *, reason: str, by: str) -> bool:
        """Mark an existing print as a known fraudster's: from now on every call is screened against it."""
        if not self.store.set_watchlist(customer_id, reason):
            return False
        self.store.audit(by, "voiceprint.watchlist", customer_id, reason)
        return True

    def _store_print(self, customer_id, vectors, seconds, by, wording, watch: str | None = None) -> None:
        sealed = self.vault.seal(_dump(vectors), f"voiceprint:{customer_id}")
        self.store.put_voiceprint(
            customer_id,
            sealed,
            seconds,
            consent_by=by,
            consent_wording=wording,
            watchlist=watch is not None,
            watch_reason=watch,
        )

    def _open_sums(self, row) -> tuple[dict[str, np.ndarray], float]:
        if row["sealed"] is None:
            return {}, 0.0
        data = json.loads(self.vault.open(row["sealed"], f"enrolment:{row['customer_id']}"))
        return {k: np.asarray(v, np.float32) for k, v in data["sums"].items()}, data["weight"]

    def _print(self, row) -> dict[str, np.ndarray]:
        data = json.loads(self.vault.open(row["sealed"], f"voiceprint:{row['customer_id']}"))
        return {k: np.asarray(v, np.float32) for k, v in data.items()}

    # -- verification and screening ----------------------------------------------------------------------------

    def check(self, claimed: str | None, speech: np.ndarray, screen: bool = True) -> tuple[Verdict | None, list[dict]]:
        """Verify ``claimed`` (if any) and screen the watch list, embedding the speech once."""
        seconds = len(speech) / SAMPLE_RATE
        test: dict[str, np.ndarray] | None = None

        def embedded() -> dict[str, np.ndarray]:
            nonlocal test
            if test is None:
                test = embed(self.encoders, speech)
            return test

        verdict = self._verify(claimed, seconds, embedded) if claimed else None
        return verdict, (self._screen(seconds, embedded) if screen else [])

    def verify(self, customer_id: str, speech: np.ndarray) -> Verdict:
        return self.check(customer_id, speech, screen=False)[0]  # type: ignore[return-value]

    def screen(self, speech: np.ndarray) -> list[dict]:
        """Watch-list hits for this speech, whoever the caller claims to be."""
        return self.check(None, speech)[1]

    def _verify(self, customer_id: str, seconds: float, embedded: Callable[[], dict]) -> Verdict:
        row = self.store.voiceprint(customer_id)
        if row is not None and row["opted_out"]:
            return Verdict(Decision.OPTED_OUT, seconds)
        if row is None or row["sealed"] is None or row["watchlist"]:
            return Verdict(Decision.NOT_ENROLLED, seconds)
        threshold = self.calibration.threshold(seconds)
        if threshold is None:
            return Verdict(Decision.INCONCLUSIVE, seconds)
        score = raw_score(self._print(row), embedded())
        decision = Decision.AUTHENTICATED if score >= threshold else Decision.NOT_AUTHENTICATED
        return Verdict(decision, seconds, score, threshold)

    def _screen(self, seconds: float, embedded: Callable[[], dict]) -> list[dict]:
        threshold = self.calibration.threshold(seconds)
        rows = self.store.watchlist()
        if threshold is None or not rows:
            return []
        return self._hits(rows, embedded(), threshold)

    def _watch_matches(self, vectors: dict[str, np.ndarray]) -> list[dict]:
        return self._hits(self.store.watchlist(), vectors, self.calibration.print_match)

    def _hits(self, rows, test: dict[str, np.ndarray], threshold: float) -> list[dict]:
        hits = []
        for row in rows:
            score = raw_score(self._print(row), test)
            if score >= threshold:
                hits.append(
                    {"watchlist_id": row["customer_id"], "reason": row["watch_reason"], "score": round(score, 4)}
                )
        return hits

    # -- status, deletion, opt-out -----------------------------------------------------------------------------

    def enrolled(self, customer_id: str) -> bool:
        row = self.store.voiceprint(customer_id)
        return row is not None and row["sealed"] is not None and not row["watchlist"] and not row["opted_out"]

    def status(self, customer_id: str) -> dict:
        row, pending = self.store.voiceprint(customer_id), self.store.enrolment(customer_id)
        out: dict = {"customer_id": customer_id, "enrolled": False, "opted_out": False, "watchlist": False}
        if row is not None:
            out.update(
                enrolled=row["sealed"] is not None and not row["watchlist"],
                opted_out=bool(row["opted_out"]),
                watchlist=bool(row["watchlist"]),
                speech_seconds=row["speech_seconds"],
                consent={"by": row["consent_by"], "at": row["consent_at"], "wording": row["consent_wording"]},
            )
        if pending is not None:
            out["enrolment"] = {
                "speech_seconds": round(pending["speech_seconds"], 1),
                "needed": self.calibration.enrol_seconds,
                "consent": {
                    "by": pending["consent_by"],
                    "at": pending["consent_at"],
                    "wording": pending["consent_wording"],
                },
            }
        return out

    def delete(self, customer_id: str, actor: str) -> bool:
        """A deletion request: the print, an enrolment in progress and every score derived from them."""
        had_enrolment = self.store.enrolment(customer_id) is not None
        gone = self.store.delete_voiceprint(customer_id) or had_enrolment
        self.store.audit(actor, "voiceprint.delete", customer_id)
        return gone

    def opt_out(self, customer_id: str, actor: str) -> None:
        self.store.opt_out_voiceprint(customer_id)
        self.store.audit(actor, "voiceprint.opt_out", customer_id)


def _dump(data: dict) -> bytes:
    """JSON of nested dicts of vectors (the plaintext that gets sealed)."""
    return json.dumps(data, default=lambda v: v.tolist()).encode()


# -- in a call -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiceVerdict:
    """A verification decision in a call; ``timing``: when its speech had arrived, and when it was decided."""

    link_id: str
    claimed: str
    verdict: Verdict
    timing: dict

    early: bool = False  # on less speech than ID&V decides from: shown, not acted on

    def to_message(self) -> dict:
        return {
            "type": "voiceid",
            "link_id": self.link_id,
            "claimed": self.claimed,
            **self.verdict.to_dict(),
            "early": self.early,
            "timing": self.timing,
        }


@dataclass(frozen=True)
class WatchlistAlert:
    link_id: str
    hits: list[dict]
    speech_seconds: float

    def to_message(self) -> dict:
        return {
            "type": "voiceid_alert",
            "link_id": self.link_id,
            "risk": "high",
            "hits": self.hits,
            "speech_seconds": round(self.speech_seconds, 2),
        }


@dataclass(frozen=True)
class EnrolmentUpdate:
    link_id: str
    progress: Progress

    def to_message(self) -> dict:
        return {"type": "enrolment", "link_id": self.link_id, **self.progress.to_dict()}


VoiceEvent = VoiceVerdict | WatchlistAlert | EnrolmentUpdate


class LiveVoice:
    """Voice ID in one call, fed the customer's audio frames on the event loop.

    At 1.5, 3 and 6 s of net speech the speech so far is screened against the watch list and, once the
    caller's identity is claimed (``claim``), verified against that customer's print; a claim made later
    is verified at once on the speech already heard. During an enrolment (``enrol``, after consent) the
    speech from then on goes to the customer's enrolment. Model work runs in ``executor``.
    """

    CHECKPOINTS = (1.5, 3.0, 6.0)

    def __init__(
        self,
        voice_id: VoiceId,
        link_id: str,
        vad: VadEngine,
        emit: Callable[[VoiceEvent], None],
        executor: Executor | None = None,
    ) -> None:
        self.voice_id, self.link_id = voice_id, link_id
        self._emit, self._executor = emit, executor
        self._tap = NetSpeech(vad)
        self._speech: list[np.ndarray] = []  # up to the last checkpoint
        self._samples = 0
        self._next = 0
        self.claimed: str | None = None
        self._enrolling: str | None = None
        self._enrol_speech: list[np.ndarray] = []
        self._enrol_samples = 0
        self._enrol_base = 0.0  # seconds the enrolment had before this call
        self._reported = 0
        self._tasks: set[asyncio.Task] = set()
        self._in_order = asyncio.Lock()  # decisions reach the console in the order their speech was heard

    def feed(self, frame: av.AudioFrame) -> None:
        new = self._tap.push_frame(frame)
        if not len(new):
            return
        if self._next < len(self.CHECKPOINTS):
            self._speech.append(new)
            self._samples += len(new)
            if self._samples >= self.CHECKPOINTS[self._next] * SAMPLE_RATE:
                self._next += 1
                self._spawn(self._check(self._heard(), time.time(), screen=True))
        if self._enrolling:
            self._collect(new)

    def claim(self, customer_id: str) -> None:
        """The caller says (or ID&V found) they are this customer: verify now, and at each checkpoint to come."""
        self.claimed = customer_id
        self._spawn(self._check(self._heard(), time.time(), screen=False))

    def enrol(self, customer_id: str, already: float) -> None:
        """Collect the speech from now on into ``customer_id``'s enrolment, which has ``already`` seconds."""
        self._enrolling, self._enrol_speech, self._enrol_samples = customer_id, [], 0
        self._enrol_base, self._reported = already, int(already)

    async def close(self) -> None:
        """The call ended: what an unfinished enrolment collected is kept, so the next call can go on."""
        if self._enrolling and self._enrol_speech:
            self._save_enrolment()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _heard(self) -> np.ndarray:
        return pcm_to_float(np.concatenate(self._speech)) if self._speech else np.zeros(0, np.float32)

    def _collect(self, new: np.ndarray) -> None:
        self._enrol_speech.append(new)
        self._enrol_samples += len(new)
        seconds = self._enrol_base + self._enrol_samples / SAMPLE_RATE
        if seconds >= self.voice_id.calibration.enrol_seconds:
            self._save_enrolment()
        elif int(seconds) > self._reported:  # "12 of 20 s", a second at a time
            self._reported = int(seconds)
            progress = Progress(self._enrolling, seconds, self.voice_id.calibration.enrol_seconds, False)
            self._emit(EnrolmentUpdate(self.link_id, progress))

    def _save_enrolment(self) -> None:
        """Hand what was collected to the enrolment (off the loop); collecting stops here, not when it is saved."""
        customer, speech = self._enrolling, pcm_to_float(np.concatenate(self._enrol_speech))
        self._enrolling, self._enrol_speech = None, []

        async def save() -> None:
            loop = asyncio.get_running_loop()
            progress = await loop.run_in_executor(self._executor, self.voice_id.add_speech, customer, speech)
            self._emit(EnrolmentUpdate(self.link_id, progress))

        self._spawn(save())

    async def _check(self, speech: np.ndarray, reached: float, screen: bool) -> None:
        claimed = self.claimed
        if not claimed and not screen:
            return
        loop = asyncio.get_running_loop()
        async with self._in_order:
            verdict, hits = await loop.run_in_executor(self._executor, self.voice_id.check, claimed, speech, screen)
        if verdict is not None:
            timing = {"speech_reached": reached, "decided": time.time()}
            early = verdict.speech_seconds < self.voice_id.calibration.decide_seconds - 1e-6
            self._emit(VoiceVerdict(self.link_id, claimed, verdict, timing, early))
        if hits:
            self._emit(WatchlistAlert(self.link_id, hits, len(speech) / SAMPLE_RATE))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("voice ID in call %s failed", self.link_id, exc_info=task.exception())
