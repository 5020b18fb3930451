"""Twilio Media Streams, the server side of one stream, whatever web server carries its WebSocket.

Twilio opens a WebSocket to the URL of a ``<Start><Stream>`` (listen only) or a
``<Connect><Stream>`` (bidirectional) and sends JSON text messages: ``connected``,
``start`` (the call's SIDs, the tracks, the ``<Parameter>``s the operator set, the
media format), then ``media`` (20 ms of one track: base64 G.711 μ-law at 8 kHz),
``dtmf`` and ``mark`` as they happen, and ``stop``. ``TwilioStream`` checks each
message, returns the ones the web edge acts on (``Start`` opens the call, ``Stop``
ends it) and hands each track's audio to the call's ``PhoneMedia``: ``inbound`` is
the caller (the customer leg), ``outbound`` what the caller hears (the agent leg).

Twilio signs the WebSocket's opening request as it signs any webhook:
``X-Twilio-Signature`` is the base64 HMAC-SHA1, keyed by the account's auth token,
of the URL it requested (``wss://``, path and query; a GET has no form parameters).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field

import numpy as np

from media.phone import RATE, PhoneCall, PhoneMedia, ulaw_decode, ulaw_encode

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024  # a media message is about 300 bytes; a start with its parameters a few kB
ENCODING = "audio/x-mulaw"
LEGS = {"inbound": "customer", "outbound": "agent"}  # Twilio's track -> VoxGate's leg
FRAME = RATE // 50  # 20 ms: Twilio's chunk, and the timestamp error a track may have before it is corrected
MAX_GAP = 60.0  # seconds of silence one track may skip at once; a longer jump is a broken timestamp


class StreamError(ValueError):
    """A message that breaks the protocol: the stream is closed with this text as the reason."""


# -- the messages -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True)
class Start:
    """The call the stream carries. ``parameters``: the ``<Parameter>``s of the ``<Stream>``, names lower-cased."""

    stream_sid: str
    account_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    parameters: dict[str, str] = field(default_factory=dict)

    def call(self) -> PhoneCall:
        """The call as VoxGate knows it: the caller's number (``caller`` or ``from``), the agent or queue, the
        caller's language."""
        p = self.parameters
        return PhoneCall(
            channel="twilio",
            external_id=self.call_sid,
            caller=p.get("caller") or p.get("from"),
            agent=p.get("agent"),
            queue=p.get("queue"),
            language=p.get("language"),
        )


@dataclass(frozen=True)
class Media:
    track: str  # inbound | outbound
    chunk: int  # counts each track's messages from 1
    timestamp: int  # milliseconds into the stream
    payload: bytes = field(repr=False)  # μ-law


@dataclass(frozen=True)
class Dtmf:
    track: str
    digit: str = field(repr=False)  # a key the caller pressed may be part of a PIN: never logged


@dataclass(frozen=True)
class Mark:
    """Twilio's answer to a mark we sent: the audio before it has played (or was cleared)."""

    name: str


@dataclass(frozen=True)
class Stop:
    call_sid: str | None


Message = Connected | Start | Media | Dtmf | Mark | Stop


@dataclass(frozen=True)
class Received:
    """One message and its envelope: ``sequence`` counts the stream's messages from 1 (``connected`` has none)."""

    message: Message
    sequence: int | None
    stream_sid: str | None


def parse(text: str | bytes) -> Received:
    """One text message from Twilio, checked; ``StreamError`` says what is wrong with it."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise StreamError(f"a message is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise StreamError("a message must be a JSON object")
    event = data.get("event")
    if event == "connected":
        return Received(Connected(_text(data, "protocol", "Call"), _text(data, "version", "")), None, None)
    parsers = {"start": _start, "media": _media, "dtmf": _dtmf, "mark": _mark, "stop": _stop}
    if event not in parsers:
        raise StreamError(f"unknown event {str(event)[:40]!r}")
    body = data.get(event)
    if not isinstance(body, dict):
        raise StreamError(f"a {event} message needs its {event!r} object")
    sid = data.get("streamSid")
    return Received(parsers[event](body), _number(data, "sequenceNumber"), sid if isinstance(sid, str) else None)


def _start(body: dict) -> Start:
    fmt = body.get("mediaFormat")
    if not isinstance(fmt, dict):
        raise StreamError("start has no mediaFormat")
    got = (fmt.get("encoding"), _number(fmt, "sampleRate"), _number(fmt, "channels"))
    if got != (ENCODING, RATE, 1):
        raise StreamError(f"media format {got[0]} at {got[1]} Hz, {got[2]} channel(s): only {ENCODING} 8000 Hz mono")
    tracks = body.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not tracks or not set(tracks) <= set(LEGS):
        raise StreamError("start.tracks must list 'inbound' and/or 'outbound'")
    custom = body.get("customParameters") or {}
    if not isinstance(custom, dict) or not all(isinstance(v, str) and len(v) <= 500 for v in custom.values()):
        raise StreamError("start.customParameters must map names to text")
    return Start(
        _text(body, "streamSid"),
        _text(body, "accountSid"),
        _text(body, "callSid"),
        tuple(dict.fromkeys(tracks)),
        {str(k).lower(): v.strip() for k, v in custom.items() if v.strip()},
    )


def _media(body: dict) -> Media:
    track = body.get("track", "inbound")
    if track not in LEGS:
        raise StreamError(f"media.track must be 'inbound' or 'outbound', not {str(track)[:40]!r}")
    try:
        payload = base64.b64decode(_text(body, "payload"), validate=True)
    except binascii.Error:
        raise StreamError("media.payload is not base64") from None
    return Media(track, _number(body, "chunk"), _number(body, "timestamp"), payload)


def _dtmf(body: dict) -> Dtmf:
    return Dtmf(_text(body, "track", "inbound_track"), _text(body, "digit"))


def _mark(body: dict) -> Mark:
    return Mark(_text(body, "name"))


def _stop(body: dict) -> Stop:
    sid = body.get("callSid")
    return Stop(sid if isinstance(sid, str) else None)


def _text(d: dict, key: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if not isinstance(value, str):
        raise StreamError(f"{key} must be text")
    return value


def _number(d: dict, key: str) -> int:
    """Twilio writes its counters as strings of digits ("1"), its media format as numbers: either is taken."""
    value = d.get(key)
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise StreamError(f"{key} must be a whole number, not {str(value)[:40]!r}")
    return int(value)


# -- the stream -------------------------------------------------------------------------------------------------


class TwilioStream:
    """One Media Stream's state: the order of its messages, its call's transport, and each track's audio time.

    Twilio leaves silence out of some tracks (the outbound track carries nothing while nothing plays), so a
    track's audio is placed by its timestamps: a gap is filled with silence, and a leg's audio time stays the
    stream's (subtitles, the transcript and voice ID all count in it). A gap longer than ``max_gap`` is a broken
    timestamp rather than silence: it is logged, and the track goes on from there.
    """

    def __init__(self, max_gap: float = MAX_GAP) -> None:
        self.start: Start | None = None
        self.media: PhoneMedia | None = None
        self._max_gap = int(max_gap * RATE)
        self._sequence = 0
        self._chunk = dict.fromkeys(LEGS, 0)
        self._skipped = dict.fromkeys(LEGS.values(), 0)  # samples of timestamp jumps left unfilled, per leg

    def attach(self, media: PhoneMedia) -> None:
        """The transport of the call that ``Start`` opened: the audio of every later message goes to it."""
        self.media = media

    def receive(self, text: str | bytes) -> Message:
        """Check one message in its place in the stream; a ``Media`` one is heard at once."""
        got = parse(text)
        message = got.message
        if got.sequence is not None:
            if got.sequence != self._sequence + 1:
                log.warning("Twilio stream: message %d after %d (repeated or reordered)", got.sequence, self._sequence)
            self._sequence = max(self._sequence, got.sequence)
        if isinstance(message, Connected):
            if self.start is not None:
                raise StreamError("connected after start")
            return message
        if isinstance(message, Start):
            if self.start is not None:
                raise StreamError("a second start")
            self.start = message
            return message
        if self.start is None:
            raise StreamError(f"{type(message).__name__.lower()} before start")
        if got.stream_sid is not None and got.stream_sid != self.start.stream_sid:
            raise StreamError("a message of another stream")
        if isinstance(message, Media):
            self._hear(message)
        elif self.media is not None:
            self.media.alive()
        return message

    def _hear(self, m: Media) -> None:
        if m.track not in self.start.tracks:
            raise StreamError(f"media on the {m.track} track, which start did not announce")
        if self.media is None:
            raise RuntimeError("attach the call's transport after start, before its media")
        if m.chunk <= self._chunk[m.track]:
            log.warning("Twilio stream: %s chunk %d after %d; dropped", m.track, m.chunk, self._chunk[m.track])
            return
        self._chunk[m.track] = m.chunk
        leg = LEGS[m.track]
        gap = m.timestamp * RATE // 1000 - self._skipped[leg] - self.media.heard[leg]
        if gap >= FRAME:
            fill = min(gap, self._max_gap)
            if fill < gap:
                log.warning("Twilio stream: %s jumped %.1f s; %.1f s filled", m.track, gap / RATE, fill / RATE)
                self._skipped[leg] += gap - fill
            self.media.hear(leg, np.zeros(fill, np.int16))
        self.media.hear(leg, ulaw_decode(m.payload))


# -- what a bidirectional stream accepts back -------------------------------------------------------------------


@dataclass(frozen=True)
class Playback:
    """Messages to a bidirectional stream (``<Connect><Stream>``): audio to play to the caller, a mark that
    Twilio echoes once the audio before it has played, and ``clear`` to drop what is queued (a barge-in).

    VoxGate speaks no synthesised speech yet; this is the encoder that speech will go out through.
    """

    stream_sid: str

    def media(self, pcm: np.ndarray) -> str:
        """int16 samples at 8 kHz, μ-law coded."""
        payload = base64.b64encode(ulaw_encode(pcm)).decode()
        return json.dumps({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def clear(self) -> str:
        return json.dumps({"event": "clear", "streamSid": self.stream_sid})


# -- who is calling ---------------------------------------------------------------------------------------------


def stream_url(public_url: str, path_qs: str) -> str:
    """The URL Twilio requested: the address it was given (TLS usually ends in front of us) as ``ws(s)://``, with
    the request's path and query as they arrived."""
    scheme, _, rest = public_url.rstrip("/").partition("://")
    scheme = {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme)
    return f"{scheme}://{rest}{path_qs}"


def signature(auth_token: str, url: str) -> str:
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def signed_by_twilio(auth_token: str, url: str, header: str | None) -> bool:
    """Whether ``X-Twilio-Signature`` is the auth token's signature of ``url`` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(signature(auth_token, url).encode(), header.encode("utf-8", "replace"))
