"""Genesys Cloud AudioHook (protocol version 2), the server side of one session, whatever web server carries it.

The platform (the client) opens a WebSocket and runs transactions in JSON text
messages: ``open`` -> ``opened`` (the media we take), then binary audio frames
(μ-law at 8 kHz, channels interleaved: ``external`` is the customer, ``internal``
the agent), ``ping`` -> ``pong``, ``paused`` / ``resumed``, ``discarded``,
``update`` -> ``updated``, ``error``, and ``close`` -> ``closed``. We may send
``event`` messages (our transcripts), ``pause`` / ``resume``, and ``disconnect``
(the call ended here, or the client broke the protocol; the client then closes).

Every message carries ``seq`` (each side counts its own from 1); the client's
also carry ``serverseq`` (the last of ours it saw) and ``position``, where it is
in the audio stream. Stream time counts audio the client discarded or held back
in a pause: ``discarded`` and ``resumed`` say how much, and we feed that gap to
the call as silence (a bounded stretch: enough to end an utterance; the rest of
a long gap is skipped on the timeline), so a transcript's ``offset`` is where its
words sit in the stream.

``AudioHookSession`` checks each message and returns a ``Step``: the replies to
send, and what the web edge must do (admit the call on ``open``, end it on
``close`` or a protocol error). It feeds each channel's audio to the call's
``PhoneMedia`` and turns the call's final transcripts into ``event`` messages.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import uuid
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from media.events import Event, FinalTranscript, Translation
from media.phone import RATE, PhoneCall, PhoneMedia, ulaw_decode
from models.base import language_of

log = logging.getLogger(__name__)

VERSION = "2"
MAX_TEXT = 65535  # the protocol's limit on a text message
MAX_AUDIO = 64 * 1024  # one binary frame: 2 s of stereo μ-law (the platform sends 100-200 ms)
MAX_FILL = 1.0  # seconds of silence fed for a gap in the stream; the rest of a longer gap is skipped
POSITION_SLACK = 0.02  # seconds a client's position may trail the audio it sent (rounding)
PROBE = "00000000-0000-0000-0000-000000000000"  # the conversation id of a connection probe
LEGS = {"external": "customer", "internal": "agent"}  # AudioHook's channel -> VoxGate's leg
PREFERRED = (("external", "internal"), ("internal", "external"), ("external",), ("internal",))
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION = re.compile(r"^PT(\d+(?:\.\d*)?|\.\d+)S$")


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``code`` is the protocol's (an HTTP-like status)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


def parse_duration(value: object, name: str = "duration") -> float:
    """An ISO 8601 duration in seconds, as AudioHook writes them (``PT3.42S``)."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise ProtocolError(f"{name} must be a duration such as 'PT1.5S', not {value!r}")
    return float(m.group(1))


def duration(seconds: float) -> str:
    """Seconds as an AudioHook duration, to the millisecond: ``PT3.42S``."""
    text = f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


# -- the open transaction --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    """One audio format: AudioHook offers several in ``open`` and we pick one in ``opened``."""

    format: str
    rate: int
    channels: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"type": "audio", "format": self.format, "channels": list(self.channels), "rate": self.rate}


def choose_media(offers: list[Media]) -> Media | None:
    """PCMU at 8 kHz, both channels if offered (the customer and the agent), else the one there is."""
    usable = [m for m in offers if m.format == "PCMU" and m.rate == RATE]
    for channels in PREFERRED:
        for m in usable:
            if m.channels == channels:
                return m
    return None


@dataclass(frozen=True)
class Participant:
    """The caller: ``ani`` their number, ``dnis`` the number they called."""

    id: str = ""
    ani: str = ""
    ani_name: str = ""
    dnis: str = ""


@dataclass(frozen=True)
class Open:
    """What ``open`` says about the call; ``agent``, ``queue`` and ``language`` are what VoxGate needs of it."""

    organization_id: str
    conversation_id: str
    participant: Participant
    media: Media  # the one chosen
    language: str | None  # the conversation's, as the platform gives it (a locale such as pt-BR)
    custom_config: dict[str, Any] = field(default_factory=dict)
    input_variables: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None
    queue: str | None = None

    @property
    def probe(self) -> bool:
        """A connection probe (the nil conversation id): Genesys checks an integration can connect; no call."""
        return self.conversation_id == PROBE

    def phone_call(self) -> PhoneCall:
        return PhoneCall(
            channel="audiohook",
            external_id=self.conversation_id,
            caller=_number(self.participant.ani),
            agent=self.agent,
            queue=self.queue,
            language=self.language,
        )


def _number(ani: str) -> str | None:
    """A calling number as the platform writes it (``tel:+351...``, ``sip:+351...@host``) as a plain number."""
    number = re.sub(r"^(tel|sips?):", "", ani.strip(), flags=re.IGNORECASE).split(";")[0].split("@")[0]
    return number or None


# -- the session -------------------------------------------------------------------------------------------------


class State(enum.Enum):
    PREPARING = "preparing"  # connected, no open yet
    OPENING = "opening"  # open received: the call is being admitted
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSING = "closing"  # the client closes: the call ends, then closed
    CLOSED = "closed"
    ENDING = "ending"  # we hung up (disconnect, completed): the last transcripts, then the client's close
    DISCONNECTING = "disconnecting"  # we refused the call or the client broke the protocol: waiting for its close


ENDED = (State.ENDING, State.DISCONNECTING, State.CLOSING, State.CLOSED)  # no audio and no new transactions


@dataclass(frozen=True)
class Step:
    """What one client message means for the web edge.

    ``send``: the replies, in order. ``open``: admit the call, then ``accept`` or ``refuse``. ``close``: the
    client closes (its reason): end the call and wait for it, then send ``closed()``. ``end``: the call must end
    now (a protocol error: the disconnect is in ``send``).
    """

    send: tuple[dict, ...] = ()
    open: Open | None = None
    close: str | None = None
    end: str | None = None


class _Timeline:
    """Where audio fed to the call sits in the stream: audio time plus the gaps skipped before it."""

    def __init__(self) -> None:
        self.fed = 0  # samples per channel given to the call (audio and silence)
        self._at: list[float] = [0.0]  # audio times of skips, and the total skipped by then
        self._skipped: list[float] = [0.0]

    @property
    def position(self) -> float:
        return self.fed / RATE + self._skipped[-1]

    def skip(self, seconds: float) -> None:
        self._at.append(self.fed / RATE)
        self._skipped.append(self._skipped[-1] + seconds)

    def stream_time(self, audio_time: float) -> float:
        return audio_time + self._skipped[bisect_right(self._at, audio_time) - 1]


class AudioHookSession:
    """One AudioHook session: checks the client's messages, keeps both sides' sequence numbers, feeds the audio.

    ``session_id`` and ``organization_id`` come from the request headers; every message must carry that id, and
    ``open`` that organisation. ``max_fill``: seconds of silence fed for a gap (see the module's notes).
    """

    def __init__(self, session_id: str, organization_id: str, *, max_fill: float = MAX_FILL) -> None:
        if not _UUID.match(session_id) or not _UUID.match(organization_id):
            raise ProtocolError("audiohook-session-id and audiohook-organization-id must be UUIDs")
        self.id, self.organization_id = session_id.lower(), organization_id.lower()
        self.max_fill = max_fill
        self.state = State.PREPARING
        self.seq = 0  # the last seq we sent
        self.clientseq = 0  # the last seq the client sent
        self.media: Media | None = None
        self.language: str | None = None
        self.client_error: str | None = None  # the last error the client reported
        self._sink: PhoneMedia | None = None
        self._received = 0  # samples per channel that arrived as audio
        self._timeline = _Timeline()

    @property
    def position(self) -> float:
        """Stream time so far, in seconds: the audio received and the gaps the client reported."""
        return self._timeline.position

    # -- from the client ---------------------------------------------------------------------------------------

    def receive_text(self, text: str) -> Step:
        if self.state in (State.CLOSING, State.CLOSED):
            return Step()  # stragglers after close
        try:
            if len(text) > MAX_TEXT:
                raise ProtocolError(f"text message longer than {MAX_TEXT} characters", 413)
            try:
                message = json.loads(text)
            except ValueError:
                raise ProtocolError("text message is not JSON") from None
            if not isinstance(message, dict):
                raise ProtocolError("message is not a JSON object")
            if self.state in (State.ENDING, State.DISCONNECTING):
                return self._after_disconnect(message)
            return self._dispatch(message)
        except ProtocolError as e:
            return self._fail(str(e), e.code)

    def receive_audio(self, data: bytes) -> Step:
        """One binary frame: each channel's samples to its leg."""
        if self.state in ENDED:
            return Step()  # audio in flight as the session ended
        if self.state not in (State.ACTIVE, State.PAUSED) or self.media is None or self._sink is None:
            return self._fail("audio before the session was opened", 409)
        channels = len(self.media.channels)
        if len(data) > MAX_AUDIO or len(data) % channels:
            return self._fail(f"an audio frame must be whole {channels}-channel μ-law samples, at most {MAX_AUDIO} B")
        pcm = ulaw_decode(data).reshape(-1, channels)
        self._received += len(pcm)
        self._timeline.fed += len(pcm)
        for i, channel in enumerate(self.media.channels):
            self._sink.hear(LEGS[channel], pcm[:, i])
        return Step()

    # -- our side ----------------------------------------------------------------------------------------------

    def accept(self, sink: PhoneMedia) -> dict:
        """The call is admitted: ``opened`` with the chosen media; audio now goes to ``sink``."""
        assert self.state is State.OPENING and self.media is not None
        self._sink, self.state = sink, State.ACTIVE
        return self._message("opened", {"media": [self.media.to_dict()]})

    def refuse(self, info: str) -> dict:
        """The call is refused (no such agent, at capacity): the client is told why, and closes."""
        self.state = State.DISCONNECTING
        return self._message("disconnect", {"reason": "error", "info": info})

    def hang_up(self, info: str) -> dict | None:
        """We end the call (the agent, the watchdog): ``disconnect``, or None if the session is ending anyway."""
        if self.state in ENDED:
            return None
        self.state = State.ENDING
        return self._message("disconnect", {"reason": "completed", "info": info})

    def closed(self) -> dict:
        """The answer to the client's ``close``, once the call has ended (after its last transcripts)."""
        self.state = State.CLOSED
        return self._message("closed", {})

    def pause(self) -> dict | None:
        """Ask the client to stop sending audio (it answers ``paused``)."""
        return self._message("pause", {}) if self.state in (State.ACTIVE, State.PAUSED) else None

    def resume(self) -> dict | None:
        """Ask the client to send audio again (it answers ``resumed``)."""
        return self._message("resume", {}) if self.state in (State.ACTIVE, State.PAUSED) else None

    def transcript(self, leg: str, event: Event) -> dict | None:
        """A call's final transcript, or its translation, as an ``event`` message with one ``transcript`` entity.

        One entity per utterance and language: the final goes out as soon as it is known, in the language
        spoken; its translation follows as its own entity with the same channel, ``offset`` and ``duration`` and
        its own language. AudioHook's ``alternatives`` are the recogniser's competing readings of the same
        speech, best first, and a final is never revised, so a translation is not one of them: consumers that
        keep one language take the entities in it, and pair the others by ``offset``. The engines give no
        confidence for a whole utterance, so it is 1.0. Partials are not sent: the platform's transcript keeps
        finals.
        """
        if self.state not in (State.ACTIVE, State.PAUSED, State.ENDING, State.CLOSING) or self.media is None:
            return None
        if isinstance(event, FinalTranscript):
            text, language = event.text, event.language
        elif isinstance(event, Translation):
            text, language = event.text, event.target_language
        else:
            return None
        channel = next((c for c in self.media.channels if LEGS[c] == leg), None)
        if channel is None or not text.strip():
            return None
        data = {
            "id": str(uuid.uuid4()),
            "channelId": self.media.channels.index(channel),  # in the chosen media: 0 external, 1 internal
            "isFinal": True,
            "offset": duration(self._timeline.stream_time(event.audio_start)),
            "duration": duration(event.audio_end - event.audio_start),
            "alternatives": [
                {
                    "confidence": 1.0,
                    "languages": [self._locale(language)],
                    "interpretations": [{"type": "display", "transcript": text.strip()}],
                }
            ],
        }
        return self._message("event", {"entities": [{"type": "transcript", "data": data}]})

    # -- the messages ------------------------------------------------------------------------------------------

    def _message(self, type_: str, parameters: dict) -> dict:
        self.seq += 1
        return {
            "version": VERSION,
            "type": type_,
            "seq": self.seq,
            "clientseq": self.clientseq,
            "id": self.id,
            "parameters": parameters,
        }

    def _fail(self, info: str, code: int = 400) -> Step:
        """A protocol error: tell the client (it closes), and end the call."""
        if self.state in ENDED:
            return Step()
        log.warning("AudioHook session %s: %s (%d)", self.id, info, code)
        self.state = State.DISCONNECTING
        return Step(send=(self._message("disconnect", {"reason": "error", "info": info}),), end=f"AudioHook: {info}")

    def _after_disconnect(self, message: dict) -> Step:
        """After our disconnect only the client's ``close`` matters, whatever its numbering."""
        if message.get("type") != "close":
            return Step()
        if _is_seq(message.get("seq")):
            self.clientseq = message["seq"]
        self.state = State.CLOSING
        return Step(close=_close_reason(message.get("parameters")))

    def _dispatch(self, m: dict) -> Step:
        if m.get("version") != VERSION:
            raise ProtocolError(f"unsupported protocol version {m.get('version')!r} (VoxGate speaks '2')")
        if not isinstance(m.get("id"), str) or not _UUID.match(m["id"]):
            raise ProtocolError("message id must be a UUID")
        if m["id"].lower() != self.id:
            raise ProtocolError("message id is not this session's (audiohook-session-id)")
        if not isinstance(m.get("type"), str):
            raise ProtocolError("message has no type")
        if not _is_seq(m.get("seq")) or not _is_seq(m.get("serverseq")):
            raise ProtocolError("seq and serverseq must be non-negative integers")
        if m["seq"] != self.clientseq + 1:
            raise ProtocolError(f"seq {m['seq']} is out of order (expected {self.clientseq + 1})")
        self.clientseq = m["seq"]
        if m["serverseq"] > self.seq:
            raise ProtocolError(f"serverseq {m['serverseq']} is ahead of the last message sent ({self.seq})")
        position = parse_duration(m.get("position"), "position")
        if position < self._received / RATE - POSITION_SLACK:
            raise ProtocolError(f"position {m['position']} is behind the audio already sent")
        parameters = m.get("parameters")
        if not isinstance(parameters, dict):
            raise ProtocolError("parameters must be an object")
        if self._sink is not None:
            self._sink.alive()  # any message is a sign of life (a paused stream sends only pings)
        handler = getattr(self, f"_on_{m['type']}", None)
        if handler is None:
            raise ProtocolError(f"{m['type']!r} is not a client message", 405)
        return handler(parameters)

    def _opened_only(self, what: str) -> None:
        if self.state not in (State.ACTIVE, State.PAUSED):
            raise ProtocolError(f"'{what}' before the session was opened", 409)

    def _on_open(self, p: dict) -> Step:
        if self.state is not State.PREPARING:
            raise ProtocolError("'open' twice", 409)
        org = p.get("organizationId")
        if not isinstance(org, str) or org.lower() != self.organization_id:
            raise ProtocolError("organizationId is not the audiohook-organization-id of the request")
        conversation = p.get("conversationId")
        if not isinstance(conversation, str) or not _UUID.match(conversation):
            raise ProtocolError("conversationId must be a UUID")
        offers = p.get("media")
        if not isinstance(offers, list) or not offers:
            raise ProtocolError("media must list the formats offered")
        media = choose_media([_media(o) for o in offers])
        if media is None:
            raise ProtocolError("no usable media offered: VoxGate takes PCMU at 8000 Hz", 415)
        language = p.get("language")
        if language is not None and not isinstance(language, str):
            raise ProtocolError("language must be a language tag such as 'en-US'")
        custom, variables = _object(p, "customConfig"), _object(p, "inputVariables")
        opening = Open(
            organization_id=org,
            conversation_id=conversation,
            participant=_participant(p.get("participant")),
            media=media,
            language=_setting(variables, custom, "language") or language,
            custom_config=custom,
            input_variables=variables,
            agent=_setting(variables, custom, "agent"),
            queue=_setting(variables, custom, "queue"),
        )
        self.media, self.language, self.state = media, opening.language, State.OPENING
        return Step(open=opening)

    def _on_ping(self, p: dict) -> Step:
        if "rtt" in p:
            parse_duration(p["rtt"], "rtt")
        return Step(send=(self._message("pong", {}),))

    def _on_paused(self, p: dict) -> Step:
        self._opened_only("paused")
        self.state = State.PAUSED
        assert self._sink is not None
        self._sink.paused = True
        return Step()

    def _on_resumed(self, p: dict) -> Step:
        self._opened_only("resumed")
        self._gap(p)
        self.state = State.ACTIVE
        assert self._sink is not None
        self._sink.paused = False
        return Step()

    def _on_discarded(self, p: dict) -> Step:
        self._opened_only("discarded")
        self._gap(p)
        return Step()

    def _on_update(self, p: dict) -> Step:
        self._opened_only("update")
        if not isinstance(p.get("language"), str):
            raise ProtocolError("update needs a language")
        # The call's subtitles keep the language they began with; the platform learns we took note.
        self.language = p["language"]
        return Step(send=(self._message("updated", {}),))

    def _on_error(self, p: dict) -> Step:
        self.client_error = f"error {p.get('code')}: {str(p.get('message'))[:200]}"
        log.warning("AudioHook session %s: the client reports error %s", self.id, self.client_error)
        return Step()

    def _on_close(self, p: dict) -> Step:
        self.state = State.CLOSING
        reason = _close_reason(p)
        return Step(close=f"{reason}; it reported {self.client_error}" if self.client_error else reason)

    def _gap(self, p: dict) -> None:
        """Audio the client did not send (``start`` + ``discarded``): silence up to ``max_fill``, then a skip."""
        start, discarded = parse_duration(p.get("start"), "start"), parse_duration(p.get("discarded"), "discarded")
        gap = start + discarded - self._timeline.position
        if gap <= 0:
            return
        fill = int(min(gap, self.max_fill) * RATE)
        assert self._sink is not None and self.media is not None
        silence = np.zeros(fill, np.int16)
        for channel in self.media.channels:
            self._sink.hear(LEGS[channel], silence)
        self._timeline.fed += fill
        if gap * RATE > fill:
            self._timeline.skip(gap - fill / RATE)

    def _locale(self, language: str) -> str:
        """Our language code as the platform's locale when it is the conversation's (``pt`` -> ``pt-BR``)."""
        if self.language and language_of(self.language) == language:
            return self.language
        return language


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _close_reason(p: object) -> str:
    reason = p.get("reason") if isinstance(p, dict) else None
    return reason[:32] if isinstance(reason, str) else "end"


def _media(offer: object) -> Media:
    if not isinstance(offer, dict):
        raise ProtocolError("each media offer must be an object")
    channels = offer.get("channels")
    if (
        offer.get("type") != "audio"
        or not isinstance(offer.get("format"), str)
        or not _is_seq(offer.get("rate"))
        or not isinstance(channels, list)
        or not 1 <= len(channels) <= 2
        or len(set(channels)) != len(channels)
        or not set(channels) <= set(LEGS)
    ):
        raise ProtocolError(f"malformed media offer {json.dumps(offer)[:200]}")
    return Media(offer["format"], offer["rate"], tuple(channels))


def _participant(p: object) -> Participant:
    if p is None:
        return Participant()
    if not isinstance(p, dict) or not all(isinstance(p.get(k, ""), str) for k in ("id", "ani", "aniName", "dnis")):
        raise ProtocolError("participant must be an object of id, ani, aniName and dnis strings")
    return Participant(p.get("id", ""), p.get("ani", ""), p.get("aniName", ""), p.get("dnis", ""))


def _object(p: dict, name: str) -> dict[str, Any]:
    value = p.get(name, {})
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} must be an object")
    return value


def _setting(variables: dict, custom: dict, name: str) -> str | None:
    """A call setting from the flow's input variables, else the integration's custom configuration."""
    for source, where in ((variables, "inputVariables"), (custom, "customConfig")):
        value = source.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value) > 128:
            raise ProtocolError(f"{where}.{name} must be text of at most 128 characters")
        return value
    return None
