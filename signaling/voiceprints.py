"""Voice prints: status and consent records, recordings, the watch list, deletion and opt-out."""

from __future__ import annotations

import asyncio
import tempfile

import numpy as np
from aiohttp import web

from identity.voiceid import Progress
from media.audio_io import AudioFormatError, read_pcm
from media.speech import net_speech
from models.base import VadEngine, pcm_to_float
from signaling.middleware import CALLS, agent_of, json_body, voice_id_of
from store.errors import Conflict, Invalid, NotFound, TooLarge

MAX_RECORDING = 16 * 1024 * 1024  # an uploaded enrolment recording: minutes of compressed audio

routes = web.RouteTableDef()


@routes.get("/api/voiceprints/{customer}")
async def status(request: web.Request) -> web.Response:
    """Enrolment status and consent record; never the print itself."""
    agent_of(request)
    return web.json_response(voice_id_of(request).status(request.match_info["customer"]))


@routes.delete("/api/voiceprints/{customer}")
async def delete(request: web.Request) -> web.Response:
    agent = agent_of(request)
    if not voice_id_of(request).delete(request.match_info["customer"], agent.name):
        raise NotFound("no voice print for this customer")
    return web.json_response({"deleted": True})


@routes.post("/api/voiceprints/{customer}/opt-out")
async def opt_out(request: web.Request) -> web.Response:
    agent = agent_of(request)
    voice_id = voice_id_of(request)
    voice_id.opt_out(request.match_info["customer"], agent.name)
    return web.json_response(voice_id.status(request.match_info["customer"]))


@routes.post("/api/voiceprints/{customer}/consent")
async def consent(request: web.Request) -> web.Response:
    """Record consent taken outside a call (who, when, the wording) and start an enrolment."""
    agent = agent_of(request)
    wording = (await json_body(request)).get("wording")
    if not isinstance(wording, str) or not 10 <= len(wording) <= 2000:
        raise Invalid("wording: the consent text the customer agreed to (10-2000 characters)")
    progress = voice_id_of(request).consent(request.match_info["customer"], by=agent.name, wording=wording)
    return web.json_response(progress.to_dict(), status=201)


@routes.post("/api/voiceprints/{customer}/recordings")
async def recording(request: web.Request) -> web.Response:
    """Add a recording (any audio format) to the customer's enrolment, or with ``?watchlist=REASON`` put the voice
    on the fraud watch list. Answers the progress: ``{"speech_seconds": 12.3, "needed": 20, "enrolled": false}``."""
    agent = agent_of(request)
    voice_id, customer = voice_id_of(request), request.match_info["customer"]
    reason = request.query.get("watchlist")
    if reason is None and voice_id.prints.enrolment(customer) is None:
        raise Conflict("no consent on record for this customer: POST .../consent first")
    audio = await read_upload(request, MAX_RECORDING)
    calls = request.app[CALLS]
    vad = calls.engines.vad()

    def enrol() -> Progress:  # decode and embed: CPU work, off the loop
        speech = speech_of(audio, vad)
        if reason is not None:
            return voice_id.watch(customer, speech, reason=reason, by=agent.name)
        return voice_id.add_speech(customer, speech)

    progress = await asyncio.get_running_loop().run_in_executor(calls.services.executor, enrol)
    return web.json_response(progress.to_dict())


@routes.post("/api/voiceprints/{customer}/watchlist")
async def flag(request: web.Request) -> web.Response:
    """Flag an existing print as a known fraudster's."""
    agent = agent_of(request)
    reason = (await json_body(request)).get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason: why this voice is on the watch list (a case number, say)")
    voice_id = voice_id_of(request)
    if not voice_id.flag(request.match_info["customer"], reason=reason, by=agent.name):
        raise NotFound("no voice print for this customer")
    return web.json_response(voice_id.status(request.match_info["customer"]))


async def read_upload(request: web.Request, limit: int) -> bytes:
    """The request body up to ``limit`` bytes (this route's own limit, above the API's 64 KiB)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"recording larger than {limit} bytes")
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > limit:
            raise TooLarge(f"recording larger than {limit} bytes")
    if not data:
        raise Invalid("send the recording as the request body")
    return bytes(data)


def speech_of(audio: bytes, vad: VadEngine) -> np.ndarray:
    """Net speech (float32, 16 kHz) of an uploaded recording; AudioFormatError says what is wrong with it."""
    with tempfile.NamedTemporaryFile(suffix=".audio") as f:
        f.write(audio)
        f.flush()
        try:
            return pcm_to_float(net_speech(read_pcm(f.name), vad))
        except AudioFormatError as e:
            raise AudioFormatError(str(e).replace(f.name, "the recording")) from None
