"""What a ``Call`` needs of the transport that carries its audio, whatever brought the call in.

A video link's WebRTC peers (``media.webrtc.CallMedia``) and a contact-centre
platform's stream of the phone call (``media.phone.PhoneMedia``) both hand each
leg's decoded frames to that leg's listeners (the speech taps), on the event
loop, and end once, whoever ends them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from media.voice_out import VoiceOut

AudioListener = Callable[[Any], None]  # called with an av.AudioFrame or a media.frames.AudioFrame


class Transport(Protocol):
    call_id: str
    customer_listeners: list[AudioListener]
    agent_listeners: list[AudioListener]
    narrowband: bool  # telephone audio (8 kHz G.711): voice ID scores it on its own scale
    heard_by: dict[str, VoiceOut]  # what each side hears, where the transport plays audio back (a video link)

    @property
    def ended(self) -> bool: ...

    async def end(self, reason: str) -> None:
        """Hang up (idempotent); the transport's end callback runs once."""


async def watchdog(
    last_heard: Callable[[], float], timeout: float, end: Callable[[str], Awaitable[None]], reason: str
) -> None:
    """End a call whose media stopped (``last_heard``: monotonic time of the last sign of life): a killed tab, a
    lost network or a vanished platform sends no goodbye. Cancelled by the transport when the call ends."""
    while True:
        await asyncio.sleep(min(1.0, timeout / 4))
        if time.monotonic() - last_heard() > timeout:
            await end(reason)
            return
