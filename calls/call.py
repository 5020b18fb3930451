"""One live call: its media, both legs' speech taps, subtitles, live voice ID, ID&V, and the customer's key.

A ``Call`` is made by ``CallService`` once a customer's offer is accepted on a
video link, or once a contact-centre platform opens a stream of a phone call,
and owns everything that lives as long as the call: its transport
(``media.webrtc.CallMedia`` or ``media.phone.PhoneMedia``), one ``SpeechTap`` per leg (resample and VAD once),
the ``Subtitles`` and ``LiveVoice`` listening to those taps, and the call's
``LiveIdv``. Its events go out through the ``Hub``: to the agent's consoles and to
the customer's page. When the media ends (hang-up, revoke, a vanished peer),
the call closes its parts in order, so the last words still reach the
transcript, and tells the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from calls.hub import Hub, customer_topic
from calls.metrics import Metrics
from calls.subtitles import Subtitles
from identity.idv import IdvContext, LiveIdv
from identity.live import EnrolmentUpdate, LiveVoice, VoiceEvent, VoiceVerdict, WatchlistAlert
from identity.voiceid import VoiceId
from media.segmenter import SegmenterConfig
from media.tap import SpeechTap
from media.transport import Transport
from models.engines import Engines
from store.base import Link, Store
from store.security import SecretChecks, Vault, token_hash

log = logging.getLogger(__name__)

LEGS = ("customer", "agent")


@dataclass
class Services:
    """What every call shares: the store, the vault, the engines and their threads, voice ID, ID&V, events."""

    store: Store
    vault: Vault
    hub: Hub
    secrets: SecretChecks  # password and PIN checks, on threads of their own
    metrics: Metrics
    engines: Engines | None = None  # None: video only, no subtitles
    executor: Executor | None = None  # ASR and MT
    voice_id: VoiceId | None = None
    voice_executor: Executor | None = None  # live voice decisions, apart from transcription
    idv: IdvContext | None = None  # None: no identity check on this server


class Call:
    def __init__(
        self,
        link: Link,
        media: Transport,
        services: Services,
        *,
        agent_language: str,
        customer_key: str | None = None,
        partials: bool = True,
        endpoint_ms: int = 300,
    ) -> None:
        self.id, self.link, self.media = link.id, link, media
        self._s = services
        self._key_hash = token_hash(customer_key) if customer_key else None  # None: no customer page (a phone call)
        self._agent_id = link.agent_id
        self.taps: dict[str, SpeechTap] = {}
        self.subtitles: Subtitles | None = None
        self.voice: LiveVoice | None = None
        self.idv: LiveIdv | None = None
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
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
        )
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
            page=self._key_hash is not None,
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
        elif isinstance(event, EnrolmentUpdate) and (event.progress.enrolled or event.progress.refused):
            self.idv.enrolment_finished(event.progress)

    def customer_view(self) -> list[dict]:
        """What a customer page that (re)connects should show now."""
        if self.idv is None:
            return []
        return [self.idv.customer_view()] + ([self.idv.consent_prompt()] if self.idv.consent_asked else [])

    # -- the end -----------------------------------------------------------------------------------------------

    async def end(self, reason: str) -> None:
        """Hang up (idempotent): the media closes, then ``closed`` runs once."""
        await self.media.end(reason)

    async def closed(self, reason: str, then: Callable[[Call, str], Awaitable[None]]) -> None:
        """The media ended: close the parts in order (the last words still reach the transcript)."""
        for tap in self.taps.values():
            tap.close()
        if self.subtitles is not None:
            await self.subtitles.close()
        if self.voice is not None:
            await self.voice.close()  # an unfinished enrolment keeps what this call collected
        if self.idv is not None:
            await self.idv.close()
        self.to_customer(None)
        await then(self, reason)
        if not self.ended.done():
            self.ended.set_result(reason)
