"""Voice ID in a live call: verify the caller, screen the watch list and listen for a replayed or synthetic
voice from the first seconds of speech.

The same objects that decide (``VoiceVerdict``, ``WatchlistAlert``,
``SpoofSignal``, ``EnrolmentUpdate``) go to the agent's console and to the
ID&V flow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import numpy as np

from identity.voiceid import Channel, Decision, Liveness, Progress, Verdict, VoiceId
from media.segmenter import Signal
from media.speech import NetSpeech
from models.base import SAMPLE_RATE, pcm_to_float

log = logging.getLogger(__name__)


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
class SpoofSignal:
    """The spoof detector at a checkpoint. ``early``: on less speech than decisions need, shown only."""

    link_id: str
    liveness: Liveness
    early: bool

    def to_message(self) -> dict:
        risk = "high" if self.liveness.spoofed and not self.early else None
        return {
            "type": "voiceid_spoof",
            "link_id": self.link_id,
            **self.liveness.to_dict(),
            "early": self.early,
            "risk": risk,
        }


@dataclass(frozen=True)
class EnrolmentUpdate:
    link_id: str
    progress: Progress

    def to_message(self) -> dict:
        return {"type": "enrolment", "link_id": self.link_id, **self.progress.to_dict()}


VoiceEvent = VoiceVerdict | WatchlistAlert | SpoofSignal | EnrolmentUpdate


class LiveVoice:
    """Voice ID in one call, listening to the customer leg's speech tap on the event loop.

    At each of the calibration's checkpoints (1.5, 3 and 6 s of net speech) the speech so far is screened
    against the watch list and, once the caller's identity is claimed (``claim``), verified against that
    customer's print; a claim made later is verified at once on the speech already heard. During an
    enrolment (``enrol``, after consent) the speech from then on goes to the customer's enrolment. Model
    work runs in ``executor``. ``narrowband``: the call came through the telephone network, so its voice is
    scored in the prints' phone space, against the phone thresholds, and enrols the phone space only.
    """

    def __init__(
        self,
        voice_id: VoiceId,
        link_id: str,
        emit: Callable[[VoiceEvent], None],
        executor: Executor | None = None,
        *,
        narrowband: bool = False,
    ) -> None:
        self.voice_id, self.link_id = voice_id, link_id
        self.channel = Channel.PHONE if narrowband else Channel.WIDEBAND
        self._emit, self._executor = emit, executor
        self._checkpoints = voice_id.calibration.for_channel(self.channel).checkpoints
        self._net = NetSpeech()
        self._speech: list[np.ndarray] = []  # up to the last checkpoint
        self._samples = 0
        self._next = 0
        self.claimed: str | None = None
        self._enrolling: str | None = None
        self._enrol_speech: list[np.ndarray] = []
        self._enrol_samples = 0
        self._enrol_base = 0.0  # seconds the enrolment had before this call
        self._reported = 0
        self.spoofed = False
        self._tasks: set[asyncio.Task] = set()
        self._in_order = asyncio.Lock()  # decisions reach the console in the order their speech was heard

    def hear(self, signals: list[Signal]) -> None:
        """The customer leg's segments, as its tap cuts them."""
        new = self._net.take(signals)
        if not len(new):
            return
        if self._next < len(self._checkpoints):
            self._speech.append(new)
            self._samples += len(new)
            if self._samples >= self._checkpoints[self._next] * SAMPLE_RATE:
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
        elif int(seconds) > self._reported:  # "12 of 20 s", a whole second at a time
            self._reported = int(seconds)
            progress = Progress(self._enrolling, self._reported, self.voice_id.calibration.enrol_seconds, False)
            self._emit(EnrolmentUpdate(self.link_id, progress))

    def _save_enrolment(self) -> None:
        """Hand what was collected to the enrolment (off the loop); collecting stops here, not when it is saved."""
        customer, speech = self._enrolling, pcm_to_float(np.concatenate(self._enrol_speech))
        self._enrolling, self._enrol_speech = None, []

        async def save() -> None:
            loop = asyncio.get_running_loop()
            add = self.voice_id.add_speech
            progress = await loop.run_in_executor(self._executor, add, customer, speech, self.channel)
            self._emit(EnrolmentUpdate(self.link_id, progress))

        self._spawn(save())

    async def _check(self, speech: np.ndarray, reached: float, screen: bool) -> None:
        claimed = self.claimed
        if not claimed and not screen:
            return
        loop = asyncio.get_running_loop()
        async with self._in_order:
            verdict, hits, liveness = await loop.run_in_executor(self._executor, self._decide, claimed, speech, screen)
        decide = self.voice_id.calibration.decide_seconds - 1e-6
        if liveness is not None:  # first: the flow must know before it hears a verdict on the same speech
            early = liveness.speech_seconds < decide
            self.spoofed |= liveness.spoofed and not early
            self._emit(SpoofSignal(self.link_id, liveness, early))
        if verdict is not None:
            if self.spoofed and verdict.decision is Decision.AUTHENTICATED:
                verdict = replace(verdict, decision=Decision.SPOOF_SUSPECTED)
            timing = {"speech_reached": reached, "decided": time.time()}
            self._emit(VoiceVerdict(self.link_id, claimed, verdict, timing, verdict.speech_seconds < decide))
        if hits:
            self._emit(WatchlistAlert(self.link_id, hits, len(speech) / SAMPLE_RATE))

    def _decide(
        self, claimed: str | None, speech: np.ndarray, screen: bool
    ) -> tuple[Verdict | None, list[dict], Liveness | None]:
        """Off the loop: the verdict and watch-list hits, and at a checkpoint (``screen``) the spoof score."""
        verdict, hits = self.voice_id.check(claimed, speech, screen, self.channel)
        return verdict, hits, self.voice_id.liveness(speech, self.channel) if screen else None

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("voice ID in call %s failed", self.link_id, exc_info=task.exception())
