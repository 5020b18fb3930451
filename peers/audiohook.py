"""An AudioHook client, as Genesys Cloud is one: it streams a phone call to a server and collects what comes back.

Written from the AudioHook protocol (version 2): it opens the WebSocket with the
AudioHook headers and an HTTP message signature, sends ``open`` (the caller's
number, the flow's input variables, the integration's custom configuration, the
media it offers), then streams μ-law frames at real time (or faster, for tests):
the customer on channel 0 (``external``), the agent on channel 1 (``internal``).
It pings, can pause, resume and report discarded audio, answers the server's
``pause``, ``resume`` and ``disconnect`` as the platform does, and closes with
``close``, waiting for ``closed``. Every server message is kept with the wall
time it arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import aiohttp
import numpy as np
import yarl

from media.httpsig import SignedRequest, sign
from peers.phone import RATE, silence

STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": RATE}
SILENT = silence(1.0)[:1]  # one μ-law sample of silence
OFFERS = [STEREO, {**STEREO, "channels": ["external"]}, {**STEREO, "channels": ["internal"]}]


@dataclass(frozen=True)
class Received:
    message: dict
    wall: float  # time.time() on arrival

    @property
    def type(self) -> str:
        return self.message["type"]


class AudioHookClient:
    """One AudioHook session to ``url`` (``ws://host/audiohook``). ``secret``: the client secret (None: unsigned).

    ``created``: the signature's creation time (default now; a server with another clock needs its time).
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        *,
        api_key: str,
        secret: bytes | None = None,
        organization_id: str | None = None,
        session_id: str | None = None,
        created: int | None = None,
        nonce: str | None = None,
        ping_every: float | None = 5.0,
        close_delay: float = 0.0,
    ) -> None:
        self.http, self.url, self.api_key, self.secret = http, yarl.URL(url), api_key, secret
        self.organization_id = organization_id or str(uuid.uuid4())
        self.session_id = session_id or str(uuid.uuid4())
        self.correlation_id = str(uuid.uuid4())
        self.created, self.nonce, self.ping_every = created, nonce, ping_every
        self.close_delay = close_delay  # how long the platform takes to answer a disconnect with close
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received: list[Received] = []
        self.seq = 0
        self.serverseq = 0
        self.samples = 0  # stream position in samples: audio sent and audio reported discarded
        self.paused_at: float | None = None
        self.quiet = False  # see go_quiet
        self._reader: asyncio.Task | None = None
        self._pinger: asyncio.Task | None = None
        self._closing = False
        self._answering: asyncio.Task | None = None

    # -- connecting ------------------------------------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        headers = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Session-Id": self.session_id,
            "Audiohook-Correlation-Id": self.correlation_id,
            "X-API-KEY": self.api_key,
        }
        if self.secret is not None:
            request = SignedRequest(self.url.raw_path_qs, self.url.host_port_subcomponent or "", _lower(headers))
            options = {"created": self.created} if self.created is not None else {}
            headers |= sign(request, key_id=self.api_key, secret=self.secret, nonce=self.nonce, **options)
        return headers

    async def connect(self, headers: dict[str, str] | None = None) -> AudioHookClient:
        """Open the WebSocket (``aiohttp.WSServerHandshakeError`` carries a refusal's status)."""
        self.ws = await self.http.ws_connect(self.url, headers=headers or self.headers(), autoping=True)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def open(
        self,
        *,
        ani: str = "",
        ani_name: str = "",
        dnis: str = "",
        language: str | None = None,
        custom_config: dict | None = None,
        input_variables: dict | None = None,
        media: list[dict] | None = None,
        conversation_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict:
        """The open transaction: ``opened`` (pinging starts), or the server's ``disconnect``."""
        self.conversation_id = conversation_id or str(uuid.uuid4())
        parameters: dict = {
            "organizationId": self.organization_id,
            "conversationId": self.conversation_id,
            "participant": {"id": str(uuid.uuid4()), "ani": ani, "aniName": ani_name, "dnis": dnis},
            "media": media or OFFERS,
        }
        optional = {"language": language, "customConfig": custom_config, "inputVariables": input_variables}
        parameters |= {name: value for name, value in optional.items() if value is not None}
        await self.send("open", parameters)
        reply = await self.wait_for(lambda m: m.type in ("opened", "disconnect"), timeout)
        if reply.type == "opened" and self.ping_every:
            self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())
        return reply.message

    # -- sending ---------------------------------------------------------------------------------------------------

    def message(self, type_: str, parameters: dict | None = None) -> dict:
        self.seq += 1
        return {
            "version": "2",
            "id": self.session_id,
            "type": type_,
            "seq": self.seq,
            "serverseq": self.serverseq,
            "position": _duration(self.samples / RATE),
            "parameters": parameters or {},
        }

    async def send(self, type_: str, parameters: dict | None = None) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(self.message(type_, parameters)))

    async def send_raw(self, data: str | bytes) -> None:
        """Anything at all, for tests of bad input."""
        assert self.ws is not None
        await (self.ws.send_bytes(data) if isinstance(data, bytes) else self.ws.send_str(data))

    async def stream(self, customer: bytes, agent: bytes = b"", *, speed: float = 1.0, frame_ms: int = 100) -> None:
        """Both channels as stereo frames, paced at ``speed`` times real time (waiting out a pause)."""
        assert self.ws is not None
        n = max(len(customer), len(agent))
        stereo = np.stack([np.frombuffer(c + SILENT * (n - len(c)), np.uint8) for c in (customer, agent)], axis=1)
        step = RATE * frame_ms // 1000
        due = time.monotonic()
        for i in range(0, n, step):
            while self.paused_at is not None:
                await asyncio.sleep(0.02)
                due = time.monotonic()
            if self.quiet or self._closing or self.ws.closed:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            frame = stereo[i : i + step]
            await self.ws.send_bytes(frame.tobytes())
            self.samples += len(frame)
            due += len(frame) / RATE / speed

    def go_quiet(self) -> None:
        """Send nothing more, not even pings: a platform that vanished without closing."""
        self.quiet = True
        self._stop_pinging()

    async def ping(self) -> None:
        await self.send("ping")

    async def pause(self) -> None:
        """The platform pauses the audio (a hold, a secure pause): ``paused``, then no audio."""
        self.paused_at = time.monotonic()
        await self.send("paused")

    async def resume(self) -> None:
        """Audio again after a pause: the paused time counts as discarded stream time."""
        assert self.paused_at is not None
        discarded = int((time.monotonic() - self.paused_at) * RATE)
        start, self.paused_at = self.samples, None
        self.samples += discarded
        await self.send("resumed", {"start": _duration(start / RATE), "discarded": _duration(discarded / RATE)})

    async def discard(self, seconds: float) -> None:
        """Audio the platform could not deliver (``discarded``): it still counts in the stream's position."""
        start = self.samples
        self.samples += int(seconds * RATE)
        await self.send("discarded", {"start": _duration(start / RATE), "discarded": _duration(seconds)})

    async def close(self, reason: str = "end", timeout: float = 30.0) -> dict | None:
        """The close transaction: ``closed`` (None if the server never answered), then the socket closes."""
        self._closing = True
        self._stop_pinging()
        if self.ws is not None and not self.ws.closed:
            await self.send("close", {"reason": reason})
            try:
                closed = await self.wait_for(lambda m: m.type == "closed", timeout)
            except TimeoutError:
                closed = None
            await self.ws.close()
            return closed.message if closed else None
        return None

    async def wait_closed(self, timeout: float = 15.0) -> None:
        """Until the socket is closed (by either side)."""
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    # -- receiving -------------------------------------------------------------------------------------------------

    def of_type(self, type_: str) -> list[dict]:
        return [r.message for r in self.received if r.type == type_]

    def transcripts(self) -> list[tuple[dict, float]]:
        """Every transcript entity's data the server sent, with the wall time it arrived."""
        return [
            (entity["data"], r.wall)
            for r in self.received
            if r.type == "event"
            for entity in r.message["parameters"]["entities"]
            if entity["type"] == "transcript"
        ]

    async def wait_for(self, predicate, timeout: float = 10.0) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            found = next((r for r in self.received if predicate(r)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError("no such message from the server")
            if self._reader is not None and self._reader.done():
                raise ConnectionError("the server closed the socket")
            await asyncio.sleep(0.02)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            self.received.append(Received(message, time.time()))
            self.serverseq = message.get("seq", self.serverseq)
            await self._answer(message)
        self._stop_pinging()

    async def _answer(self, message: dict) -> None:
        """What the platform does on the server's own messages."""
        if message["type"] == "disconnect" and not self._closing:
            self._closing = True
            self._stop_pinging()
            self._answering = asyncio.get_running_loop().create_task(self._close_after(self.close_delay))
        elif message["type"] == "pause" and self.paused_at is None:
            await self.pause()
        elif message["type"] == "resume" and self.paused_at is not None:
            await self.resume()
        elif message["type"] == "closed":
            await self.ws.close()

    async def _close_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.ws is not None and not self.ws.closed:
            await self.send("close", {"reason": "disconnect"})

    async def _ping_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.ping_every)
            if self.ws is None or self.ws.closed or self._closing:
                return
            await self.ping()

    def _stop_pinging(self) -> None:
        if self._pinger is not None and self._pinger is not asyncio.current_task():
            self._pinger.cancel()


def _duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
