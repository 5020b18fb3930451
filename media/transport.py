"""What a ``Call`` needs of the transport that carries its audio, whatever brought the call in.

A video link's WebRTC peers (``media.webrtc.CallMedia``) and a contact-centre
platform's stream of the phone call (``media.phone.PhoneMedia``) both hand each
leg's decoded frames to that leg's listeners (the speech taps), on the event
loop, and end once, whoever ends them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

AudioListener = Callable[[Any], None]  # called with an av.AudioFrame or a media.frames.AudioFrame


class Transport(Protocol):
    call_id: str
    customer_listeners: list[AudioListener]
    agent_listeners: list[AudioListener]
    narrowband: bool  # telephone audio (8 kHz G.711): voice ID scores it on its own scale

    @property
    def ended(self) -> bool: ...

    async def end(self, reason: str) -> None:
        """Hang up (idempotent); the transport's end callback runs once."""
