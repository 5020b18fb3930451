"""The calls of one server: links are made here, limits are enforced here, and the live calls are held here.

Handlers in ``signaling`` call these methods with the agent (or the customer's
token) and get records back; refusals are ``store.errors`` kinds, which the
web edge maps to statuses in one place. One ``Call`` per live call, by id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import segno
from aiortc import RTCIceServer, RTCSessionDescription

from calls.access import Access, Permission, customer_id
from calls.call import Call, Services
from calls.context import Context
from calls.hub import customer_topic
from calls.limits import CallSlots, Slot
from calls.logcontext import bind
from calls.queues import Queues
from calls.settings import Settings
from calls.subtitles import load_transcript
from identity.idv import LiveIdv
from media.phone import PhoneCall, PhoneMedia
from media.transport import Transport
from media.voice_out import Hearing
from media.webrtc import CallMedia
from models.base import language_of
from models.engines import is_language_code
from models.errors import UnsupportedLanguage
from store.base import FINAL_STATES, Agent, Link, Snapshot, new_call_id, new_snapshot_id
from store.errors import Conflict, Forbidden, Gone, Invalid, NotFound, Throttled
from store.security import new_token, security_phrase, token_hash

log = logging.getLogger(__name__)

USED = "this link has been used; each link works once, on one device"
LINK_FIELDS = ("customer_ref", "phone", "language", "reason", "expires_in")  # what POST /api/links says of any link


def link_options(body: dict) -> dict:
    """``create_link``'s options from a ``POST /api/links`` body (each kind checks them, and its own fields)."""
    return {
        "customer_ref": body.get("customer_ref"),
        "phone": body.get("phone"),
        "language": body.get("language"),
        "reason": body.get("reason"),
        "ttl": body.get("expires_in"),
    }


def _used() -> Gone:
    return Gone(USED, text="link.used")


class CallService:
    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings, self.services = settings, services
        self.store, self.hub, self.engines = services.store, services.hub, services.engines
        self.access = Access(self.store, services.secrets, services.metrics, services.limiters)
        self.unknown_links = services.limiters("unknown-link", 20, 60.0, 60.0)  # per address
        self.cluster = services.cluster
        self.slots = CallSlots(settings.max_calls, settings.max_calls_per_agent)
        self.live: dict[str, Call] = {}
        self._slots: dict[str, Slot] = {}  # each live call's place under the limits
        self._tasks: set[asyncio.Task] = set()  # fire-and-forget work, held until done
        self.winding: dict[str, Call] = {}  # ended calls whose transcription is finishing
        settings.routing.check()
        self.context = Context(self.store, settings.routing)
        self.queues = Queues(self.store, settings.routing, self._busy)
        if self.cluster is None:
            self._recover()
        else:  # agents on the other nodes count for this node's queues, and these for theirs
            cluster = self.cluster
            cluster.share(self.queues.snapshot)
            self.queues.others = lambda: cluster.presence.values()

    def _recover(self) -> None:
        """Calls the store still has live were left by a process that stopped without ending them (a crash, a
        lost machine): none of them can still have media here. Each is marked interrupted and audited; consoles
        read that state on connecting, and the calls no longer count against any limit. One node only: in a
        cluster, the store's live calls are the other nodes' too (``start`` settles this node's own)."""
        why = "the server stopped during the call"
        for link in self.store.links.interrupt_live(f"interrupted: {why}"):
            self._was_interrupted(link, why)

    async def start(self) -> None:
        """Join the cluster, if any: this node's calls of its last run, and those of any node that dies while this
        one runs, are interrupted here."""
        if self.cluster is not None:
            await self.cluster.start(self._interrupted)

    async def _interrupted(self, call_ids: list[str], why: str) -> None:
        for call_id in call_ids:
            if self.store.links.finish(call_id, "interrupted", f"interrupted: {why}"):
                self._was_interrupted(self.store.links.get(call_id), why)

    def _was_interrupted(self, link: Link | None, why: str) -> None:
        """Audited once, logged, and told to the consoles (their hello says it too)."""
        if link is not None:
            what = "call" if link.is_call else link.kind  # a menu in use is held like a call (journeys.menus)
            self.store.audit.add("server", f"{what}.interrupted", link.id, link.channel)
            log.warning("%s %s marked interrupted: %s", what, link.id, why)
            self._publish(link)

    async def _claim(self, call: Call) -> None:
        """This node holds the call's media: recorded before anyone is told the call is live, so the agent's
        requests for it find their way here from any node."""
        if self.cluster is not None:
            await self.cluster.claim(call.id)

    def idv_active(self) -> bool:
        """ID&V runs when there is a directory to identify callers in: the operator's, or customers loaded here."""
        s = self.settings.idv
        return self.services.idv is not None and s.enabled and (bool(s.directory_url) or self.store.customers.count())

    # -- links -------------------------------------------------------------------------------------------------

    async def create_link(
        self,
        agent: Agent,
        *,
        customer_ref: str | None = None,
        phone: str | None = None,
        language: str | None = None,
        reason: str | None = None,
        ttl: float | None = None,
        kind: str = "video",
        detail: dict | None = None,
    ) -> tuple[Link, str, str]:
        """A new link: the record, its URL (the token is in it, and nowhere else) and its QR code as SVG.

        ``kind`` is what it opens: a video call, or a journey (``menu``, ``payment``) whose service checked
        ``detail`` first. Only a video call needs subtitles in the customer's language."""
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise Invalid("expires_in must be a number of seconds")  # as the API names it
        ttl = self.settings.link_ttl if ttl is None else float(ttl)
        if not 30 <= ttl <= self.settings.max_link_ttl:
            raise Invalid(f"expiry must be between 30 and {int(self.settings.max_link_ttl)} seconds")
        for name, value, limit in (("customer_ref", customer_ref, 64), ("phone", phone, 32), ("reason", reason, 200)):
            if value is not None and (not isinstance(value, str) or len(value) > limit or not value.isprintable()):
                raise Invalid(f"{name} must be printable text of at most {limit} characters")
        language = language or agent.language
        if not is_language_code(language):
            raise Invalid("language must be a language code such as 'en' or 'pt', or 'detect'")
        if kind == "video":
            self.check_languages(language, agent.language)
        token = new_token()
        link = self.store.links.add(
            token_hash(token),
            agent.id,
            customer_ref=customer_ref,
            phone=phone,
            language=language,
            reason=reason or "",  # none: the customer page's own words, in their language
            phrase=security_phrase(),
            ttl=ttl,
            kind=kind,
            detail=detail,
        )
        self.store.audit.add(agent.name, "link.create", link.id, f"{kind} ttl={int(ttl)}s")
        url = f"{self.settings.public_url.rstrip('/')}/j/{token}"
        self._publish(link)
        return link, url, await asyncio.to_thread(_qr_svg, url)  # milliseconds of CPU: not on the event loop

    def check_languages(self, customer: str, agent: str) -> None:
        """Refuse, up front, a call whose subtitles could not be translated one way or the other."""
        if self.engines is None:
            return
        self._check_speech(customer)
        try:
            self.engines.check_routes(customer, agent)
        except UnsupportedLanguage as e:
            raise Invalid(f"no subtitles for this call: {e}") from None

    def _check_speech(self, language: str) -> None:
        try:
            self.engines.check_speech(language)
        except UnsupportedLanguage as e:
            raise Invalid(str(e)) from None

    def set_agent_language(self, agent: Agent, language: object) -> Agent:
        if not is_language_code(language) or language == "detect":
            raise Invalid("language must be a language code such as 'en' or 'pt'")
        if self.engines is not None:
            self._check_speech(language)
        self.store.agents.set_language(agent.id, language)
        return dataclasses.replace(agent, language=language)

    def link_for_agent(self, agent: Agent, link_id: str) -> Link:
        """The agent's own link; what this request logs from here on is about it."""
        link = self.store.links.get(link_id)
        if link is None or link.agent_id != agent.id:
            raise NotFound("no such link")
        bind(link.id, agent.name)
        return link

    async def customer_link(self, token: str, who: str) -> Link:
        """The link behind a customer's token, or the refusal they should see (unknown, used or expired).

        Only unknown tokens count against an address: a real link always opens, so customers sharing an address
        with a guesser (a carrier's NAT) are never locked out; a guesser is held to the limit, and each guess
        has 256 bits to find."""
        link = self.store.links.by_token(token_hash(token)) if 20 <= len(token) <= 64 else None
        if link is None:
            if not await self.unknown_links.take(who):
                raise Throttled("too many unknown links from this address; try again in a minute", "link.throttled")
            raise NotFound("this link does not exist; check it, or ask the agent for a new one", "link.unknown")
        if link.state == "expired":
            raise Gone("this link has expired; ask the agent for a new one", "link.expired")
        if link.state == "revoked":
            raise Gone("this link has been cancelled by the agent", "link.revoked")
        if link.state not in ("created", "opened"):
            raise _used()
        return link

    def page_language(self, link: Link, accept_language: str | None) -> str:
        """The customer page's language: the link's, or for ``detect`` the browser's (until speech says)."""
        return self.services.texts.choose(link.language, accept_language)

    async def join_info(self, token: str, who: str, accept_language: str | None = None) -> dict:
        """What the customer's page shows, in its language: the texts, who asks and why, the phrase."""
        link = await self.customer_link(token, who)
        if self.store.links.mark_opened(link.id):
            link = self.store.links.get(link.id)
            self.store.audit.add("customer", "link.open", link.id)
            self._publish(link)
        agent = self.store.agents.get(link.agent_id)
        language = self.page_language(link, accept_language)
        return {
            "company": self.settings.company,
            "agent": agent.display_name if agent else None,  # None: the page says "an agent"
            "reason": link.reason,  # the agent's own words, if any; else the page's, in its language
            "phrase": link.phrase,
            "language": language,
            "texts": self.services.texts.texts(language),
            "expires_in": max(0, int(link.expires - self.store.clock())),
            "ice_servers": self.settings.ice_servers(),
            "media": "audio" if link.audio_only else "video",
        }

    def revoke(self, agent: Agent, link_id: str) -> Link:
        link = self.link_for_agent(agent, link_id)
        if link.state in ("ended", "expired", "revoked"):
            raise Conflict(f"the link is {link.state} already")
        self.store.links.finish(link.id, "revoked", f"revoked by {agent.name}")
        self.store.audit.add(agent.name, "link.revoke", link.id)
        if (call := self.live.get(link.id)) is not None:
            self._background(call.end("revoked"))
        link = self.store.links.get(link.id)
        self._publish(link)
        return link

    # -- calls -------------------------------------------------------------------------------------------------

    async def customer_offer(
        self, token: str, offer: RTCSessionDescription, who: str, accept_language: str | None = None
    ) -> dict:
        link = await self.customer_link(token, who)
        if not link.is_call:
            raise Conflict(f"this link opens a {link.kind}, not a call")
        agent = self.store.agents.get(link.agent_id)
        bind(link.id, agent.name if agent else None)  # before any task: the call's media and pipelines inherit it
        slot = self.slots.take(link.agent_id)  # before the negotiation: concurrent offers cannot all pass
        media = CallMedia(link.id, self._ice(), partial(self._media_ended, link.id), self.settings.media_timeout)
        try:
            await media.receive_customer_offer(offer)  # a malformed offer must not use the link up
        except Exception:
            slot.release()
            await media.discard()
            raise
        if not self.store.links.consume(link.id):  # a second device lost the race
            slot.release()
            await media.discard()
            raise _used()
        self._slots[link.id] = slot
        key = new_token(16)
        call = Call(
            link,
            media,
            self.services,
            agent_language=agent.language if agent else "en",
            customer_key=key,
            page_language=self.page_language(link, accept_language),
            partials=self.settings.partials,
            endpoint_ms=self.settings.endpoint_ms,
        )
        media.on_agent_left = partial(call.set_watched, False)  # the console's tab closed, or its network went
        self.live[link.id] = call
        try:
            desc = await media.answer_customer()
            await self._claim(call)
        except Exception:
            await call.end("could not answer the customer")
            raise
        self.store.audit.add("customer", "call.connect", link.id)
        self._publish(self.store.links.get(link.id))
        self.greet(call.link)
        if self.idv_active():
            call.start_idv()
        return {"sdp": desc.sdp, "type": desc.type, "call_key": key}

    async def agent_offer(self, agent: Agent, link_id: str, offer: RTCSessionDescription) -> dict:
        call = self.live_call(agent, link_id)
        if not isinstance(call.media, CallMedia):
            raise Conflict("a phone call has no video to join: the agent hears the caller on the phone")
        desc = await call.media.accept_agent(offer)
        self.store.audit.add(agent.name, "call.agent_join", call.id)
        for message in call.hearing_view():
            call.to_agent(message)
        return {"sdp": desc.sdp, "type": desc.type}

    # -- phone calls, streamed by the contact-centre platform ---------------------------------------------------

    def _busy(self) -> set[int]:
        """The agents with a live call on this node."""
        return {c.link.agent_id for c in self.live.values() if not c.media.ended}

    def phone_agent(self, info: PhoneCall) -> Agent:
        """The agent a platform's stream is for: the one it names; else the first free agent of the queue for the
        caller's likely reason, or of the platform's queue where VoxGate has one of that name; else the agent the
        operator mapped the platform's queue to."""
        if not info.agent:
            reason = self.context.of(None, info.caller).reason
            for queue in (reason.queue if reason else None, info.queue):
                if queue in self.settings.routing.queues and (agent := self.queues.first_available(queue)):
                    return agent
        name = info.agent or (self.settings.queues.get(info.queue) if info.queue else None)
        agent = self.store.agents.by_name(name) if name else None
        if agent is None:
            if name:
                raise NotFound(f"no agent {name!r} on this server")
            raise Invalid("the stream names no agent: pass the agent's name, or a queue the server maps to one")
        return agent

    def _admit(self, info: PhoneCall) -> tuple[Agent, str, Slot]:
        """The agent, the caller's language and the call's place under the limits for a platform's call, or the
        refusal (before anything is made)."""
        agent = self.phone_agent(info)
        language = _language_code(info.language) or agent.language
        self.check_languages(language, agent.language)
        return agent, language, self.slots.take(agent.id, f"agent {agent.name}")

    def _record(self, info: PhoneCall, agent: Agent, language: str, call_id: str | None = None) -> Link:
        return self.store.links.add_call(
            agent.id,
            channel=info.channel,
            phone=(info.caller or None) and info.caller[:32],
            language=language,
            external_id=(info.external_id or None) and info.external_id[:128],
            call_id=call_id,
        )

    async def _begin(self, info: PhoneCall, agent: Agent, call: Call) -> None:
        self.live[call.id] = call
        try:
            await self._claim(call)
        except Exception:
            await call.end("the cluster could not record the call")
            raise
        self.store.audit.add(info.channel, "call.connect", call.id, f"agent={agent.name}")
        self._publish(call.link)
        self.greet(call.link)
        if self.idv_active():
            call.start_idv()

    def _call(self, link: Link, media: Transport, agent: Agent) -> Call:
        return Call(
            link,
            media,
            self.services,
            agent_language=agent.language,
            partials=self.settings.partials,
            endpoint_ms=self.settings.endpoint_ms,
        )

    async def open_phone_call(
        self, info: PhoneCall, hangup: Callable[[str], Awaitable[None]] | None = None
    ) -> tuple[Call, PhoneMedia]:
        """A phone call the platform began streaming: its record (born connected), its transport and its Call.

        Refusals (no such agent, no route for the language, at capacity) are raised before anything is made.
        The caller feeds the transport (``PhoneMedia.hear``); ``hangup`` closes the platform's stream when the
        server ends the call (the agent, a revoke, the watchdog).
        """
        agent, language, slot = self._admit(info)
        link = self._record(info, agent, language)
        bind(link.id, agent.name)
        self._slots[link.id] = slot
        media = PhoneMedia(
            link.id, partial(self._media_ended, link.id), hangup=hangup, media_timeout=self.settings.media_timeout
        )
        call = self._call(link, media, agent)
        media.start()
        await self._begin(info, agent, call)
        return call, media

    async def open_whip_call(self, info: PhoneCall, offer: RTCSessionDescription) -> tuple[Call, str]:
        """A call a WebRTC sender streams over WHIP: the first audio track is the caller, a second the agent.

        Returns the call and the SDP answer; a malformed offer is refused before any record is made.
        """
        agent, language, slot = self._admit(info)
        # The id comes first, so the media's tasks (started by the offer) log with it; the record, once it is accepted.
        call_id = new_call_id()
        bind(call_id, agent.name)
        media = CallMedia(call_id, self._ice(), partial(self._media_ended, call_id), self.settings.media_timeout)
        try:
            await media.receive_customer_offer(offer, ingest=True)
        except Exception:
            slot.release()
            await media.discard()
            raise
        link = self._record(info, agent, language, call_id)
        self._slots[link.id] = slot
        call = self._call(link, media, agent)
        await self._begin(info, agent, call)
        try:
            desc = await media.answer_customer()
        except Exception:
            await call.end("could not answer the WHIP offer")
            raise
        return call, desc.sdp

    async def escalate(self, agent: Agent, call_id: str, ttl: float | None = None) -> tuple[Link, str, str]:
        """A video link for the caller of a live phone call, pre-filled from it (number, customer, language)."""
        call = self.live_call(agent, call_id)
        idv = call.idv.record.customer_id if call.idv is not None else None
        return await self.create_link(
            agent,
            customer_ref=idv or call.link.customer_ref,
            phone=call.link.phone,
            language=(call.subtitles.detected_language if call.subtitles else None) or call.link.language,
            ttl=ttl,
        )

    def live_call(self, agent: Agent, link_id: str) -> Call:
        link = self.link_for_agent(agent, link_id)
        call = self.live.get(link.id)
        if call is None or call.media.ended:
            raise Conflict(f"the call is not live (state: {link.state})")
        return call

    def customer_call(self, token: str, key: str) -> Call:
        """The live call of the customer holding this link token and the key its offer returned."""
        link = self.store.links.by_token(token_hash(token))
        call = self.live.get(link.id) if link is not None else None
        if call is None or not call.is_customer(key):
            raise Forbidden("not this call's customer")
        bind(call.id)
        return call

    async def customer_hangup(self, token: str, key: str) -> None:
        """Idempotent: a page that closes after its call has ended (the agent hung up first) is told so, not
        refused; its key is gone with the call, and hanging up an ended call changes nothing."""
        link = self.store.links.by_token(token_hash(token))
        if link is not None and link.id not in self.live and link.state in FINAL_STATES and link.connected:
            return
        await self.customer_call(token, key).end("customer hung up")

    def set_watched(self, agent: Agent, link_id: str, watched: bool) -> None:
        """The agent's console reports the customer's media on screen (or no longer): their page says so."""
        call = self.live_call(agent, link_id)
        call.set_watched(watched)
        if watched:
            self.store.audit.add(agent.name, "call.agent_watching", call.id)

    def set_hearing(self, listener: str, call: Call, hear: object) -> dict:
        """``listener`` (the call's customer, or its agent) chose what to hear of the other side."""
        try:
            hearing = Hearing(hear)
        except ValueError:
            raise Invalid("hear: 'original', 'translated' or 'both'") from None
        return call.set_hearing(listener, hearing)

    def set_spoken_language(self, agent: Agent, link_id: str, language: object, speaker: object = "customer") -> Link:
        """Mid-call, the agent corrects the customer's language, or changes their own."""
        if not is_language_code(language) or language == "detect":
            raise Invalid("language must be a language code such as 'en' or 'pt'")
        if speaker not in ("customer", "agent"):
            raise Invalid("speaker: 'customer' or 'agent'")
        call = self.live_call(agent, link_id)
        try:
            call.set_language(language, speaker)
        except UnsupportedLanguage as e:
            raise Invalid(f"cannot switch to {language!r}: {e}") from None
        self.store.audit.add(
            agent.name, "call.language", call.id, language if speaker == "customer" else f"agent: {language}"
        )
        return call.link

    async def agent_end(self, agent: Agent, link_id: str) -> Link:
        link = self.link_for_agent(agent, link_id)
        call = self.live.get(link.id)
        if call is None:
            raise Conflict(f"the call is not live (state: {link.state})")
        await call.end(f"ended by {agent.name}")
        await call.ended
        return self.store.links.get(link.id)

    async def _media_ended(self, call_id: str, reason: str) -> None:
        """The end is recorded and shown at once; the call's transcription finishes in the background."""
        call = self.live.get(call_id)
        if call is not None:
            await call.closed(reason, self._call_closed)
            self._background(self._wind_down(call))

    async def _wind_down(self, call: Call) -> None:
        self.winding[call.id] = call
        try:
            await call.wind_down()
        except Exception:
            log.exception("call %s: closing its parts failed", call.id)
        finally:
            self.winding.pop(call.id, None)

    async def _call_closed(self, call: Call, reason: str) -> None:
        self.live.pop(call.id, None)
        if (slot := self._slots.pop(call.id, None)) is not None:
            slot.release()
        state = "revoked" if reason == "revoked" else "ended"
        self.store.links.finish(call.id, state, reason)
        self.store.audit.add("server", "call.end", call.id, reason)
        self._publish(self.store.links.get(call.id))
        if self.cluster is not None:
            try:
                await self.cluster.release(call.id)
            except Exception as e:  # ended here all the same; its owner record goes when this node does
                log.warning("call %s: the cluster did not hear that it ended: %s", call.id, e)

    async def close(self, reason: str = "server shutting down") -> None:
        """End every call, then let their transcripts finish; then leave the cluster."""
        for call in list(self.live.values()):
            await call.end(reason)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cluster is not None:
            await self.cluster.close()

    # -- ID&V: the customer's steps on their page, and the agent's ---------------------------------------------

    def customer_idv(self, token: str, key: str) -> LiveIdv:
        idv = self.customer_call(token, key).idv
        if idv is None:
            raise Conflict("this call has no identity check")
        return idv

    def agent_idv(self, agent: Agent, link_id: str) -> LiveIdv:
        call = self.live.get(self.link_for_agent(agent, link_id).id)
        idv = call.idv if call is not None else None
        if idv is None:
            raise Conflict("this call has no live identity check")
        return idv

    def idv_record(self, agent: Agent, link_id: str) -> dict | None:
        return self.store.idv.get(self.link_for_agent(agent, link_id).id)

    async def transcript(self, agent: Agent, link_id: str) -> tuple[dict, float]:
        """The saved transcript and the wall time it starts from (for subtitle timestamps). A call that has just
        ended may still be transcribing its last words: its download waits for them (a little while)."""
        link = self.link_for_agent(agent, link_id)
        if (finishing := self.winding.get(link.id)) is not None:
            await asyncio.wait([finishing.finished], timeout=30.0)
        data = load_transcript(self.services.vault, self.store.transcripts, link.id)
        if data is None:
            raise NotFound("this call has no transcript")
        self.store.audit.add(agent.name, "transcript.download", link.id)
        return data, link.connected or link.created

    # -- snapshots ---------------------------------------------------------------------------------------------

    async def take_snapshot(self, agent: Agent, link_id: str) -> Snapshot:
        link = self.link_for_agent(agent, link_id)
        if link.audio_only:  # the customer agreed to share their microphone, not their camera
            raise Conflict("a voice call: the customer shares no camera")
        call = self.live.get(link.id)
        frame = call.media.latest_frame if call is not None else None
        if frame is None:
            raise Conflict("no live video to take a still from")
        jpeg = await asyncio.to_thread(_jpeg, frame)  # tens of ms of CPU at 720p: not on the event loop
        snap_id = new_snapshot_id()
        sealed = self.services.vault.seal(jpeg, f"snapshot:{snap_id}")
        snap = self.store.links.add_snapshot(call.id, agent.id, frame.width, frame.height, len(jpeg), sealed, snap_id)
        self.store.audit.add(agent.name, "snapshot.take", call.id, snap.id)
        self.hub.publish(agent.id, {"type": "snapshot", "link_id": call.id, "snapshot": snapshot_view(snap, agent)})
        return snap

    def snapshots(self, agent: Agent, link_id: str) -> list[Snapshot]:
        return self.store.links.snapshots(self.link_for_agent(agent, link_id).id)

    def snapshot_jpeg(self, agent: Agent, snap_id: str) -> bytes:
        snap = self.store.links.snapshot(snap_id)
        if snap is None or snap.agent_id != agent.id:
            raise NotFound("no such snapshot")
        sealed = self.store.links.snapshot_image(snap.id)
        if sealed is None:  # taken by an earlier VoxGate, which kept stills in files
            sealed = (self.settings.data_dir / "snapshots" / f"{snap.id}.jpg.sealed").read_bytes()
        self.store.audit.add(agent.name, "snapshot.view", snap.link_id, snap.id)
        return self.services.vault.open(sealed, f"snapshot:{snap.id}")

    # -- context: why the customer is calling, and what they did before ----------------------------------------

    def context_view(self, link: Link) -> dict:
        """The console's ``context`` message for a call (for a call a menu opened, with that menu)."""
        origin = (link.detail or {}).get("from") if link.is_call else None
        return {"type": "context", "link_id": link.id, **self.context_of(link.customer_ref, link.phone, origin)}

    def context_of(self, customer: str | None, phone: str | None, menu_link: str | None) -> dict:
        """The likely reason and recent events; with ``menu_link`` (the menu that led here), its steps and ID&V."""
        return {
            **self.context.of(customer, phone).to_dict(),
            "steps": [s.__dict__ for s in self.store.steps.of(menu_link)] if menu_link else [],
            "idv": self.store.idv.get(menu_link) if menu_link else None,
        }

    def route(self, customer: str | None, phone: str | None, queue: str | None = None) -> tuple[Agent | None, str]:
        """Who takes a customer's work now, and from which queue: the one asked for (a menu option's), else the
        queue of their likely reason, else the default. None: nobody in it is free."""
        if queue is None:
            reason = self.context.of(customer, phone).reason
            queue = reason.queue if reason else self.settings.routing.default_queue
        if queue not in self.settings.routing.queues:
            raise Invalid(f"no queue {queue!r}")
        return self.queues.first_available(queue), queue

    def greet(self, link: Link) -> None:
        """The console of the agent a call reached hears, with the call, why the customer is likely calling."""
        self.hub.publish(link.agent_id, self.context_view(link))

    def record_event(self, agent: Agent, body: dict) -> dict:
        """An event from another system (``POST /api/events``), for accounts allowed to send them."""
        self.access.require(agent, Permission.EVENTS_WRITE)
        customer, phone = body.get("customer_id"), body.get("phone")
        if customer is not None:
            customer = customer_id(customer)
        if phone is not None and (not isinstance(phone, str) or len(phone) > 32):
            raise Invalid("phone: a number of at most 32 characters")
        event = self.context.record(customer, phone, body.get("type"), body.get("detail"), f"api:{agent.name}")
        self.store.audit.add(agent.name, "event.add", event.subject, event.type)
        return {k: v for k, v in event.to_dict().items() if k != "id"}

    # -- events ------------------------------------------------------------------------------------------------

    def subscribe_customer(self, token: str, key: str) -> tuple[tuple, asyncio.Queue, list[dict]]:
        """Subscribe a customer page to its call's events; with it, what the page should show now."""
        call = self.customer_call(token, key)
        topic = customer_topic(call.id)
        return topic, self.hub.subscribe(topic), call.customer_view()

    def _publish(self, link: Link | None) -> None:
        if link is not None:
            self.hub.publish(link.agent_id, {"type": "link", "link": link.to_dict()})

    async def sweep_expired(self, interval: float = 5.0) -> None:
        """Tell consoles when links expire unused (the store expires them lazily on every read)."""
        since = self.store.clock()
        while True:
            await asyncio.sleep(interval)
            now = self.store.clock()
            for link in self.store.links.expired_since(since):  # every node sees it: each tells its own consoles
                self.hub.deliver(link.agent_id, {"type": "link", "link": link.to_dict()})
            since = now

    def _background(self, work: Awaitable[None]) -> None:
        """Run ``work`` without waiting for it, holding the task until it is done (the loop keeps only a weak
        reference: an unheld task can be collected mid-flight)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ice(self) -> list[RTCIceServer]:
        return [RTCIceServer(**s) for s in self.settings.ice_servers()]


def _language_code(tag: str | None) -> str | None:
    """``es-ES`` or ``es_419`` to ``es``; None for nothing usable."""
    if not tag or not isinstance(tag, str):
        return None
    code = language_of(tag)
    return code if is_language_code(code) else None


def snapshot_view(s: Snapshot, agent: Agent) -> dict:
    return {
        "id": s.id,
        "link_id": s.link_id,
        "taken": s.taken,
        "width": s.width,
        "height": s.height,
        "bytes": s.bytes,
        "agent": agent.name,
        "url": f"/api/snapshots/{s.id}",
    }


def _qr_svg(url: str) -> str:
    buf = io.BytesIO()
    segno.make(url, error="m").save(buf, kind="svg", scale=4, border=2)
    return buf.getvalue().decode()


def _jpeg(frame) -> bytes:
    buf = io.BytesIO()
    frame.to_image().save(buf, format="JPEG", quality=92)
    return buf.getvalue()
