"""Voice ID: voice prints taken with consent, passive verification in calls, and the fraud watch list.

An enrolment starts with the customer's consent (who took it, when, the
wording) and gathers net speech from recordings and live calls until there is
enough (20 s); then the print is stored and replaces any earlier one. Prints
are sealed with AES-GCM under the server key, never logged and never returned
by the API. Prints are kept per encoder: one made with another encoder than
the server's does not verify (it is "not enrolled" for this server), it never
breaks a call. In a call, ``identity.live.LiveVoice`` uses this service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np

from models.base import SAMPLE_RATE, SpeakerEncoder, unit
from models.voiceprint import ENROL_WINDOW_S, embed, enrol, raw_score, windows
from store.base import Consent, EnrolmentChange, EnrolmentRecord, Store, VoicePrintRecord
from store.errors import Invalid
from store.security import Vault

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

    thresholds: tuple[tuple[float, float], ...] = ((1.5, 0.61), (3.0, 0.64), (6.0, 0.65))  # (seconds, cosine)
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

    @property
    def checkpoints(self) -> tuple[float, ...]:
        """The seconds of net speech at which a call is verified: one decision per calibrated duration."""
        return tuple(s for s, _ in self.thresholds)

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


class EnrolmentError(Invalid):
    """An enrolment step that cannot happen (no consent on record, no speech); the message is for people."""


class VoiceId:
    """Voice prints in the store, sealed with the vault. Synchronous and CPU-bound: call it off the event loop."""

    def __init__(
        self, store: Store, vault: Vault, encoders: Sequence[SpeakerEncoder], calibration: Calibration = Calibration()
    ) -> None:
        self.store, self.vault, self.encoders, self.calibration = store, vault, list(encoders), calibration
        self.prints = store.voiceprints

    # -- enrolment ---------------------------------------------------------------------------------------------

    def consent(self, customer_id: str, *, by: str, wording: str) -> Progress:
        """Record the customer's consent and start an enrolment (the current print stays until it completes)."""
        if not wording.strip():
            raise EnrolmentError("enrolment needs the consent wording the customer agreed to")
        self.prints.start_enrolment(customer_id, Consent(by, self.store.clock(), wording))
        self.store.audit.add(by, "voiceprint.consent", customer_id)
        return Progress(customer_id, 0.0, self.calibration.enrol_seconds, False)

    def add_speech(self, customer_id: str, speech: np.ndarray) -> Progress:
        """Add float32 16 kHz net speech to the customer's enrolment; at enough speech, store the print.

        The embeddings are computed first, then added to the stored sums in one transaction, so concurrent
        recordings for one customer all count. The enrolment is refused (and dropped) when its voice matches
        the fraud watch list.
        """
        if self.prints.enrolment(customer_id) is None:
            raise EnrolmentError(f"no consent on record for {customer_id}: record the customer's consent first")
        added: dict[str, np.ndarray] = {}
        weight = 0.0
        for chunk in windows(speech) if len(speech) else []:
            # Each window counts by its length: the last second of a call says less than a full window.
            w = min(1.0, len(chunk) / (ENROL_WINDOW_S * SAMPLE_RATE))
            for e in self.encoders:
                added[e.name] = added.get(e.name, 0) + w * e.embed(chunk)
            weight += w
        outcome: list[tuple[Progress, str]] = []  # the decision, and who/why for the audit
        watchlist = self.prints.watchlist()  # read before the transaction: screening may take a while

        def change(row: EnrolmentRecord) -> EnrolmentChange:
            sums, total = self._open_sums(row)
            for name, v in added.items():
                sums[name] = sums.get(name, 0) + v
            total += weight
            seconds = row.speech_seconds + len(speech) / SAMPLE_RATE
            needed = self.calibration.enrol_seconds
            if seconds < needed - 1e-6:
                outcome.append((Progress(customer_id, seconds, needed, False), ""))
                sealed = self.vault.seal(_dump({"weight": total, "sums": sums}), f"enrolment:{customer_id}")
                return EnrolmentChange(sealed, seconds)
            vectors = {k: unit(v) for k, v in sums.items()}
            if hits := self._hits(watchlist, vectors, self.calibration.print_match):
                refused = "the voice matches the fraud watch list"
                outcome.append(
                    (Progress(customer_id, seconds, needed, False, refused), f"matches the watch list: {hits}")
                )
                return EnrolmentChange(finish=True)
            outcome.append((Progress(customer_id, seconds, needed, True), row.consent.by))
            record = self._record(customer_id, vectors, seconds, row.consent.by, row.consent.wording)
            return EnrolmentChange(finish=True, voiceprint=record)

        if self.prints.update_enrolment(customer_id, change) is None:
            raise EnrolmentError(f"no consent on record for {customer_id}: record the customer's consent first")
        progress, note = outcome[-1]  # the last call of ``change`` is the one applied
        if progress.refused:
            self.store.audit.add("voiceid", "voiceprint.refused", customer_id, note)
        elif progress.enrolled:
            self.store.audit.add(note, "voiceprint.enrol", customer_id, f"{progress.speech_seconds:.1f} s of speech")
        return progress

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
        vectors = enrol(self.encoders, speech).vectors
        self.prints.put(self._record(customer_id, vectors, seconds, by, reason, watch=reason))
        self.store.audit.add(by, "voiceprint.watchlist", customer_id, f"{seconds:.1f} s of speech")
        return Progress(customer_id, seconds, WATCH_MIN_SECONDS, True)

    def flag(self, customer_id: str, *, reason: str, by: str) -> bool:
        """Mark an existing print as a known fraudster's: from now on every call is screened against it."""
        if not self.prints.set_watchlist(customer_id, reason):
            return False
        self.store.audit.add(by, "voiceprint.watchlist", customer_id, reason)
        return True

    def _record(self, customer_id, vectors, seconds, by, wording, watch: str | None = None) -> VoicePrintRecord:
        sealed = self.vault.seal(_dump(vectors), f"voiceprint:{customer_id}")
        consent = Consent(by, self.store.clock(), wording)
        return VoicePrintRecord(customer_id, sealed, seconds, consent, False, watch is not None, watch)

    def _open_sums(self, row: EnrolmentRecord) -> tuple[dict[str, np.ndarray], float]:
        if row.sealed is None:
            return {}, 0.0
        data = json.loads(self.vault.open(row.sealed, f"enrolment:{row.customer_id}"))
        return {k: np.asarray(v, np.float32) for k, v in data["sums"].items()}, data["weight"]

    def _print(self, row: VoicePrintRecord) -> dict[str, np.ndarray]:
        """The print's vectors for this server's encoders only (a print may hold others, or lack ours)."""
        assert row.sealed is not None
        data = json.loads(self.vault.open(row.sealed, f"voiceprint:{row.customer_id}"))
        return {e.name: np.asarray(data[e.name], np.float32) for e in self.encoders if e.name in data}

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
        row = self.prints.get(customer_id)
        if row is not None and row.opted_out:
            return Verdict(Decision.OPTED_OUT, seconds)
        enrolled = self._print(row) if row is not None and row.usable else {}
        if not enrolled:
            return Verdict(Decision.NOT_ENROLLED, seconds)
        threshold = self.calibration.threshold(seconds)
        if threshold is None:
            return Verdict(Decision.INCONCLUSIVE, seconds)
        score = raw_score(enrolled, embedded())
        decision = Decision.AUTHENTICATED if score >= threshold else Decision.NOT_AUTHENTICATED
        return Verdict(decision, seconds, score, threshold)

    def _screen(self, seconds: float, embedded: Callable[[], dict]) -> list[dict]:
        threshold = self.calibration.threshold(seconds)
        rows = self.prints.watchlist()
        if threshold is None or not rows:
            return []
        return self._hits(rows, embedded(), threshold)

    def _hits(self, rows: list[VoicePrintRecord], test: dict[str, np.ndarray], threshold: float) -> list[dict]:
        hits = []
        for row in rows:
            vectors = self._print(row)
            if not vectors:
                continue  # a print made with other encoders than this server's says nothing here
            score = raw_score(vectors, test)
            if score >= threshold:
                hits.append({"watchlist_id": row.customer_id, "reason": row.watch_reason, "score": round(score, 4)})
        return hits

    # -- status, deletion, opt-out -----------------------------------------------------------------------------

    def enrolled(self, customer_id: str) -> bool:
        """A usable print for this server's encoders."""
        row = self.prints.get(customer_id)
        return row is not None and row.usable and bool(self._print(row))

    def status(self, customer_id: str) -> dict:
        row, pending = self.prints.get(customer_id), self.prints.enrolment(customer_id)
        out: dict = {"customer_id": customer_id, "enrolled": False, "opted_out": False, "watchlist": False}
        if row is not None:
            out.update(
                enrolled=row.sealed is not None and not row.watchlist,
                opted_out=row.opted_out,
                watchlist=row.watchlist,
                speech_seconds=row.speech_seconds,
                consent=_consent(row.consent),
            )
            if row.sealed is not None and not self._print(row):
                out["encoders_missing"] = [e.name for e in self.encoders]  # enrolled with another encoder
        if pending is not None:
            out["enrolment"] = {
                "speech_seconds": round(pending.speech_seconds, 1),
                "needed": self.calibration.enrol_seconds,
                "consent": _consent(pending.consent),
            }
        return out

    def delete(self, customer_id: str, actor: str) -> bool:
        """A deletion request: the print, an enrolment in progress and every score derived from them."""
        had_enrolment = self.prints.enrolment(customer_id) is not None
        gone = self.prints.delete(customer_id) or had_enrolment
        self.store.audit.add(actor, "voiceprint.delete", customer_id)
        return gone

    def opt_out(self, customer_id: str, actor: str) -> None:
        self.prints.opt_out(customer_id)
        self.store.audit.add(actor, "voiceprint.opt_out", customer_id)


def _consent(c: Consent | None) -> dict:
    return {"by": c.by, "at": c.at, "wording": c.wording} if c else {"by": None, "at": None, "wording": None}


def _dump(data: dict) -> bytes:
    """JSON of nested dicts of vectors (the plaintext that gets sealed)."""
    return json.dumps(data, default=lambda v: v.tolist()).encode()
