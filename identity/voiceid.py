"""Voice ID: voice prints taken with consent, passive verification in calls, and the fraud watch list.

An enrolment starts with the customer's consent (who took it, when, the
wording) and gathers net speech from recordings and live calls until there is
enough (20 s); then the print is stored and replaces any earlier one. Prints
are sealed with AES-GCM under the server key, never logged and never returned
by the API. Prints are kept per encoder: one made with another encoder than
the server's does not verify (it is "not enrolled" for this server), it never
breaks a call. In a call, ``identity.live.LiveVoice`` uses this service.

Voices heard through the telephone network (8 kHz, G.711) score on another
scale, and a phone voice scored against a print made from wideband speech
hardly tells speakers apart. So a print holds two spaces per encoder: the
wideband one (from wideband speech) and the phone one (from phone speech, or
from wideband speech passed through ``telephone``, the channel simulated).
Phone calls are compared in the phone space with the phone thresholds; so is
a wideband call against a print enrolled on the phone only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from functools import cache
from pathlib import Path

import numpy as np

from identity.quality import Quality, assess
from media.phone import RATE as PHONE_RATE
from media.phone import ulaw_decode, ulaw_encode
from media.resample import resample
from models.base import SAMPLE_RATE, SpeakerEncoder, SpoofDetector, pcm_to_float, unit
from models.errors import ModelUnavailable
from models.voiceprint import ENROL_WINDOW_S, Cohort, embed, raw_score, windows
from store.base import Consent, EnrolmentChange, EnrolmentRecord, Store, VoicePrintRecord
from store.errors import Invalid
from store.security import Vault

WATCH_MIN_SECONDS = 3.0  # fraud recordings are what they are; below this a print says too little
HISS = 0.05  # the share of a frame's energy above 4.2 kHz that only wideband audio reaches

Thresholds = tuple[tuple[float, float], ...]  # (seconds of net speech, cosine threshold from then on)


class Channel(StrEnum):
    """How a voice reached VoxGate: ``wideband`` (the video link: Opus, 16 kHz and up, or a wideband recording) or
    ``phone`` (the telephone network: 8 kHz, G.711 μ-law)."""

    WIDEBAND = "wideband"
    PHONE = "phone"

    def hear(self, pcm16k: np.ndarray) -> np.ndarray:
        """16 kHz int16 as this channel delivers it."""
        return telephone(pcm16k) if self is Channel.PHONE else pcm16k

    @classmethod
    def of(cls, speech: np.ndarray) -> Channel:
        """A recording's channel, from its spectrum: wideband speech hisses (s, f, sh put much of a 32 ms frame's
        energy above 4 kHz), phone audio cannot. Counting frames, not energy, ignores the clicks where net speech
        was joined."""
        n = 512
        frames = speech[: len(speech) // n * n].astype(np.float64).reshape(-1, n) * np.hanning(n)
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        total, high = power.sum(axis=1), power[:, np.fft.rfftfreq(n, 1 / SAMPLE_RATE) > 4200].sum(axis=1)
        sounding, hissing = np.count_nonzero(total), np.count_nonzero(high > HISS * total)
        return cls.PHONE if sounding and hissing < 0.01 * sounding else cls.WIDEBAND


def telephone(pcm16k: np.ndarray) -> np.ndarray:
    """16 kHz int16 as VoxGate hears it from a phone platform: band-limited to 8 kHz and μ-law coded by the
    network, decoded and resampled back to 16 kHz by the call leg's tap (FFmpeg's resampler both ways)."""
    narrow = resample(pcm16k, SAMPLE_RATE, PHONE_RATE)
    return resample(ulaw_decode(ulaw_encode(narrow)), PHONE_RATE, SAMPLE_RATE)


Spaces = dict[Channel, dict[str, np.ndarray]]  # a print's vectors: per channel's space, per encoder


def on_the_phone(speech: np.ndarray) -> np.ndarray:
    """Float32 net speech through ``telephone``."""
    return pcm_to_float(telephone((np.clip(speech, -1, 1) * 32767).astype(np.int16)))


def parse_thresholds(text: str) -> Thresholds:
    """``"1.5:0.61,3:0.64,6:0.65"`` as ((1.5, 0.61), (3.0, 0.64), (6.0, 0.65))."""
    try:
        return tuple(sorted((float(a), float(b)) for a, b in (p.split(":") for p in text.split(","))))
    except ValueError:
        raise ValueError(f"thresholds look like 1.5:0.61,3:0.64,6:0.65, not {text!r}") from None


class Decision(StrEnum):
    AUTHENTICATED = "authenticated"
    NOT_AUTHENTICATED = "not_authenticated"
    INCONCLUSIVE = "inconclusive"  # not enough speech yet
    NOT_ENROLLED = "not_enrolled"
    OPTED_OUT = "opted_out"
    SPOOF_SUSPECTED = "spoof_suspected"  # the voice matched, but the call sounds replayed or synthetic


@dataclass(frozen=True)
class Liveness:
    """The spoof detector's view of a stretch of speech: below the threshold, a replay or a synthetic voice."""

    score: float
    threshold: float
    speech_seconds: float

    @property
    def spoofed(self) -> bool:
        return self.score < self.threshold

    def to_dict(self) -> dict:
        return {
            "spoofed": self.spoofed,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "speech_seconds": round(self.speech_seconds, 2),
        }


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
    """Score thresholds by net speech duration, per channel, set for a target false-accept rate.

    The defaults are for the bundled d-vector encoder, in S-norm units against the shipped cohort: ``voxgate
    voiceid calibrate`` at 1% false accepts on 168 LibriSpeech train-clean-100 readers none of whom is in the
    cohort (``python -m benchmarks.voiceid_unseen``, which also shows them holding on readers left out of their
    calibration). ``thresholds`` as recorded (wideband, VoxGate's WebRTC channel) and ``phone`` with prints and
    calls passed through the telephone channel (``--channel phone``). Raw cosine thresholds set on one
    population let several times their false accepts through on another; S-norm's do not. Calibrate on your
    own calls and set ``--voiceid-thresholds`` and ``--voiceid-phone-thresholds``.

    ``print_match``: two prints of the same voice (an enrolment against the watch list). Measured with
    ``python -m benchmarks.voiceid`` (20 s prints from the two halves of each speaker's recordings): same
    speaker at least 0.87 (LibriSpeech) / 0.94 (8 kHz FSDD), another speaker at most 0.69 / 0.795; 0.83
    lies in the middle of the gap on both. ``phone_print_match``: the same in the phone space (``--channel
    phone``), where other speakers' prints come too close for 0.83.
    """

    thresholds: Thresholds = ((1.5, 2.0827), (3.0, 2.2617), (6.0, 2.372))
    phone: Thresholds = ((1.5, 1.7463), (3.0, 1.8939), (6.0, 1.9629))
    scoring: str = "snorm"  # the units of the thresholds: "snorm" (against the cohort) or "cosine"
    target_far: float = 0.01
    enrol_seconds: float = 20.0
    print_match: float = 0.83
    phone_print_match: float = 0.89
    # ID&V acts on a voice decision from this much speech; earlier ones are shown as early indications.
    # Measured on unseen readers (benchmarks.voiceid_unseen), 1.5 s rejects 6-7% of genuine callers, 3 s 1.5%.
    decide_seconds: float = 3.0
    # The spoof detector's threshold per channel (None: not judged). ``voxgate voiceid spoof-eval`` on
    # ``python -m benchmarks.spoof_corpus``: set where few live callers are refused (1% as recorded, 3% on the phone),
    # it catches espeak-ng's voices, not Piper's nor replays (benchmarks/README.md, Anti-spoofing).
    spoof: float | None = -5.0
    phone_spoof: float | None = -5.5

    @classmethod
    def parse(cls, wideband: str | None, phone: str | None = None, scoring: str | None = None) -> Calibration:
        """The defaults with either channel's thresholds replaced (``"1.5:0.61,3:0.64,6:0.65"``: seconds of net
        speech, and the threshold from then on). Thresholds given with another ``scoring`` than the default's
        must come with both channels': one set in one unit and one in another would make no sense."""
        default = cls()
        if scoring and scoring != default.scoring and not (wideband and phone):
            raise ValueError(f"{scoring} scoring needs its own thresholds for both channels (wideband and phone)")
        return replace(
            default,
            thresholds=parse_thresholds(wideband) if wideband else default.thresholds,
            phone=parse_thresholds(phone) if phone else default.phone,
            scoring=scoring or default.scoring,
        )

    def for_channel(self, channel: Channel) -> Calibration:
        """This calibration as a voice heard on ``channel`` is scored: that channel's thresholds and print match."""
        if channel is Channel.WIDEBAND:
            return self
        return replace(self, thresholds=self.phone, print_match=self.phone_print_match, spoof=self.phone_spoof)

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
    """Where an enrolment stands: "12 of 20 s". ``refused``: why a complete one was not stored. ``quality``: the
    last recording's assessment (``identity.quality``); when it says ``refuse``, that recording was not added."""

    customer_id: str
    speech_seconds: float
    needed: float
    enrolled: bool
    refused: str | None = None
    quality: dict | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "speech_seconds": round(self.speech_seconds, 1)}


class EnrolmentError(Invalid):
    """An enrolment step that cannot happen (no consent on record, no speech); the message is for people."""


class VoiceId:
    """Voice prints in the store, sealed with the vault. Synchronous and CPU-bound: call it off the event loop.

    ``cohort``: the voices S-norm scores against (``calibration.scoring == "snorm"``); by default the one that
    ships with VoxGate. It must hold every encoder in both spaces, or the thresholds would mean nothing.
    """

    def __init__(
        self,
        store: Store,
        vault: Vault,
        encoders: Sequence[SpeakerEncoder],
        calibration: Calibration = Calibration(),
        cohort: Cohort | None = None,
        spoof: SpoofDetector | None = None,
    ) -> None:
        self.store, self.vault, self.encoders, self.calibration = store, vault, list(encoders), calibration
        self.spoof = spoof
        self.prints = store.voiceprints
        self._cohort = cohort
        self._scorers: dict[Channel, Callable[[dict, dict], float]] = {}

    def ready(self) -> None:
        """Fail now (a server starting) rather than at the first call, if scores cannot be computed."""
        for space in Channel:
            self._score(space)

    def _score(self, space: Channel) -> Callable[[dict, dict], float]:
        if space not in self._scorers:
            self._scorers[space] = self._scoring(space)
        return self._scorers[space]

    def _scoring(self, space: Channel) -> Callable[[dict, dict], float]:
        """How a print and a voice compare in ``space``: raw cosine, or S-norm against the cohort. Enrolling needs
        neither: only verification and screening ask."""
        if self.calibration.scoring == "cosine":
            return raw_score
        keys = {e.name: space_key(e.name, space) for e in self.encoders}
        return (self._cohort or shipped_cohort()).scorer(keys).score

    # -- enrolment ---------------------------------------------------------------------------------------------

    def consent(self, customer_id: str, *, by: str, wording: str) -> Progress:
        """Record the customer's consent and start an enrolment (the current print stays until it completes)."""
        if not wording.strip():
            raise EnrolmentError("enrolment needs the consent wording the customer agreed to")
        self.prints.start_enrolment(customer_id, Consent(by, self.store.clock(), wording))
        self.store.audit.add(by, "voiceprint.consent", customer_id)
        return Progress(customer_id, 0.0, self.calibration.enrol_seconds, False)

    def add_speech(self, customer_id: str, speech: np.ndarray, channel: Channel | None = None) -> Progress:
        """Add float32 16 kHz net speech heard on ``channel`` (None: a recording, judged by its spectrum) to the
        customer's enrolment; at enough speech, store the print.

        The embeddings are computed first, then added to the stored sums in one transaction, so concurrent
        recordings for one customer all count. The enrolment is refused (and dropped) when its voice matches
        the fraud watch list.
        """
        pending = self.prints.enrolment(customer_id)
        if pending is None:
            raise EnrolmentError(f"no consent on record for {customer_id}: record the customer's consent first")
        channel = channel or Channel.of(speech)
        quality, known = self._assess(speech)
        report = quality.to_dict()
        if quality.refuse:
            why = "; ".join(quality.messages)
            self.store.audit.add("voiceid", "voiceprint.speech_refused", customer_id, why)
            needed = self.calibration.enrol_seconds
            return Progress(customer_id, pending.speech_seconds, needed, False, quality=report)
        added, weight = self._sums(speech, channel, known)
        watchlist = self.prints.watchlist()  # read before the transaction: screening may take a while
        outcome: list[tuple[Progress, str]] = []  # the decision, and who/why for the audit

        def change(row: EnrolmentRecord) -> EnrolmentChange:
            sums, total = self._open_sums(row)
            for name, v in added.items():
                sums[name] = sums.get(name, 0) + v
            total += weight
            seconds = row.speech_seconds + len(speech) / SAMPLE_RATE
            needed = self.calibration.enrol_seconds
            if seconds < needed - 1e-6:
                outcome.append((Progress(customer_id, seconds, needed, False, quality=report), ""))
                sealed = self.vault.seal(_dump({"weight": total, "sums": sums}), f"enrolment:{customer_id}")
                return EnrolmentChange(sealed, seconds)
            vectors = {k: unit(v) for k, v in sums.items()}
            if hits := self._hits(watchlist, self._matching(_spaces(vectors))):
                refused = "the voice matches the fraud watch list"
                outcome.append(
                    (
                        Progress(customer_id, seconds, needed, False, refused, report),
                        f"matches the watch list: {hits}",
                    )
                )
                return EnrolmentChange(finish=True)
            outcome.append((Progress(customer_id, seconds, needed, True, quality=report), row.consent.by))
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

    def enrol(
        self, customer_id: str, speech: np.ndarray, *, by: str, wording: str, channel: Channel | None = None
    ) -> Progress:
        """Consent and speech at once (recordings the customer agreed to, say): a fresh enrolment."""
        self.consent(customer_id, by=by, wording=wording)
        return self.add_speech(customer_id, speech, channel)

    def watch(
        self, customer_id: str, speech: np.ndarray, *, reason: str, by: str, channel: Channel | None = None
    ) -> Progress:
        """Put a voice on the fraud watch list from recordings (no consent: the basis is the stated reason)."""
        seconds = len(speech) / SAMPLE_RATE
        if not reason.strip():
            raise EnrolmentError("a watch-list entry needs its reason (a case number, say)")
        if seconds < WATCH_MIN_SECONDS:
            return Progress(customer_id, seconds, WATCH_MIN_SECONDS, False)
        vectors = {k: unit(v) for k, v in self._sums(speech, channel)[0].items()}
        self.prints.put(self._record(customer_id, vectors, seconds, by, reason, watch=reason))
        self.store.audit.add(by, "voiceprint.watchlist", customer_id, f"{seconds:.1f} s of speech")
        return Progress(customer_id, seconds, WATCH_MIN_SECONDS, True)

    def flag(self, customer_id: str, *, reason: str, by: str) -> bool:
        """Mark an existing print as a known fraudster's: from now on every call is screened against it."""
        if not self.prints.set_watchlist(customer_id, reason):
            return False
        self.store.audit.add(by, "voiceprint.watchlist", customer_id, reason)
        return True

    def _assess(self, speech: np.ndarray) -> tuple[Quality, dict[str, np.ndarray]]:
        """The recording's quality, and the window embeddings it computed (the print reuses them). The second-voice
        check was measured on the d-vector's scale: with other encoders only the SNR and length are judged."""
        encoder = next((e for e in self.encoders if e.name == "dvector"), None)
        quality = assess(speech, encoder)
        return quality, {} if encoder is None or quality.embeddings is None else {encoder.name: quality.embeddings}

    def _sums(
        self, speech: np.ndarray, channel: Channel | None, known: dict[str, np.ndarray] | None = None
    ) -> tuple[dict[str, np.ndarray], float]:
        """Per stored key, the weighted sum of the speech's window embeddings, in its channel's space and, for
        wideband speech, in the phone space too (heard through ``telephone``); and the windows' total weight.
        ``known``: per encoder, the embeddings of ``windows(speech)`` already computed (in ``channel``'s space)."""
        channel = channel or Channel.of(speech)
        heard = {channel: speech}
        if channel is Channel.WIDEBAND and len(speech):
            heard[Channel.PHONE] = on_the_phone(speech)
        sums: dict[str, np.ndarray] = {}
        weight = 0.0
        for space, audio in heard.items():
            for i, chunk in enumerate(windows(audio) if len(audio) else []):
                # Each window counts by its length: the last second of a call says less than a full window.
                w = min(1.0, len(chunk) / (ENROL_WINDOW_S * SAMPLE_RATE))
                for e in self.encoders:
                    key = space_key(e.name, space)
                    done = known.get(e.name) if known and space is channel else None
                    sums[key] = sums.get(key, 0) + w * (done[i] if done is not None else e.embed(chunk))
                weight += w if space is channel else 0.0
        return sums, weight

    def _record(self, customer_id, vectors, seconds, by, wording, watch: str | None = None) -> VoicePrintRecord:
        sealed = self.vault.seal(_dump(vectors), f"voiceprint:{customer_id}")
        consent = Consent(by, self.store.clock(), wording)
        return VoicePrintRecord(customer_id, sealed, seconds, consent, False, watch is not None, watch)

    def _open_sums(self, row: EnrolmentRecord) -> tuple[dict[str, np.ndarray], float]:
        if row.sealed is None:
            return {}, 0.0
        data = json.loads(self.vault.open(row.sealed, f"enrolment:{row.customer_id}"))
        return {k: np.asarray(v, np.float32) for k, v in data["sums"].items()}, data["weight"]

    def _print(self, row: VoicePrintRecord) -> Spaces:
        """The print's vectors for this server's encoders only (a print may hold others, or lack ours)."""
        assert row.sealed is not None
        data = json.loads(self.vault.open(row.sealed, f"voiceprint:{row.customer_id}"))
        names = {e.name for e in self.encoders}
        return _spaces({k: np.asarray(v, np.float32) for k, v in data.items() if k.partition("@")[0] in names})

    # -- verification and screening ----------------------------------------------------------------------------

    def check(
        self, claimed: str | None, speech: np.ndarray, screen: bool = True, channel: Channel = Channel.WIDEBAND
    ) -> tuple[Verdict | None, list[dict]]:
        """Verify ``claimed`` (if any) and screen the watch list, embedding the speech once per space it is
        compared in. ``channel``: how the speech was heard (a phone call's is compared in the phone space)."""
        seconds = len(speech) / SAMPLE_RATE
        tests: dict[Channel, dict[str, np.ndarray]] = {}

        def embedded(space: Channel) -> dict[str, np.ndarray]:
            if space not in tests:
                tests[space] = embed(self.encoders, speech if space is channel else on_the_phone(speech))
            return tests[space]

        def against(print_: Spaces) -> tuple[float, float] | None:
            space = _space(print_, channel)
            threshold = None if space is None else self.calibration.for_channel(space).threshold(seconds)
            return None if threshold is None else (self._score(space)(print_[space], embedded(space)), threshold)

        verdict = self._verify(claimed, seconds, channel, embedded) if claimed else None
        return verdict, (self._hits(self.prints.watchlist(), against) if screen else [])

    def liveness(self, speech: np.ndarray, channel: Channel = Channel.WIDEBAND) -> Liveness | None:
        """The spoof detector on the latest of this speech (None: no detector, or none calibrated for the channel)."""
        threshold = self.calibration.for_channel(channel).spoof
        if self.spoof is None or threshold is None or not len(speech):
            return None
        latest = speech[-int(self.spoof.seconds * SAMPLE_RATE) :]
        return Liveness(self.spoof.score(latest), threshold, len(speech) / SAMPLE_RATE)

    def verify(self, customer_id: str, speech: np.ndarray, channel: Channel = Channel.WIDEBAND) -> Verdict:
        return self.check(customer_id, speech, screen=False, channel=channel)[0]  # type: ignore[return-value]

    def screen(self, speech: np.ndarray, channel: Channel = Channel.WIDEBAND) -> list[dict]:
        """Watch-list hits for this speech, whoever the caller claims to be."""
        return self.check(None, speech, channel=channel)[1]

    def _verify(
        self, customer_id: str, seconds: float, channel: Channel, embedded: Callable[[Channel], dict]
    ) -> Verdict:
        row = self.prints.get(customer_id)
        if row is not None and row.opted_out:
            return Verdict(Decision.OPTED_OUT, seconds)
        enrolled = self._print(row) if row is not None and row.usable else {}
        space = _space(enrolled, channel)
        if space is None:  # no print, another encoder's, or one made before prints had a phone space
            return Verdict(Decision.NOT_ENROLLED, seconds)
        threshold = self.calibration.for_channel(space).threshold(seconds)
        if threshold is None:
            return Verdict(Decision.INCONCLUSIVE, seconds)
        score = self._score(space)(enrolled[space], embedded(space))
        decision = Decision.AUTHENTICATED if score >= threshold else Decision.NOT_AUTHENTICATED
        return Verdict(decision, seconds, score, threshold)

    def _matching(self, vectors: Spaces) -> Callable[[Spaces], tuple[float, float] | None]:
        """Print against print: in the wideband space if both have it, else the phone space."""

        def against(print_: Spaces) -> tuple[float, float] | None:
            space = next((c for c in Channel if c in print_ and c in vectors), None)
            if space is None:
                return None
            return raw_score(print_[space], vectors[space]), self.calibration.for_channel(space).print_match

        return against

    def _hits(self, rows: list[VoicePrintRecord], against: Callable[[Spaces], tuple | None]) -> list[dict]:
        hits = []
        for row in rows:
            vectors = self._print(row)
            scored = against(vectors) if vectors else None  # a print of other encoders says nothing here
            if scored is not None and scored[0] >= scored[1]:
                hits.append({"watchlist_id": row.customer_id, "reason": row.watch_reason, "score": round(scored[0], 4)})
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


COHORT = Path(__file__).with_name("cohort.npz")


@cache
def shipped_cohort() -> Cohort:
    """The cohort that ships with VoxGate (see ``COHORT_ABOUT`` in the file, and the README)."""
    if not COHORT.is_file():
        raise ModelUnavailable(f"{COHORT} is missing: reinstall voxgate (the S-norm cohort ships inside it)")
    return Cohort.load(COHORT)


def space_key(encoder: str, space: Channel) -> str:
    """Where a print keeps an encoder's vector in a space (wideband under the encoder's name, as prints began)."""
    return encoder if space is Channel.WIDEBAND else f"{encoder}@{space}"


def _spaces(data: dict[str, np.ndarray]) -> Spaces:
    """Stored keys (``dvector``, ``dvector@phone``) to vectors by space and encoder."""
    out: Spaces = {}
    for key, v in data.items():
        name, _, space = key.partition("@")
        out.setdefault(Channel(space or Channel.WIDEBAND), {})[name] = v
    return out


def _space(print_: Spaces, heard: Channel) -> Channel | None:
    """Where a print and a voice heard on ``heard`` are compared: the wideband space only if both are wideband.
    A phone voice is never scored against wideband vectors: measured, those scores hardly tell voices apart."""
    if heard is Channel.WIDEBAND and Channel.WIDEBAND in print_:
        return Channel.WIDEBAND
    return Channel.PHONE if Channel.PHONE in print_ else None


def _consent(c: Consent | None) -> dict:
    return {"by": c.by, "at": c.at, "wording": c.wording} if c else {"by": None, "at": None, "wording": None}


def _dump(data: dict) -> bytes:
    """JSON of nested dicts of vectors (the plaintext that gets sealed)."""
    return json.dumps(data, default=lambda v: v.tolist()).encode()
