"""The escalation flow as plain logic: links, their sessions, snapshots, ID&V, and the events people see.

Handlers in ``signaling.app`` translate HTTP to these calls and ``CallError`` back to HTTP. Events go out
through one ``Hub``: to an agent's consoles (keyed by agent id) and to a customer's page (keyed by
``customer_topic(link_id)``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import segno
from aiortc import RTCIceServer, RTCSessionDescription

from media.pipeline import Engines
from media.segmenter import SegmenterConfig
from models.errors import UnsupportedLanguage
from signaling.directory import RestDirectory, StoreDirectory
from signaling.hub import Hub
from signaling.idv import IdvContext, IdvError, IdvFlow, IdvSettings
from signaling.rooms import Room
from signaling.security import Vault, new_token, security_phrase, token_hash
from signaling.store import Agent, Link, Store
from signaling.subtitles import Conversation, load_transcript
from signaling.voiceid import EnrolmentUpdate, LiveVoice, VoiceEvent, VoiceId, VoiceVerdict, WatchlistAlert

log = logging.getLogger(__name__)


def customer_topic(link_id: str) -> tuple[str, str]:
    """The Hub topic of one call's customer page (agents' topics are their ids)."""
    return ("customer", link_id)


class CallError(Exception):
    """A refusal with an HTTP status and a message for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Settings:
    data_dir: Path
    public_url: str = "http://localhost:8080"
    company: str = "VoxGate"
    link_ttl: float = 600.0
    max_link_ttl: float = 24 * 3600.0
    max_sessions_per_agent: int = 4
    max_sessions: int = 20
    partials: bool = True  # live partial subtitles (off: each utterance transcribed once, at its end)
    endpoint_ms: int = 300  # the pause that ends a subtitle line: latency is the product
    media_timeout: float = 8.0
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)  # e.g. turn:turn.example.com:3478?transport=udp
    turn_user: str | None = None
    turn_password: str | None = None  # static credentials, or:
    turn_secret: str | None = None  # coturn's use-auth-secret: short-lived credentials derived per call
    idv: IdvSettings = field(default_factory=IdvSettings)
    clock: Callable[[], float] = time.time

    def ice_servers(self, ttl: float = 3600.0) -> list[dict]:
        """ICE servers for browsers and aiortc alike. None at all works on one machine or a LAN."""
        servers: list[dict] = [{"urls": self.stun_urls}] if self.stun_urls else []
        if self.turn_urls:
            if self.turn_secret:
                username = f"{int(self.clock() + ttl)}:{self.turn_user or 'voxgate'}"
                digest = hmac.new(self.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
                servers.append(
                    {"urls": self.turn_urls, "username": username, "credential": base64.b64encode(digest).decode()}
                )
            else:
                servers.append({"urls": self.turn_urls, "username": self.turn_user, "credential": self.turn_password})
        return servers


class GuessLimiter:
    """Failed token lookups per client address in a sliding window; past the limit, answer 429."""

    def __init__(self, limit: int = 20, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, who: str) -> bool:
        q = self._fails[who]
        while q and q[0] < self.clock() - self.window:
            q.popleft()
        return len(q) >= self.limit

    def fail(self, who: str) -> None:
        self._fails[who].append(self.clock())


class Calls:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        vault: Vault,
        engines: Engines | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.settings, self.store, self.vault = settings, store, vault
        self.engines, self.executor = engines, executor  # no engines: video only, no subtitles
        self.voice_id: VoiceId | None = None  # set by the app when speaker encoders are loaded
        self.voice_executor: Executor | None = None  # live voice decisions, apart from transcription
        self.hub = Hub()
        self.guesses = GuessLimiter()
        self.rooms: dict[str, Room] = {}
        self.conversations: dict[str, Conversation] = {}
        self.voices: dict[str, LiveVoice] = {}
        self.flows: dict[str, IdvFlow] = {}
        self._customer_keys: dict[str, str] = {}
        self.http: aiohttp.ClientSession | None = None  # to the operator's directory and code sender
        self.idv: IdvContext | None = None
        for sub in ("snapshots", "transcripts"):
            (settings.data_dir / sub).mkdir(parents=True, exist_ok=True)

    async def start(self) -> None:
        """What needs the running event loop: the HTTP client, and the directory that may use it."""
        self.http = aiohttp.ClientSession()
        s = self.settings.idv
        if s.directory_url:
            directory = RestDirectory(s.directory_url, self.http, s.directory_token)
        else:
            directory = StoreDirectory(self.store)
        self.idv = IdvContext(s, directory, self.store, self.voice_id, self.http, self.settings.company)

    def idv_active(self) -> bool:
        """ID&V runs when there is a directory to identify callers in: the operator's, or customers loaded here."""
        s = self.settings.idv
        return self.idv is not None and s.enabled and (bool(s.directory_url) or self.store.customer_count() > 0)

    # -- links -------------------------------------------------------------------------------------------------

    def create_link(
        self,
        agent: Agent,
        *,
        customer_ref: str | None = None,
        phone: str | None = None,
        language: str | None = None,
        reason: str | None = None,
        ttl: float | None = None,
    ) -> dict:
        ttl = self.settings.link_ttl if ttl is None else float(ttl)
        if not 30 <= ttl <= self.settings.max_link_ttl:
            raise CallError(400, f"expiry must be between 30 and {int(self.settings.max_link_ttl)} seconds")
        for name, value, limit in (("customer_ref", customer_ref, 64), ("phone", phone, 32), ("reason", reason, 200)):
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise CallError(400, f"{name} must be text of at most {limit} characters")
        language = language or agent.language
        if not isinstance(language, str) or not 2 <= len(language) <= 8:
            raise CallError(400, "language must be a language code such as 'en' or 'pt', or 'detect'")
        self.check_languages(language, agent.language)
        token = new_token()
        link = self.store.add_link(
            token_hash(token),
            agent.id,
            customer_ref=customer_ref,
            phone=phone,
            language=language,
            reason=reason or "so they can help you faster",
            phrase=security_phrase(),
            ttl=ttl,
        )
        self.store.audit(agent.name, "link.create", link.id, f"ttl={int(ttl)}s")
        url = f"{self.settings.public_url.rstrip('/')}/j/{token}"
        self._publish(link)
        qr = segno.make(url, error="m")
        buf = io.BytesIO()
        qr.save(buf, kind="svg", scale=4, border=2)
        return {"link": link.to_dict(), "url": url, "qr_svg": buf.getvalue().decode()}

    def check_languages(self, customer: str, agent: str) -> None:
        """Refuse, up front, a call whose subtitles could not be translated one way or the other."""
        if self.engines is None or customer == "detect":
            return
        if customer not in self.engines.asr.languages():
            raise CallError(400, f"speech recognition does not know the language {customer!r}")
        router = self.engines.router
        try:
            if router is not None:
                router.route(customer, agent)
                router.route(agent, customer)
        except UnsupportedLanguage as e:
            raise CallError(400, f"no subtitles for this call: {e}") from None

    def link_for_agent(self, agent: Agent, link_id: str) -> Link:
        link = self.store.link(link_id)
        if link is None or link.agent_id != agent.id:
            raise CallError(404, "no such link")
        return link

    def customer_link(self, token: str, who: str) -> Link:
        """The link behind a customer's token, or the refusal they should see (404 unknown, 410 used/expired)."""
        if self.guesses.blocked(who):
            raise CallError(429, "too many unknown links from this address; try again in a minute")
        link = self.store.link_by_token(token_hash(token)) if 20 <= len(token) <= 64 else None
        if link is None:
            self.guesses.fail(who)
            raise CallError(404, "this link does not exist; check it, or ask the agent for a new one")
        if link.state == "expired":
            raise CallError(410, "this link has expired; ask the agent for a new one")
        if link.state == "revoked":
            raise CallError(410, "this link has been cancelled by the agent")
        if link.state not in ("created", "opened"):
            raise CallError(410, "this link has been used; each link works once, on one device")
        return link

    def join_info(self, token: str, who: str) -> dict:
        link = self.customer_link(token, who)
        if self.store.mark_opened(link.id):
            link = self.store.link(link.id)
            self.store.audit("customer", "link.open", link.id)
            self._publish(link)
        return {
            "company": self.settings.company,
            "agent": self.store.agent_name(link.agent_id),
            "reason": link.reason,
            "phrase": link.phrase,
            "language": link.language,
            "expires_in": max(0, int(link.expires - self.store.clock())),
            "ice_servers": self.settings.ice_servers(),
        }

    def revoke(self, agent: Agent, link_id: str) -> Link:
        link = self.link_for_agent(agent, link_id)
        if link.state in ("ended", "expired", "revoked"):
            raise CallError(409, f"the link is {link.state} already")
        self.store.finish(link.id, "revoked", f"revoked by {agent.name}")
        self.store.audit(agent.name, "link.revoke", link.id)
        room = self.rooms.get(link.id)
        if room is not None:
            asyncio.get_running_loop().create_task(room.end("revoked"))
        link = self.store.link(link.id)
        self._publish(link)
        return link

    # -- sessions ----------------------------------------------------------------------------------------------

    async def customer_offer(self, token: str, offer: RTCSessionDescription, who: str) -> dict:
        link = self.customer_link(token, who)
        if self.store.count_live() >= self.settings.max_sessions:
            raise CallError(503, "the server is at its limit of live sessions; please try again shortly")
        if self.store.count_live(link.agent_id) >= self.settings.max_sessions_per_agent:
            raise CallError(503, "your agent has too many live sessions; please try again shortly")
        room = Room(link.id, link.agent_id, self._ice(), self._room_ended, self.settings.media_timeout)
        try:
            await room.receive_customer_offer(offer)  # a malformed offer must not use the link up
        except Exception:
            await room.discard()
            raise
        if not self.store.consume(link.id):  # a second device lost the race
            await room.discard()
            raise CallError(410, "this link has been used; each link works once, on one device")
        self.rooms[link.id] = room
        if self.engines is not None:
            self._start_conversation(link, room)
        voice = self._start_voice(link, room) if self.voice_id is not None and self.engines is not None else None
        flow = self._start_idv(link, voice) if self.idv_active() else None
        try:
            desc = await room.answer_customer()
        except Exception:
            await room.end("could not answer the customer")
            raise
        key = new_token(16)
        self._customer_keys[link.id] = token_hash(key)
        self.store.audit("customer", "session.connect", link.id)
        self._publish(self.store.link(link.id))
        if flow is not None:
            flow.begin()
        return {"sdp": desc.sdp, "type": desc.type, "session_key": key}

    async def agent_offer(self, agent: Agent, link_id: str, offer: RTCSessionDescription) -> dict:
        link = self.link_for_agent(agent, link_id)
        room = self.rooms.get(link.id)
        if room is None or room.ended:
            raise CallError(409, f"the session is not live (state: {link.state})")
        desc = await room.accept_agent(offer)
        self.store.audit(agent.name, "session.agent_join", link.id)
        return {"sdp": desc.sdp, "type": desc.type}

    def _customer_session(self, token: str, key: str) -> Link:
        """The live session of the customer holding this link token and the key its offer returned."""
        link = self.store.link_by_token(token_hash(token))
        if link is None or self._customer_keys.get(link.id) != token_hash(key or ""):
            raise CallError(403, "not this session's customer")
        return link

    async def customer_hangup(self, token: str, key: str, who: str) -> None:
        await self._end_room(self._customer_session(token, key).id, "customer hung up")

    async def agent_end(self, agent: Agent, link_id: str) -> Link:
        link = self.link_for_agent(agent, link_id)
        if link.id not in self.rooms:
            raise CallError(409, f"the session is not live (state: {link.state})")
        await self._end_room(link.id, f"ended by {agent.name}")
        return self.store.link(link.id)

    async def _end_room(self, link_id: str, reason: str) -> None:
        room = self.rooms.get(link_id)
        if room is not None:
            await room.end(reason)

    def _start_conversation(self, link: Link, room: Room) -> None:
        agent_id = link.agent_id
        conversation = Conversation(
            link.id,
            self.engines,
            customer_language=None if link.language == "detect" else link.language,
            agent_language=self.store.agent_language(agent_id),
            send_agent=lambda m: self.hub.publish(agent_id, m),
            send_customer=lambda m: self.hub.publish(customer_topic(link.id), m),
            vault=self.vault,
            path=self.transcript_path(link.id),
            executor=self.executor,
            partials=self.settings.partials,
            segmenter=SegmenterConfig(hangover_ms=self.settings.endpoint_ms),
        )
        room.customer_taps.append(conversation.pipelines["customer"].feed)
        room.agent_taps.append(conversation.pipelines["agent"].feed)
        self.conversations[link.id] = conversation

    def _start_voice(self, link: Link, room: Room) -> LiveVoice:
        voice = LiveVoice(
            self.voice_id, link.id, self.engines.vad(), lambda e: self._voice_event(link, e), self.voice_executor
        )
        room.customer_taps.append(voice.feed)
        self.voices[link.id] = voice
        return voice

    def _voice_event(self, link: Link, event: VoiceEvent) -> None:
        self.hub.publish(link.agent_id, event.to_message())
        flow = self.flows.get(link.id)
        if flow is None:
            return
        if isinstance(event, VoiceVerdict):
            flow.on_verdict(event.claimed, event.verdict, event.early)
        elif isinstance(event, WatchlistAlert):
            flow.on_alert(event.hits)
        elif isinstance(event, EnrolmentUpdate) and (event.progress.enrolled or event.progress.refused):
            flow.enrolment_finished(event.progress)

    def _start_idv(self, link: Link, voice: LiveVoice | None) -> IdvFlow:
        flow = IdvFlow(
            self.idv,
            link.id,
            link.phone,
            voice,
            to_agent=lambda m: self.hub.publish(link.agent_id, m),
            to_customer=lambda m: self.hub.publish(customer_topic(link.id), m),
        )
        self.flows[link.id] = flow
        return flow

    # -- ID&V: the customer's steps on their page, and the agent's ---------------------------------------------

    def customer_events(self, token: str, key: str) -> tuple[tuple, asyncio.Queue, list[dict]]:
        """Subscribe a customer page to its call's events; with it, what the page should show now."""
        link = self._customer_session(token, key)
        topic = customer_topic(link.id)
        now = []
        if flow := self.flows.get(link.id):
            now.append(flow.customer_view())
            if flow.consent_asked:
                now.append(flow.consent_prompt())
        return topic, self.hub.subscribe(topic), now

    def customer_flow(self, token: str, key: str) -> IdvFlow:
        flow = self.flows.get(self._customer_session(token, key).id)
        if flow is None:
            raise IdvError(409, "this call has no identity check")
        return flow

    def agent_flow(self, agent: Agent, link_id: str) -> IdvFlow:
        link = self.link_for_agent(agent, link_id)
        flow = self.flows.get(link.id)
        if flow is None:
            raise CallError(409, "this session has no live identity check")
        return flow

    def idv_record(self, agent: Agent, link_id: str) -> dict | None:
        return self.store.idv(self.link_for_agent(agent, link_id).id)

    def transcript_path(self, link_id: str) -> Path:
        return self.settings.data_dir / "transcripts" / f"{link_id}.json.sealed"

    def transcript(self, agent: Agent, link_id: str) -> tuple[dict, float]:
        """The saved conversation and the wall time it starts from (for subtitle timestamps)."""
        link = self.link_for_agent(agent, link_id)
        path = self.transcript_path(link.id)
        if not path.exists():
            raise CallError(404, "this session has no transcript")
        self.store.audit(agent.name, "transcript.download", link.id)
        return load_transcript(self.vault, path, link.id), link.connected or link.created

    async def _room_ended(self, room: Room, reason: str) -> None:
        conversation = self.conversations.pop(room.link_id, None)
        if conversation is not None:
            await conversation.close()  # the last words said still reach the transcript
        voice = self.voices.pop(room.link_id, None)
        if voice is not None:
            await voice.close()  # an unfinished enrolment keeps what this call collected
        flow = self.flows.pop(room.link_id, None)
        if flow is not None:
            await flow.close()
        self.hub.publish(customer_topic(room.link_id), None)
        self.rooms.pop(room.link_id, None)
        self._customer_keys.pop(room.link_id, None)
        state = "revoked" if reason == "revoked" else "ended"
        self.store.finish(room.link_id, state, reason)
        self.store.audit("server", "session.end", room.link_id, reason)
        self._publish(self.store.link(room.link_id))

    async def close_rooms(self, reason: str) -> None:
        for room in list(self.rooms.values()):
            await room.end(reason)

    async def close(self) -> None:
        await self.close_rooms("server shutting down")
        if self.http is not None:
            await self.http.close()

    # -- snapshots ---------------------------------------------------------------------------------------------

    async def take_snapshot(self, agent: Agent, link_id: str) -> dict:
        link = self.link_for_agent(agent, link_id)
        room = self.rooms.get(link.id)
        if room is None or room.latest_frame is None:
            raise CallError(409, "no live video to take a still from")
        frame = room.latest_frame
        jpeg = await asyncio.to_thread(_jpeg, frame)  # tens of ms of CPU at 720p: not on the event loop
        snap = self.store.add_snapshot(link.id, agent.id, frame.width, frame.height, len(jpeg))
        self._snapshot_path(snap.id).write_bytes(self.vault.seal(jpeg, f"snapshot:{snap.id}"))
        self.store.audit(agent.name, "snapshot.take", link.id, snap.id)
        event = {"type": "snapshot", "link_id": link.id, "snapshot": self._snap_dict(snap, agent.name)}
        self.hub.publish(agent.id, event)
        return event["snapshot"]

    def snapshots(self, agent: Agent, link_id: str) -> list[dict]:
        link = self.link_for_agent(agent, link_id)
        return [self._snap_dict(s, agent.name) for s in self.store.snapshots(link.id)]

    def snapshot_jpeg(self, agent: Agent, snap_id: str) -> bytes:
        snap = self.store.snapshot(snap_id)
        if snap is None or snap.agent_id != agent.id:
            raise CallError(404, "no such snapshot")
        self.store.audit(agent.name, "snapshot.view", snap.link_id, snap.id)
        return self.vault.open(self._snapshot_path(snap.id).read_bytes(), f"snapshot:{snap.id}")

    def _snapshot_path(self, snap_id: str) -> Path:
        return self.settings.data_dir / "snapshots" / f"{snap_id}.jpg.sealed"

    @staticmethod
    def _snap_dict(s, agent_name: str) -> dict:
        return {
            "id": s.id,
            "link_id": s.link_id,
            "taken": s.taken,
            "width": s.width,
            "height": s.height,
            "bytes": s.bytes,
            "agent": agent_name,
            "url": f"/api/snapshots/{s.id}",
        }

    # -- events ------------------------------------------------------------------------------------------------

    def _publish(self, link: Link | None) -> None:
        if link is not None:
            self.hub.publish(link.agent_id, {"type": "link", "link": link.to_dict()})

    async def sweep_expired(self, interval: float = 5.0) -> None:
        """Tell consoles when links expire unused (the store expires them lazily on every read)."""
        since = self.store.clock()
        while True:
            await asyncio.sleep(interval)
            now = self.store.clock()
            for link in self.store.expired_since(since):
                self._publish(link)
            since = now

    def _ice(self) -> list[RTCIceServer]:
        return [RTCIceServer(**s) for s in self.settings.ice_servers()]


def _jpeg(frame) -> bytes:
    buf = io.BytesIO()
    frame.to_image().save(buf, format="JPEG", quality=92)
    return buf.getvalue()
