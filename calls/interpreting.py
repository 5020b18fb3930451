"""Translated speech for one call: each side's translated lines, spoken into what the other side hears.

The agent's lines, once translated into the customer's language, are synthesised and queued on the customer's
``VoiceOut``; the customer's, translated into the agent's language, on the agent's. Only for a listener who
chose to hear the translation (``Hearing``): nothing is synthesised for one who hears the original alone.

A line is spoken sentence by sentence: its first sentence plays while the next is synthesised, so the listener
hears the translation start as soon as one sentence is ready. One task per listener keeps lines in the order
they were said; a listener left far behind (a speaker who never pauses) skips what was queued and hears the new
line, while the subtitles keep every word. Synthesis runs off the event loop on its own executor, apart from
recognition's, so a busy recogniser never holds a sentence back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial

from calls.metrics import Metrics
from media.events import Event, Translation
from media.voice_out import Hearing, VoiceOut
from models.base import SpeechSynthesizer
from models.errors import EngineError, UnsupportedLanguage
from models.voices import Voices, sentences

log = logging.getLogger(__name__)

MAX_BEHIND_SECONDS = 8.0  # speech still queued for a listener when a new line comes: beyond this, catch up


def other(side: str) -> str:
    return "customer" if side == "agent" else "agent"


class Interpreter:
    def __init__(
        self,
        link_id: str,
        voices: Voices,
        heard_by: dict[str, VoiceOut],
        *,
        send: Callable[[dict], None],
        metrics: Metrics,
        executor: Executor | None = None,
    ) -> None:
        self.link_id, self.voices, self.heard_by = link_id, voices, heard_by
        self._send, self._metrics, self._executor = send, metrics, executor
        self._lines: dict[str, asyncio.Queue[Translation | None]] = {side: asyncio.Queue() for side in heard_by}
        self._unspoken: set[str] = set()  # languages no voice speaks, said once each
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._speak_to(side)) for side in heard_by]

    def speaks(self, language: str | None) -> SpeechSynthesizer | None:
        """The synthesizer that speaks ``language``, if any."""
        if language is None:
            return None
        try:
            return self.voices.for_language(language)
        except UnsupportedLanguage:
            return None

    def hear(self, leg: str, event: Event) -> None:
        """A subtitle event of ``leg`` (``Subtitles.listen``): its translation is spoken to the other side."""
        listener = other(leg)
        out = self.heard_by.get(listener)
        if not isinstance(event, Translation) or out is None or out.hearing is Hearing.ORIGINAL:
            return
        if not event.text.strip():
            return
        if out.queued_seconds > MAX_BEHIND_SECONDS and (dropped := out.catch_up()):
            # A listener who only hears the translation must not fall ever further behind a talkative speaker.
            log.info("call %s: %d sentences of speech for the %s dropped to catch up", self.link_id, dropped, listener)
            self._send({"type": "speech_skipped", "link_id": self.link_id, "listener": listener, "clips": dropped})
        self._lines[listener].put_nowait(event)

    async def close(self) -> None:
        """The call ended: nobody is left to hear what was still to be said."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _speak_to(self, listener: str) -> None:
        out, lines = self.heard_by[listener], self._lines[listener]
        while (line := await lines.get()) is not None:
            try:
                await self._speak(out, listener, line)
            except EngineError as e:
                log.warning("call %s: speech for the %s failed: %s", self.link_id, listener, e)
            except Exception:
                log.exception("call %s: speech for the %s failed", self.link_id, listener)

    async def _speak(self, out: VoiceOut, listener: str, line: Translation) -> None:
        language = line.target_language
        synthesizer = self.speaks(language)
        if synthesizer is None:
            if language not in self._unspoken:
                self._unspoken.add(language)
                message = f"no voice speaks {language!r}: the {listener} reads the translation only"
                self._send({"type": "speech_error", "link_id": self.link_id, "listener": listener, "message": message})
            return
        loop = asyncio.get_running_loop()
        for i, sentence in enumerate(sentences(line.text)):
            if out.hearing is Hearing.ORIGINAL:
                return  # the listener switched the translation off mid-line
            pcm = await loop.run_in_executor(self._executor, synthesizer.synthesize, sentence, language)
            started = partial(self._started, listener, line, synthesizer) if i == 0 else None
            out.speak(pcm, synthesizer.sample_rate, started)

    def _started(self, listener: str, line: Translation, synthesizer: SpeechSynthesizer) -> None:
        """The line's first translated audio left for the listener: the latency a listener feels ends here."""
        now = time.time()
        self._metrics.stage.labels("speech_out").observe(max(0.0, now - line.speech_end_wall))
        self._send(
            {
                "type": "speech_out",
                "link_id": self.link_id,
                "speaker": line.leg,
                "listener": listener,
                "segment": line.segment,
                "language": line.target_language,
                "engine": synthesizer.name,
                "voice": synthesizer.voice(line.target_language),
                "timing": {"speech_end": line.speech_end_wall, "asr": line.asr_wall, "mt": line.wall, "audio": now},
            }
        )
