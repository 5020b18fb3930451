"""One live call: its media, both legs' speech taps, subtitles, live voice ID, ID&V, and the customer's key.

A ``Call`` is made by ``CallService`` once a customer's offer is accepted on a
video link, or once a contact-centre platform opens a stream of a phone call,
and owns everything that lives as long as the call: its transport
(``media.webrtc.CallMedia`` or ``media.phone.PhoneMedia``), one ``SpeechTap`` per leg (resample and VAD once),
the ``Subtitles`` and ``LiveVoice`` listening to those taps, and the call's
``LiveIdv``. Its events go out through the ``Hub``: to the agent's consoles and to
the customer's page. When the media ends (hang-up, revoke, a vanished peer),
the customer's page and the service hear it at once; the parts then close in
order, in the background, so the last words still reach the transcript without
anyone waiting for them.

What the customer's page says is the call's ``PageState``, and only ever the
truth: *waiting* until the agent's console reports the customer's media on
screen, *watched* while it does, *ended* the moment the call ends. Its words are
the call's ``texts``, in the language the page is shown in, which follows the
customer's language when the agent corrects it or detection settles it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum

from calls.cluster import Cluster
from calls.hub import Hub, customer_topic
from calls.interpreting import Interpreter
from calls.limits import Limiters, local_limiters
from calls.metrics import Metrics
from calls.subtitles import Subtitles, language_message
from calls.texts import Catalogue
from identity.idv import IdvContext, LiveIdv
from identity.live import EnrolmentUpdate, LiveVoice, SpoofSignal, VoiceEvent, VoiceVerdict, WatchlistAlert
from identity.voiceid import VoiceId
from media.segmenter import SegmenterConfig
from media.tap import SpeechTap
from media.transport import Transport
from media.voice_out import Hearing
from models.engines import Engines
from store.base import Link, Store
from store.errors import Conflict
from store.security import SecretChecks, Vault, token_hash

log = logging.getLogger(__name__)

LEGS = ("customer", "agent")


class PageState(StrEnum):
    """What the customer's page tells them about the agent."""

    WAITING = "waiting"  # connected, but no console shows their media (yet, or any more)
    WATCHED = "watched"  # the agent's console reports their media on screen
    ENDED = "ended"


@dataclass
class Services:
    """What every call shares: the store, the vault, the engines and their threads, voice ID, ID&V, events."""

    store: Store
    vault: Vault
    hub: Hub
    secrets: SecretChecks  # password and PIN checks, on threads of their own
    metrics: Metrics
    texts: Catalogue
    engines: Engines | None = None  # None: video only, no subtitles
    executor: Executor | None = None  # ASR and MT
    voice_id: VoiceId | None = None
    voice_executor: Executor | None = None  # live voice decisions, apart from transcription
    idv: IdvContext | None = None  # None: no identity check on this server
    cluster: Cluster | None = None  # None: one node; else where the other nodes' calls are
    limiters: Limiters = local_limiters  # sign-in and unknown-link limits: this node's, or shared by the nodes
    tts_executor: Executor | None = None  # translated speech, apart from recognition


class Call:
    def __init__(
        self,
        link: Link,
        media: Transport,
        services: Services,
        *,
        agent_language: str,
        customer_key: str | None = None,
        page_language: str | None = None,
        partials: bool = True,
        endpoint_ms: int = 300,
    ) -> None:
        self.id, self.link, self.media = link.id, link, media
        self._s = services
        self.page_language = page_language or services.texts.choose(link.language)
        self.page_state = PageState.WAITING
        self._key_hash = token_hash(customer_key) if customer_key else None  # None: no customer page (a phone call)
        self._agent_id = link.agent_id
        self.agent_language = agent_language
        self.taps: dict[str, SpeechTap] = {}
        self.subtitles: Subtitles | None = None
        self.interpreter: Interpreter | None = None
        self.voice: LiveVoice | None = None
        self.idv: LiveIdv | None = None
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[str] = loop.create_future()  # the end is recorded: the agent and customer know
        self.finished: asyncio.Future[None] = loop.create_future()  # and its parts have closed: transcript complete
        engines = services.engines
        if engines is None:
            return
        segments = SegmenterConfig(hangover_ms=endpoint_ms)
        self.taps = {leg: SpeechTap(engines.vad(), segments, leg) for leg in LEGS}
        media.customer_listeners.append(self.taps["customer"].feed)
        media.agent_listeners.append(self.taps["agent"].feed)
        self.subtitles = Subtitles(
            link.id,
            engines,
            self.taps,
            customer_language=None if link.language == "detect" else link.language,
            agent_language=agent_language,
            send_agent=self.to_agent,
            send_customer=self.to_customer,
            vault=services.vault,
            transcripts=services.store.transcripts,
            executor=services.executor,
            partials=partials,
            metrics=services.metrics,
            on_language=self._language_changed,
        )
        if engines.voices is not None and media.heard_by:
            self.interpreter = Interpreter(
                link.id,
                engines.voices,
                media.heard_by,
                send=self._to_listener,
                metrics=services.metrics,
                executor=services.tts_executor,
            )
            self.subtitles.listen(self.interpreter.hear)
        if services.voice_id is not None:
            self.voice = LiveVoice(
                services.voice_id, link.id, self._voice_event, services.voice_executor, narrowband=media.narrowband
            )
            self.taps["customer"].listen(self.voice.hear)

    def start_idv(self) -> None:
        """The identity check begins once the customer is answered (its lookups never delay the answer)."""
        if self._s.idv is None:
            return
        self.idv = LiveIdv(
            self._s.idv,
            self.id,
            self.link.phone,
            self.voice,
            self.to_agent,
            self.to_customer,
            texts=self.texts,
            page=self._key_hash is not None,
            continues=(self.link.detail or {}).get("from"),  # a menu's hand-off: verified there, not asked again
        )
        self.idv.begin()

    def is_customer(self, key: str) -> bool:
        return self._key_hash is not None and token_hash(key or "") == self._key_hash

    # -- events ------------------------------------------------------------------------------------------------

    def to_agent(self, message: dict) -> None:
        self._s.hub.publish(self._agent_id, message)

    def to_customer(self, message: dict | None) -> None:
        self._s.hub.publish(customer_topic(self.id), message)

    def _voice_event(self, event: VoiceEvent) -> None:
        self.to_agent(event.to_message())
        if isinstance(event, VoiceVerdict) and {"speech_reached", "decided"} <= event.timing.keys():
            decided = event.timing["decided"] - event.timing["speech_reached"]
            self._s.metrics.stage.labels("voiceid_decision").observe(max(0.0, decided))
        if self.idv is None:
            return
        if isinstance(event, VoiceVerdict):
            self.idv.on_verdict(event.claimed, event.verdict, event.early)
        elif isinstance(event, WatchlistAlert):
            self.idv.on_alert(event.hits)
        elif isinstance(event, SpoofSignal) and event.liveness.spoofed and not event.early:
            self.idv.on_spoof()
        elif isinstance(event, EnrolmentUpdate) and (event.progress.enrolled or event.progress.refused):
            self.idv.enrolment_finished(event.progress)

    def _to_listener(self, message: dict) -> None:
        """News of what a side hears: the agent's console hears all of it, the customer's page their own."""
        self.to_agent(message)
        if message.get("listener") == "customer":
            self.to_customer(message)

    def _hearing_changed(self) -> None:
        """A language changed: each side hears what translated voice it now allows."""
        for message in self.hearing_view():
            self._to_listener(message)

    def customer_view(self) -> list[dict]:
        """What a customer page that (re)connects should show now."""
        view = [self._page_message()]
        if self.interpreter is not None:
            view.append(self.hearing_message("customer"))
        if self.idv is not None:
            view.append(self.idv.customer_view())
            if self.idv.consent_asked:
                view.append(self.idv.consent_prompt())
        return view

    def _page_message(self) -> dict:
        return {"type": "call", "state": self.page_state.value}

    # -- what each side hears ----------------------------------------------------------------------------------

    @property
    def customer_language(self) -> str | None:
        """The customer's language as the call knows it now: detected or set, else the link's; None: not yet."""
        detected = self.subtitles.detected_language if self.subtitles is not None else None
        return detected or (None if self.link.language == "detect" else self.link.language)

    def hearing_message(self, listener: str) -> dict:
        """What ``listener`` hears of the other side, and whether a translated voice can be offered to them: the
        two sides speak different languages, a route translates the other side into the listener's, and a voice
        speaks it."""
        out = self.media.heard_by.get(listener) if self.interpreter is not None else None
        language = self.customer_language if listener == "customer" else self.agent_language
        source = self.agent_language if listener == "customer" else self.customer_language
        synthesizer = self.interpreter.speaks(language) if self.interpreter is not None else None
        router = self._s.engines.router if self._s.engines is not None else None
        offered = (
            out is not None
            and synthesizer is not None
            and source is not None
            and source != language
            and (router is None or router.find(source, language) is not None)
        )
        return {
            "type": "hearing",
            "link_id": self.id,
            "listener": listener,
            "hear": out.hearing.value if out is not None else Hearing.ORIGINAL.value,
            "translated_voice": offered,
            "language": language,
            "voice": synthesizer.voice(language) if offered and synthesizer is not None else None,
        }

    def hearing_view(self) -> list[dict]:
        """Both sides' hearing, for the agent's console."""
        return [self.hearing_message(side) for side in LEGS] if self.interpreter is not None else []

    def set_hearing(self, listener: str, hearing: Hearing) -> dict:
        """``listener`` chose what to hear of the other side: the original voice, its translation, or both."""
        out = self.media.heard_by.get(listener)
        if out is None:
            raise Conflict("nothing is played back on this call: the platform carries the voices")
        out.hear(hearing)
        message = self.hearing_message(listener)
        self._to_listener(message)
        return message

    # -- what the customer reads -------------------------------------------------------------------------------

    def texts(self, key: str, /, **params: object) -> str:
        return self._s.texts.render(self.page_language, key, **params)

    def set_watched(self, watched: bool) -> None:
        """The agent's console has the customer's media on screen (or no longer): the page says so."""
        state = PageState.WATCHED if watched else PageState.WAITING
        if self.page_state in (state, PageState.ENDED):
            return
        self.page_state = state
        self.to_customer(self._page_message())
        self.to_agent({"type": "watching", "link_id": self.id, "watching": watched})

    def set_language(self, language: str, speaker: str = "customer") -> None:
        """The agent corrects the customer's language (recognition, translation and the page follow it), or says
        they speak another themselves for the rest of the call."""
        if speaker == "agent":
            if self.subtitles is not None:
                self.subtitles.set_agent_language(language)  # raises UnsupportedLanguage, changing nothing
            self.agent_language = language
            self.to_agent(language_message(self.id, language, None, settled=True, by="agent", speaker="agent"))
            self._hearing_changed()
            return
        if self.subtitles is not None:
            self.subtitles.set_customer_language(language)  # raises UnsupportedLanguage, changing nothing
            return
        self.to_agent(language_message(self.id, language, None, settled=True, by="agent"))
        self._language_changed(language)

    def _language_changed(self, language: str) -> None:
        """The customer's language changed (set by the agent, or detected): their page changes language too,
        when there is a catalogue for it, with the identity check's current message. Both sides hear of the
        translated voice that the new language allows."""
        self._hearing_changed()
        if language == self.page_language or not self._s.texts.has(language) or self._key_hash is None:
            return
        self.page_language = language
        self.to_customer({"type": "language", "language": language, "texts": self._s.texts.texts(language)})
        for message in self.customer_view()[1:]:
            self.to_customer(message)

    # -- the end -----------------------------------------------------------------------------------------------

    async def end(self, reason: str) -> None:
        """Hang up (idempotent): the media closes, then ``closed`` runs once."""
        await self.media.end(reason)

    async def closed(self, reason: str, then: Callable[[Call, str], Awaitable[None]]) -> None:
        """The media ended: the customer's page hears it first (their camera stops now), then ``then`` (the
        service records the end and frees the call's place). Nothing here waits on transcription: the parts
        close in ``wind_down``, which the service runs in the background."""
        self.page_state = PageState.ENDED
        self.to_customer(self._page_message())
        self.to_customer(None)
        for tap in self.taps.values():
            tap.close()  # no more audio in: what was heard is queued for the parts below
        await then(self, reason)
        if not self.ended.done():
            self.ended.set_result(reason)

    async def wind_down(self) -> None:
        """Close the parts in order, after the end: the last words still reach the transcript (and a platform
        that waits for them, such as AudioHook's close, on ``finished``)."""
        try:
            if self.interpreter is not None:
                await self.interpreter.close()
            if self.subtitles is not None:
                await self.subtitles.close()
            if self.voice is not None:
                await self.voice.close()  # an unfinished enrolment keeps what this call collected
            if self.idv is not None:
                await self.idv.close()
        finally:
            if not self.finished.done():
                self.finished.set_result(None)
