"""A Twilio Media Streams client that behaves as Twilio does, for the tests and the benchmarks.

It signs the URL with the account's auth token, sends ``connected`` and ``start``
(the SIDs, the tracks, the ``<Parameter>``s), then 20 ms ``media`` messages of
μ-law (``peers.phone.phone_audio``) for the inbound (caller) and outbound
(agent) tracks at real time, numbered as Twilio numbers them (``sequenceNumber``
across the stream, ``chunk`` per track, ``timestamp`` in ms of stream time), and
``stop``. It keeps what the server sends back and how the server closed.

Written from Twilio's documentation, apart from the server's ``media.twilio``, so
each checks the other.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets

import aiohttp

FRAME = 160  # μ-law bytes of one 20 ms chunk at 8 kHz
SILENT = 0xFF  # μ-law code of digital silence
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def sign(auth_token: str, url: str) -> str:
    """``X-Twilio-Signature`` of a request with no form parameters: base64 HMAC-SHA1 of the URL."""
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class TwilioPeer:
    """One Media Stream to a server: ``received`` holds the server's messages, ``close_code`` and ``close_reason``
    how it closed (None while open)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.call_sid, self.stream_sid, self.account_sid = sid("CA"), sid("MZ"), sid("AC")
        self.received: list[dict] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._sequence = 0
        self._chunks: dict[str, int] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, url: str, auth_token: str | None, *, hello: bool = True
    ) -> TwilioPeer:
        """Open the stream (signed when ``auth_token`` is given) and send ``connected``. A refusal raises
        ``aiohttp.WSServerHandshakeError`` with the server's status."""
        headers = {"X-Twilio-Signature": sign(auth_token, url)} if auth_token is not None else {}
        peer = cls(await http.ws_connect(url, headers=headers, autoping=True))
        if hello:
            await peer.send_raw(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        return peer

    async def _read(self) -> None:
        ends = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        while (msg := await self.ws.receive()).type not in ends:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(msg.data))
        self.close_reason = msg.extra or "" if msg.type == aiohttp.WSMsgType.CLOSE else str(msg.data or "")
        self.close_code = self.ws.close_code

    # -- what Twilio sends -------------------------------------------------------------------------------------

    async def send_raw(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            await self.ws.send_bytes(text)
        else:
            await self.ws.send_str(text)

    async def send(self, event: str, body: dict | None = None) -> None:
        """A message with its envelope: the event, the next sequence number and the stream's SID."""
        self._sequence += 1
        message = {"event": event, "sequenceNumber": str(self._sequence), "streamSid": self.stream_sid}
        if body is not None:
            message[event] = body
        await self.send_raw(json.dumps(message))

    async def start(
        self, parameters: dict[str, str], tracks: tuple[str, ...] = ("inbound",), media_format: dict | None = None
    ) -> None:
        await self.send(
            "start",
            {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": list(tracks),
                "customParameters": parameters,
                "mediaFormat": media_format or MEDIA_FORMAT,
            },
        )

    async def media(self, track: str, ulaw: bytes, timestamp_ms: int) -> None:
        self._chunks[track] = self._chunks.get(track, 0) + 1
        payload = base64.b64encode(ulaw).decode()
        chunk, ts = str(self._chunks[track]), str(timestamp_ms)
        await self.send("media", {"track": track, "chunk": chunk, "timestamp": ts, "payload": payload})

    async def play(
        self, caller: bytes, agent: bytes | None = None, *, speed: float = 1.0, skip_agent_silence: bool = False
    ) -> None:
        """Both tracks side by side, 20 ms chunks, ``speed`` times real time. ``skip_agent_silence``: leave out the
        outbound track's chunks of digital silence, as Twilio does while nothing plays to the caller (the
        timestamps go on). Stops early if the server closes the stream."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tracks = {"inbound": caller} | ({"outbound": agent} if agent is not None else {})
        frames = max(len(audio) for audio in tracks.values()) // FRAME
        for i in range(frames):
            for track, audio in tracks.items():
                chunk = audio[i * FRAME : (i + 1) * FRAME]
                silent = track == "outbound" and skip_agent_silence and chunk.count(SILENT) == len(chunk)
                if self.ws.closed:
                    return
                if len(chunk) == FRAME and not silent:
                    await self.media(track, chunk, i * 20)
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 / speed - loop.time()))

    async def stop(self) -> None:
        await self.send("stop", {"accountSid": self.account_sid, "callSid": self.call_sid})

    # -- the end -----------------------------------------------------------------------------------------------

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the server to close the stream; its close code."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
