"""A WHIP client (RFC 9725) on aiortc: a gateway streaming a phone call's legs into VoxGate over WebRTC.

It sends the caller's track and, if given, the agent's as a second audio track (VoxGate's extension: the RFC
allows one track per kind), both sendonly, in one offer with every ICE candidate in it (aiortc does not
trickle). The answer's ``Location`` is the session: DELETE on it hangs up.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from peers.webrtc import wait_gathered


class WhipRefused(Exception):
    """The endpoint did not answer 201: its status and what it said."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"WHIP {status}: {body}")
        self.status, self.body = status, body


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header, or none at all without a token (as the RFC asks)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


async def sendonly_offer(*tracks: MediaStreamTrack) -> tuple[RTCPeerConnection, str]:
    """A peer connection sending ``tracks`` and its complete SDP offer (all candidates gathered)."""
    pc = RTCPeerConnection()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await wait_gathered(pc)
    return pc, pc.localDescription.sdp


@dataclass
class WhipSession:
    pc: RTCPeerConnection
    url: str  # the session URL (Location, resolved against the endpoint)
    token: str | None
    answer: str

    async def delete(self, http: aiohttp.ClientSession) -> int:
        """End the session as the RFC asks (the server hangs up the call); the status it answered."""
        async with http.delete(self.url, headers=bearer(self.token)) as r:
            await r.read()
            status = r.status
        await self.pc.close()
        return status


async def publish(
    http: aiohttp.ClientSession,
    endpoint: str,
    token: str | None,
    tracks: list[MediaStreamTrack],
    **params: str,
) -> WhipSession:
    """Send ``tracks`` (the caller's, then the agent's if any): POST the offer to ``endpoint`` with ``params``
    as its query (agent, queue, caller, language, id) and apply the answer. Raises ``WhipRefused`` (the peer
    connection closed) on anything but 201."""
    pc, sdp = await sendonly_offer(*tracks)
    headers = {"Content-Type": "application/sdp", **bearer(token)}
    async with http.post(endpoint, params=params, data=sdp.encode(), headers=headers) as r:
        body = await r.text()
        if r.status != 201:
            await pc.close()
            raise WhipRefused(r.status, body)
        location = urljoin(str(r.url), r.headers["Location"])
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return WhipSession(pc, location, token, body)
