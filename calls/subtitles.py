"""Live translated subtitles for one call: both legs' speech taps through the speech pipeline.

The customer's audio is transcribed in their language and translated into the
agent's; the agent's the other way. Every pipeline event becomes a subtitle
message for the agent console and the customer page, stamped with the times a
latency budget needs (speech end, ASR done, MT done, sent). Finals and their
translations make up the transcript: each is appended to the store as its own
sealed (AES-GCM) record as it happens, so a long call costs no more per line
than a short one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field

from calls.metrics import Metrics
from media.events import (
    Event,
    FinalTranscript,
    LanguageChanged,
    PartialTranscript,
    PipelineError,
    SpeechEnded,
    SpeechStarted,
    Translation,
)
from media.pipeline import Pipeline, PipelineConfig
from media.tap import SpeechTap
from models.engines import Engines
from models.errors import UnsupportedLanguage
from store.base import Transcripts
from store.security import Vault

log = logging.getLogger(__name__)


@dataclass
class Line:
    """One utterance in the transcript: who said what, in which language, its translation, and when."""

    speaker: str
    segment: int
    start: float  # wall-clock seconds
    end: float
    language: str
    text: str
    translation: str | None = None
    translation_language: str | None = None
    engine: str | None = None
    timing: dict = field(default_factory=dict)


class Subtitles:
    def __init__(
        self,
        link_id: str,
        engines: Engines,
        taps: dict[str, SpeechTap],
        *,
        customer_language: str | None,
        agent_language: str,
        send_agent: Callable[[dict], None],
        send_customer: Callable[[dict], None],
        vault: Vault,
        transcripts: Transcripts,
        executor: Executor | None = None,
        partials: bool = True,
        metrics: Metrics,
        on_language: Callable[[str], None] = lambda language: None,
    ) -> None:
        self.link_id, self._metrics, self._on_language = link_id, metrics, on_language
        self._send_agent, self._send_customer = send_agent, send_customer
        self._transcript = TranscriptWriter(link_id, vault, transcripts)
        self._open: dict[tuple[str, int], Line] = {}
        self._listeners: list[Callable[[str, Event], None]] = []
        self._started: dict[tuple[str, int], float] = {}
        self._ended: dict[tuple[str, int], float] = {}  # when the endpoint was decided, by leg and segment
        self.detected_language: str | None = None
        self._router = engines.router
        languages = {"customer": (customer_language, agent_language), "agent": (agent_language, customer_language)}
        # The agent's language is known, so only its translation target can be undecided ("detect").
        self.pipelines = {
            leg: Pipeline(
                engines,
                PipelineConfig(spoken, target, partials, embed_speaker=False),
                leg=leg,
                executor=executor,
                tap=taps[leg],
            )
            for leg, (spoken, target) in languages.items()
        }
        self._readers = [
            asyncio.get_running_loop().create_task(self._read(leg, p)) for leg, p in self.pipelines.items()
        ]

    def set_customer_language(self, language: str) -> None:
        """The agent corrects the customer's language: recognised in it from their next utterance, the agent
        translated into it. Raises ``UnsupportedLanguage`` (changing nothing) if either cannot be done."""
        agent = self.pipelines["agent"]
        if self._router is not None and agent.language is not None:
            self._router.both_ways(language, agent.language)
        self.pipelines["customer"].set_language(language, by="agent")  # its LanguageChanged does the rest

    def set_agent_language(self, language: str) -> None:
        """The agent speaks another language from now on (a bilingual agent who switches to the customer's):
        their speech is recognised in it, and the customer is translated into it. Raises ``UnsupportedLanguage``
        (changing nothing) if either cannot be done."""
        customer = self.pipelines["customer"].language
        if self._router is not None and customer is not None:
            self._router.both_ways(customer, language)
        self.pipelines["agent"].set_language(language, by="agent")
        self.pipelines["customer"].retarget(language)

    def listen(self, listener: Callable[[str, Event], None]) -> None:
        """Also hand the typed subtitle events (partials, finals, translations) with their leg to ``listener``:
        how a platform's stream gets its transcript back."""
        self._listeners.append(listener)

    # -- audio in ----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Finalise what is still being said (a peer that vanished mid-sentence): its lines reach the transcript."""
        await asyncio.gather(*(p.close() for p in self.pipelines.values()))
        await asyncio.gather(*self._readers)

    # -- subtitles out -----------------------------------------------------------------------------------------

    async def _read(self, leg: str, pipeline: Pipeline) -> None:
        async for event in pipeline.events():
            try:
                self._on_event(leg, event)
            except Exception:
                log.exception("subtitles of call %s: event %s failed", self.link_id, event.type)

    def _on_event(self, leg: str, event: Event) -> None:
        key = (leg, event.segment)
        if isinstance(event, SpeechStarted):
            self._started[key] = event.wall
            return
        if isinstance(event, SpeechEnded):
            self._ended[key] = event.wall
            return
        if isinstance(event, LanguageChanged):
            if leg == "customer":
                self._language_changed(event)
            return
        if isinstance(event, PipelineError):
            self._send({"type": "subtitle_error", "link_id": self.link_id, "speaker": leg, "message": event.message})
            return
        if not isinstance(event, PartialTranscript | FinalTranscript | Translation):
            return
        message = {
            "type": "subtitle",
            "link_id": self.link_id,
            "speaker": leg,
            "segment": event.segment,
            "kind": event.type,
            "text": event.text,
            "language": getattr(event, "language", None) or getattr(event, "target_language", None),
            "audio_start": round(event.audio_start, 3),
            "audio_end": round(event.audio_end, 3),
            "speech_start": self._started.get(key),
        }
        if isinstance(event, FinalTranscript):
            line = Line(
                leg,
                event.segment,
                self._started.get(key, event.wall),
                event.speech_end_wall,
                event.language,
                event.text,
                timing={"speech_end": event.speech_end_wall, "asr": event.wall},
            )
            self._open[key] = line
            message["timing"] = dict(line.timing)
            self._transcript.line(line)
        elif isinstance(event, Translation):
            message.update(
                source_text=event.source_text,
                source_language=event.source_language,
                engine=event.engine,
                tier=event.tier,
            )
            message["timing"] = {"speech_end": event.speech_end_wall, "asr": event.asr_wall, "mt": event.wall}
            if self._open.pop(key, None) is not None:
                self._transcript.translation(leg, event)
        self._send(message)
        self._observe(leg, key, event, message["timing"])
        for listener in self._listeners:
            try:
                listener(leg, event)
            except Exception:
                log.exception("subtitles of call %s: a listener failed", self.link_id)

    def _observe(self, leg: str, key: tuple[str, int], event: Event, timing: dict) -> None:
        """The message's stamps into the latency histograms: the production figures are the benchmark's."""
        if "speech_end" not in timing:
            return
        stage, speech_end = self._metrics.stage, timing["speech_end"]
        self._metrics.subtitle.labels(event.type, leg).observe(timing["sent"] - speech_end)
        if isinstance(event, FinalTranscript):
            stage.labels("asr_final").observe(timing["asr"] - speech_end)
            if (ended := self._ended.pop(key, None)) is not None:
                stage.labels("vad_endpoint").observe(max(0.0, ended - speech_end))
        elif isinstance(event, Translation):
            stage.labels("mt").observe(timing["mt"] - timing["asr"])
            stage.labels("subtitle_sent").observe(timing["sent"] - speech_end)

    def _language_changed(self, event: LanguageChanged) -> None:
        """The customer's language, detected (or re-detected) or set by the agent: the agent is translated into
        it from the next line, the console shows it, and the call's page follows it."""
        changed, self.detected_language = event.language != self.detected_language, event.language
        if changed and self.pipelines["agent"].config.target_language != event.language:
            self._retarget_agent(event.language)  # tried once per language: a missing route is said once
        self._send_agent(language_message(self.link_id, event.language, event.confidence, event.settled, event.by))
        self._on_language(event.language)

    def _retarget_agent(self, language: str) -> None:
        """Translate the agent for the customer in the language just detected, if anything can; else say so once,
        and the agent's lines go out untranslated (rather than an error on every line)."""
        agent = self.pipelines["agent"]
        try:
            if self._router is not None and agent.language is not None:
                self._router.route(agent.language, language)
        except UnsupportedLanguage as e:
            self._send({"type": "subtitle_error", "link_id": self.link_id, "speaker": "agent", "message": str(e)})
            return
        agent.retarget(language)

    def _send(self, message: dict) -> None:
        message.setdefault("timing", {})["sent"] = time.time()
        self._send_agent(message)
        self._send_customer(message)


def language_message(
    link_id: str, language: str, confidence: float | None, settled: bool, by: str, speaker: str = "customer"
) -> dict:
    """The console's news of a side's language: the customer's detected (how sure, settled yet) or set by the
    agent, or the agent's own, set for this call."""
    return {
        "type": "language",
        "link_id": link_id,
        "speaker": speaker,
        "language": language,
        "confidence": None if confidence is None else round(confidence, 2),
        "settled": settled,
        "by": by,
    }


class TranscriptWriter:
    """Appends a call's transcript to the store, one sealed record per final and per translation."""

    def __init__(self, link_id: str, vault: Vault, transcripts: Transcripts) -> None:
        self.link_id, self._vault, self._transcripts = link_id, vault, transcripts

    def line(self, line: Line) -> None:
        self._append({"line": asdict(line)})

    def translation(self, leg: str, t: Translation) -> None:
        self._append(
            {
                "translation": {
                    "speaker": leg,
                    "segment": t.segment,
                    "translation": t.text,
                    "translation_language": t.target_language,
                    "engine": t.engine,
                    "tier": t.tier,
                    "mt": t.wall,
                }
            }
        )

    def _append(self, record: dict) -> None:
        self._transcripts.append(self.link_id, self._vault.seal(json.dumps(record).encode(), _sealed_as(self.link_id)))


def _sealed_as(link_id: str) -> str:
    """The record name a call's transcript records are sealed under (a record moved to another call won't open)."""
    return f"transcript:{link_id}"


def load_transcript(vault: Vault, transcripts: Transcripts, link_id: str) -> dict | None:
    """The whole transcript, lines in the order spoken with their translations; None if nothing was said."""
    lines: dict[tuple[str, int], dict] = {}
    for _, sealed in transcripts.records(link_id):
        record = json.loads(vault.open(sealed, _sealed_as(link_id)))
        if line := record.get("line"):
            lines[(line["speaker"], line["segment"])] = line
        elif t := record.get("translation"):
            line = lines.get((t["speaker"], t["segment"]))
            if line is not None:
                line.update({k: t[k] for k in ("translation", "translation_language", "engine", "tier") if k in t})
                line["timing"]["mt"] = t["mt"]
    if not lines:
        return None
    return {"link_id": link_id, "lines": sorted(lines.values(), key=lambda x: x["start"])}


def to_webvtt(transcript: dict, origin: float) -> str:
    """WebVTT with a voice tag per speaker; each cue holds the original and, below, its translation."""
    out = ["WEBVTT", ""]
    for i, line in enumerate(sorted(transcript["lines"], key=lambda x: x["start"]), 1):
        start, end = max(0.0, line["start"] - origin), max(0.0, line["end"] - origin)
        out.append(str(i))
        out.append(f"{_vtt_time(start)} --> {_vtt_time(max(end, start + 0.5))}")
        speaker = line["speaker"].capitalize()
        out.append(f"<v {speaker}><lang {line['language']}>{_vtt_escape(line['text'])}</lang>")
        if line.get("translation"):
            out.append(f"<lang {line['translation_language']}>{_vtt_escape(line['translation'])}</lang>")
        out.append("")
    return "\n".join(out)


def _vtt_time(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("-->", "→")
