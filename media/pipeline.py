"""One leg's speech pipeline: segments in, transcript and translation events out.

It listens to a ``SpeechTap`` (its own, fed by ``push``, or a call leg's shared
with voice ID). Hearing runs on the event loop and only queues segment audio
for a worker task that runs the engines in an executor thread, one segment at
a time and in order. When ASR falls behind, queued audio is coalesced into one
``accept`` call, so a busy machine shows fewer partials rather than late finals.

At the first short pause the final is guessed (decoded speculatively) beside
that work; if the pause lasts to the endpoint, the guess is the final and the
endpoint wait has been spent decoding; if speech resumes, it is withdrawn.

A leg whose language is not given is not judged on its first final: a
``LanguageVote`` over the first finals picks the language (one misheard
sentence must not decide the call), each change is announced by a
``LanguageChanged`` event just before the final that caused it, and
``set_language`` lets the agent overrule it at any time. A language the vote
settled is still watched, cheaply, in case the speaker changes language
mid-call (or hands the phone to someone else): see ``LanguageVote.recheck``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path

import av
import numpy as np

from media.audio_io import decode_file
from media.events import (
    Event,
    FinalTranscript,
    LanguageChanged,
    PartialTranscript,
    PipelineError,
    SpeakerEmbedding,
    SpeechEnded,
    SpeechStarted,
    Translation,
)
from media.frames import AudioFrame
from media.segmenter import Audio, End, Pause, SegmenterConfig, Signal, Start
from media.tap import SpeechTap
from models.base import AsrResult, AsrStream, pcm_to_float
from models.engines import Engines
from models.errors import EngineError, UnsupportedLanguage
from models.routing import Route, Router

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    language: str | None = None  # None: detect, by a vote over the first finals (LanguageVote)
    target_language: str | None = None  # None: no translation
    partials: bool = True
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    embed_speaker: bool = True  # a SpeakerEmbedding per segment, when the engines have an encoder


class LanguageVote:
    """Settles a leg's spoken language over its first finals, so that one wrong detection cannot decide the call.

    Each final votes for the language detected in it, weighted by the detection's probability (1 when the engine
    gives none). The leader (most weight; ties keep the current one) is the language the next utterances are
    decoded and translated in. The vote settles, and voting stops, once ``min_votes`` finals have voted and the
    leader holds ``share`` of the weight, or at ``max_votes`` whatever the share.

    A vote settled by detection may still be overturned by detection, on stronger evidence than settled it
    (``recheck``): ``switch_after`` finals, each of ``min_seconds`` of speech or more, detected in the same other
    language with ``switch_probability`` or more, and none heard (or decoded without doubt) in the leader's
    language between them: one confident final in another language (a quoted name, a misheard line) never
    switches, two do (the measurements behind the thresholds are in benchmarks/README.md, "Language changes
    mid-call"). A language given up front, or set by someone who knows (``settle``), is never re-detected.
    """

    def __init__(
        self,
        language: str | None = None,
        *,
        min_votes: int = 3,
        share: float = 0.7,
        max_votes: int = 8,
        switch_after: int = 2,
        switch_probability: float = 0.8,
        min_seconds: float = 1.0,
    ) -> None:
        self.min_votes, self.share, self.max_votes = min_votes, share, max_votes
        self.switch_after, self.switch_probability, self.min_seconds = switch_after, switch_probability, min_seconds
        self.weights: dict[str, float] = {}
        self.votes = 0
        self.leader = language
        self.settled = language is not None  # a language given up front is never voted on
        self.known = language is not None  # given, or settled by someone who knows: never re-detected
        self.switches = 0
        self._run: list[float] = []  # the probabilities of the latest finals in a row heard in ``_other``
        self._other: str | None = None

    @property
    def rechecking(self) -> bool:
        """Settled by detection: later finals' detections may still switch it."""
        return self.settled and not self.known

    @property
    def confidence(self) -> float | None:
        """The leader's share of the weight; None before any vote."""
        total = sum(self.weights.values())
        return self.weights.get(self.leader, 0.0) / total if total and self.leader else None

    def add(self, language: str, probability: float | None) -> bool:
        """Count one final's detection; True when the leader changed or the vote settled (worth announcing)."""
        if self.settled:
            return False
        self.votes += 1
        self.weights[language] = self.weights.get(language, 0.0) + (1.0 if probability is None else probability)
        before = self.leader
        if before is None or self.weights[language] > self.weights.get(before, 0.0):
            self.leader = language
        confident = (self.confidence or 0.0) >= self.share
        self.settled = self.votes >= self.max_votes or (self.votes >= self.min_votes and confident)
        return self.leader != before or self.settled

    def recheck(self, language: str, probability: float | None, seconds: float) -> bool:
        """Count one final after the vote settled by detection: the language heard in it (or, undetected, the one
        it was decoded in) and how sure; True when it switched the leader. A final in the leader's language breaks
        a run of others; one too short to tell (under ``min_seconds`` of speech), or unsure of another language
        (language ID often splits Spanish and Portuguese), neither counts nor breaks it."""
        if not self.rechecking or seconds < self.min_seconds:
            return False
        if language == self.leader:
            self._other, self._run = None, []
            return False
        p = 1.0 if probability is None else probability
        if p < self.switch_probability:
            return False
        if language != self._other:
            self._other, self._run = language, []
        self._run.append(p)
        if len(self._run) < self.switch_after:
            return False
        # The run is the new evidence: its share of it (the confidence announced) is whole.
        self.leader, self.weights, self.votes = language, {language: sum(self._run)}, len(self._run)
        self._other, self._run = None, []
        self.switches += 1
        return True

    def settle(self, language: str) -> None:
        """Someone who knows says what is spoken: it wins, and no detection counts any more."""
        self.leader, self.settled, self.known = language, True, True
        self._other, self._run = None, []


@dataclass
class _Segment:
    id: int
    speech_start: float
    audio_start: float
    stream: AsrStream
    chunks: list[np.ndarray]
    guess: asyncio.Future[list[AsrResult] | None] | None = None  # the final, decoding since the last pause


class Pipeline:
    def __init__(
        self,
        engines: Engines,
        config: PipelineConfig = PipelineConfig(),
        *,
        leg: str = "customer",
        executor: Executor | None = None,
        tap: SpeechTap | None = None,
    ) -> None:
        self.engines, self.config, self.leg = engines, config, leg
        self.language = config.language
        if self.language is not None and self.language not in engines.asr.languages():
            raise UnsupportedLanguage(f"the {engines.asr.name} engine does not recognise {self.language!r}")
        self._vote = LanguageVote(config.language)
        self._route: Route | None = None
        if config.target_language and self.language:
            self._route = self._plan(self.language)
        self._executor = executor
        # Its own ear, or the leg's, shared with voice ID (then the segmenter settings are the tap's).
        self.tap = tap or SpeechTap(engines.vad(), config.segmenter, leg)
        self.tap.listen(self.hear)
        self._jobs: deque[tuple[int, Signal] | None] = deque()
        self._wake = asyncio.Event()
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._segment_id = 0
        self._open: _Segment | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.guesses: Counter[str] = Counter()  # speculative finals "started", "kept" (the final), "withdrawn"
        # After the vote settled: language-ID "passes" run besides the decodes (their cost: an English-only model's
        # doubtful finals), finals "checked" (that came with a detection, paid or free), and "switched" languages.
        self.rechecks: Counter[str] = Counter()

    # -- input ---------------------------------------------------------------------------------------------------

    async def push(self, frame: AudioFrame | av.AudioFrame) -> None:
        """Feed one frame of any rate and channel count to the pipeline's tap."""
        if self._closed:
            raise RuntimeError("pipeline is closed")
        self.tap.feed(frame)

    async def close(self) -> None:
        """End of stream: finalise any open segment (a peer that vanished mid-sentence still gets its final)."""
        if self._closed:
            return
        self.tap.close()  # the tap's last signals reach this pipeline before it stops
        self._closed = True
        self._put(None)
        if self._worker is not None:
            await self._worker
        self._events.put_nowait(None)

    def hear(self, signals: list[Signal]) -> None:
        """The tap's segments: events now, engine work queued in order."""
        if self._closed:
            return
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())
        for s in signals:
            if isinstance(s, Start):
                self._segment_id += 1
                self._emit(
                    SpeechStarted(
                        leg=self.leg, segment=self._segment_id, audio_start=s.speech_start, audio_end=s.speech_start
                    )
                )
            elif isinstance(s, End):
                self._emit(
                    SpeechEnded(
                        leg=self.leg,
                        segment=self._segment_id,
                        audio_start=s.speech_start,
                        audio_end=s.speech_end,
                        forced=s.forced,
                    )
                )
            self._put((self._segment_id, s))

    def _put(self, job: tuple[int, Signal] | None) -> None:
        self._jobs.append(job)
        self._wake.set()

    def set_language(self, language: str, by: str = "agent") -> None:
        """The leg speaks ``language``, says someone who knows (the agent): detection stops, and the utterances that
        start from now on are decoded and translated in it (one being decoded keeps the language it began with).
        Emits ``LanguageChanged(by=by, settled=True, confidence=None)`` at once, for the last segment heard and at
        the leg's current audio position (a zero-length span)."""
        known = self.engines.asr.languages()
        if language not in known:
            raise UnsupportedLanguage(
                f"cannot set the spoken language to {language!r}: the {self.engines.asr.name} engine does not "
                f"recognise it (it knows {len(known)} ISO 639-1 codes, such as {', '.join(sorted(known)[:5])})"
            )
        self._vote.settle(language)
        self._use_language(language)
        self._announce(self._segment_id, self.tap.time, self.tap.time, by)

    def _use_language(self, language: str) -> None:
        """Decode and translate in ``language`` from the next utterance: its route is planned again."""
        self.language = language
        self._route = None

    def retarget(self, language: str | None) -> None:
        """Translate into another language from the next final on (the other side's language became known)."""
        self.config = replace(self.config, target_language=language)
        self._route = None

    # -- output --------------------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Every event in the order produced; ends after ``close()``."""
        while (event := await self._events.get()) is not None:
            yield event

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    # -- the worker ----------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            if not self._jobs:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self._jobs.popleft()
            if job is None:
                return
            seg_id, signal = job
            try:
                if isinstance(signal, Start):
                    await self._start(seg_id, signal)
                elif isinstance(signal, Audio):
                    await self._audio([signal, *self._drain_audio()])
                elif isinstance(signal, Pause):
                    self._guess()
                else:
                    await self._end(signal)
            except EngineError as e:
                self._error(seg_id, str(e))
            except Exception as e:  # one bad segment must not end the call
                log.exception("pipeline %s: segment %d failed", self.leg, seg_id)
                self._error(seg_id, f"internal error in segment {seg_id}: {type(e).__name__}")

    def _drain_audio(self) -> list[Audio]:
        """Audio that queued up while ASR was busy, taken in one go."""
        more = []
        while self._jobs and self._jobs[0] is not None and isinstance(self._jobs[0][1], Audio):
            more.append(self._jobs.popleft()[1])
        return more

    async def _start(self, seg_id: int, s: Start) -> None:
        self._open = None  # set only once the stream exists: a failed start drops this segment's audio cleanly
        stream = self.engines.asr.stream(
            self.language,
            partials=self.config.partials,
            translate=self._speech_route(),
            detect=self._detect_mode(),
        )
        self._open = _Segment(seg_id, s.speech_start, s.audio_start, stream, [])
        await self._audio([Audio(s.audio)])

    def _detect_mode(self) -> bool | str:
        """Unsettled: the leader so far decodes, and every final's own detection votes. Settled by detection:
        detect only where it is cheap, or where the decode looked unsure (``recheck``). Known: never."""
        if not self._vote.settled:
            return True
        return "recheck" if self._vote.rechecking else False

    async def _audio(self, chunks: list[Audio]) -> None:
        """Add audio to the open segment. A partial is worth decoding only on new speech, and only when the
        segment's end is not already waiting: otherwise it costs a decode that the final makes moot (and delays)."""
        seg = self._open
        if seg is None:
            return
        voiced = any(c.voiced for c in chunks)
        if voiced and seg.guess is not None:  # speech resumed: the utterance did not end at that pause
            seg.stream.withdraw_guess()
            seg.guess = None
            self.guesses["withdrawn"] += 1
        end_waiting = bool(self._jobs)  # after the drain, only a pause, the segment's End or the close can be next
        worth_a_partial = voiced and not end_waiting
        pcm = np.concatenate([c.audio for c in chunks]) if len(chunks) > 1 else chunks[0].audio
        seg.chunks.append(pcm)
        for r in await self._run(functools.partial(seg.stream.accept, partial=worth_a_partial), pcm):
            self._result(seg, r, None)

    def _speech_route(self) -> bool:
        """Whisper translates this leg's speech: ask for it in the same decode as the transcript."""
        if not (self.language and self.config.target_language and self.engines.asr.name == "whisper"):
            return False
        try:
            return self._route_for(self.language).kind == "speech"
        except UnsupportedLanguage:
            return False

    def _guess(self) -> None:
        """Start decoding the final now, beside the rest of the work: the pause may be the endpoint."""
        seg = self._open
        if seg is not None and seg.guess is None:
            self.guesses["started"] += 1
            seg.guess = asyncio.ensure_future(self._run(seg.stream.guess_final))
            seg.guess.add_done_callback(lambda f: f.cancelled() or f.exception())  # a withdrawn guess's error is moot

    async def _end(self, e: End) -> None:
        seg, self._open = self._open, None
        if seg is None:
            return
        results = None
        if seg.guess is not None:  # nothing was said since the guess began: it is the final
            try:
                results = await seg.guess
            except EngineError:
                results = None
        if results is None:
            results = await self._run(seg.stream.finish)
        else:
            self.guesses["kept"] += 1
        if passes := seg.stream.language_passes:
            self.rechecks["passes"] += passes
        finals = [f for r in results if r.final and (f := self._result(seg, r, e)) is not None]
        text = " ".join(f.text for f in finals)
        if text and self.config.target_language:
            english = [r.translation for r in results if r.final and r.translation is not None]
            await self._translate(seg, e, text, finals[-1], " ".join(english) if english else None)
        if self.config.embed_speaker and self.engines.speaker is not None:
            audio = pcm_to_float(np.concatenate(seg.chunks))
            vector = await self._run(self.engines.speaker.embed, audio)
            self._emit(
                SpeakerEmbedding(
                    leg=self.leg,
                    segment=seg.id,
                    audio_start=e.speech_start,
                    audio_end=e.speech_end,
                    vector=vector,
                    encoder=self.engines.speaker.name,
                    speech_seconds=e.speech_end - e.speech_start,
                )
            )

    def _result(self, seg: _Segment, r: AsrResult, end: End | None) -> FinalTranscript | None:
        start, stop = seg.audio_start + r.start, seg.audio_start + r.end
        if r.final and not r.text.strip():
            return None  # a cough or a click: nothing was said, so no subtitle and no transcript line
        if not r.final:
            self._emit(
                PartialTranscript(
                    leg=self.leg, segment=seg.id, audio_start=start, audio_end=stop, text=r.text, language=r.language
                )
            )
            return None
        if end is not None:
            start, stop = max(start, end.speech_start), min(stop, end.speech_end) if r.end else end.speech_end
        self._vote_on(seg, r, start, max(start, stop))  # before the final: consumers retarget before its translation
        event = FinalTranscript(
            leg=self.leg,
            segment=seg.id,
            audio_start=start,
            audio_end=max(start, stop),
            text=r.text,
            language=r.language,
            speech_end_wall=end.end_wall if end else time.time(),
        )
        self._emit(event)
        return event

    def _vote_on(self, seg: _Segment, r: AsrResult, start: float, stop: float) -> None:
        """While the language is unsettled, a final's detection (not a partial's guess) votes; once settled by
        detection, every final is rechecked. A new leader, the vote settling, or a switch is announced and decodes
        the next utterances."""
        if not self._vote.settled:
            changed = self._vote.add(r.detected_language or r.language, r.language_probability)
        elif self._vote.rechecking:  # undetected, a final was decoded without doubt in the leader's language
            if r.detected_language is not None:
                self.rechecks["checked"] += 1
            changed = self._vote.recheck(r.detected_language or r.language, r.language_probability, stop - start)
            if changed:
                self.rechecks["switched"] += 1
        else:
            return
        if not changed:
            return
        assert self._vote.leader is not None
        self._use_language(self._vote.leader)
        self._announce(seg.id, start, stop, "detected")

    def _announce(self, segment: int, start: float, stop: float, by: str) -> None:
        """The language as the vote now stands (set by hand: no confidence to report)."""
        assert self._vote.leader is not None
        self._emit(
            LanguageChanged(
                leg=self.leg,
                segment=segment,
                audio_start=start,
                audio_end=stop,
                language=self._vote.leader,
                confidence=None if by == "agent" else self._vote.confidence,
                settled=self._vote.settled,
                by=by,
            )
        )

    async def _translate(
        self, seg: _Segment, end: End, text: str, final: FinalTranscript, english: str | None = None
    ) -> None:
        """``english``: Whisper's translation from the final's own decode, when the route is speech."""
        target = self.config.target_language
        assert target is not None
        source = final.language
        route = self._route_for(source)
        if route.kind == "none":
            return
        if route.kind == "text":
            assert route.engine is not None
            translated = await self._run(route.engine.translate, text, source, target)
            engine = route.engine.name
        elif english is not None:  # a speech route: into English
            translated, engine = english, f"{self.engines.asr.name}-translate"
        else:  # Whisper decodes the segment again, asked for English
            stream = self.engines.asr.stream(source, task="translate", partials=False)
            await self._run(stream.accept, np.concatenate(seg.chunks))
            translated = " ".join(r.text for r in await self._run(stream.finish))
            engine = f"{self.engines.asr.name}-translate"
        self._emit(
            Translation(
                leg=self.leg,
                segment=seg.id,
                audio_start=final.audio_start,
                audio_end=final.audio_end,
                text=translated,
                source_text=text,
                source_language=source,
                target_language=target,
                engine=engine,
                tier=route.tier,
                speech_end_wall=final.speech_end_wall,
                asr_wall=final.wall,
            )
        )

    def _route_for(self, source: str) -> Route:
        """The route from ``source`` to the target, planned once and kept while the source stays the same."""
        return self._route if self._route and self._route.source == source else self._plan(source)

    def _plan(self, source: str) -> Route:
        router = self.engines.router or Router([])
        self._route = router.route(source, self.config.target_language or source)
        return self._route

    def _error(self, seg_id: int, message: str) -> None:
        self._emit(
            PipelineError(
                leg=self.leg,
                segment=seg_id,
                audio_start=self.tap.time,
                audio_end=self.tap.time,
                message=message,
            )
        )

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


async def run_file(pipeline: Pipeline, path: str | Path, *, realtime: bool = False) -> AsyncIterator[Event]:
    """Stream a file through a pipeline (at real time or as fast as possible) and yield its events."""
    frames = decode_file(path)
    feeder = asyncio.get_running_loop().create_task(_feed_frames(pipeline, frames, realtime))
    try:
        async for event in pipeline.events():
            yield event
    finally:
        if not feeder.done():
            feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    feeder.result()  # re-raise a decode error from the feeder


async def _feed_frames(pipeline: Pipeline, frames: Iterable[AudioFrame], realtime: bool) -> None:
    try:
        t0 = time.monotonic()
        for i, frame in enumerate(frames):
            await pipeline.push(frame)
            if realtime:
                delay = t0 + frame.pts + frame.duration - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 50 == 0:
                await asyncio.sleep(0)  # let the worker and the consumer run
    finally:
        await pipeline.close()
