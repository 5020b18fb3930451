"""Voice prints: status and consent records, recordings, the watch list, deletion and opt-out.

Who may do which is the agent's role's (``calls.access``): an agent acts for the customers of their own calls,
fraud analysts keep the watch list, supervisors and admins act for anyone; every refusal is audited."""

from __future__ import annotations

import asyncio
import tempfile

import numpy as np
from aiohttp import web

from calls.access import Permission, customer_id
from identity.voiceid import Progress
from media.audio_io import AudioFormatError, AudioTooLong, read_pcm
from media.speech import net_speech
from models.base import VadEngine, pcm_to_float
from signaling.middleware import CALLS, agent_of, json_body, voice_id_of
from store.base import Agent
from store.errors import Conflict, Invalid, NotFound, TooLarge

MAX_RECORDING = 16 * 1024 * 1024  # an uploaded enrolment recording: minutes of compressed audio
# Decoded length, capped while decoding: 2.7 MB of FLAC silence holds 4 h of PCM (+890 MiB at peak, uncapped).
MAX_RECORDING_SECONDS = 600.0

routes = web.RouteTableDef()


def allowed(request: web.Request, permission: Permission) -> tuple[Agent, str]:
    """The signed-in agent and the customer the path names, once the agent's role allows ``permission`` on them."""
    agent, customer = agent_of(request), customer_id(request.match_info["customer"])
    request.app[CALLS].access.require(agent, permission, customer)
    return agent, customer


@routes.get("/api/voiceprints/{customer}")
async def status(request: web.Request) -> web.Response:
    """Enrolment status and consent record; never the print itself."""
    _, customer = allowed(request, Permission.PRINT_READ)
    return web.json_response(voice_id_of(request).status(customer))


@routes.delete("/api/voiceprints/{customer}")
async def delete(request: web.Request) -> web.Response:
    agent, customer = allowed(request, Permission.PRINT_DELETE)
    if not voice_id_of(request).delete(customer, agent.name):
        raise NotFound("no voice print for this customer")
    return web.json_response({"deleted": True})


@routes.post("/api/voiceprints/{customer}/opt-out")
async def opt_out(request: web.Request) -> web.Response:
    agent, customer = allowed(request, Permission.PRINT_ENROL)
    voice_id = voice_id_of(request)
    voice_id.opt_out(customer, agent.name)
    return web.json_response(voice_id.status(customer))


@routes.post("/api/voiceprints/{customer}/consent")
async def consent(request: web.Request) -> web.Response:
    """Record consent taken outside a call (who, when, the wording) and start an enrolment."""
    agent, customer = allowed(request, Permission.PRINT_ENROL)
    wording = (await json_body(request)).get("wording")
    if not isinstance(wording, str) or not 10 <= len(wording) <= 2000:
        raise Invalid("wording: the consent text the customer agreed to (10-2000 characters)")
    progress = voice_id_of(request).consent(customer, by=agent.name, wording=wording)
    return web.json_response(progress.to_dict(), status=201)


@routes.post("/api/voiceprints/{customer}/recordings")
async def recording(request: web.Request) -> web.Response:
    """Add a recording (any audio format) to the customer's enrolment, or with ``?watchlist=REASON`` put the voice
    on the fraud watch list. Answers the progress: ``{"speech_seconds": 12.3, "needed": 20, "enrolled": false}``."""
    reason = request.query.get("watchlist")
    agent, customer = allowed(request, Permission.PRINT_ENROL if reason is None else Permission.PRINT_FLAG)
    voice_id = voice_id_of(request)
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
    if progress.quality and progress.quality["refuse"]:  # not added: the enrolment stands as it was
        error = " ".join(progress.quality["messages"])
        return web.json_response({**progress.to_dict(), "error": error}, status=422)
    return web.json_response(progress.to_dict())


@routes.post("/api/voiceprints/{customer}/watchlist")
async def flag(request: web.Request) -> web.Response:
    """Flag an existing print as a known fraudster's."""
    agent, customer = allowed(request, Permission.PRINT_FLAG)
    reason = (await json_body(request)).get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason: why this voice is on the watch list (a case number, say)")
    voice_id = voice_id_of(request)
    if not voice_id.flag(customer, reason=reason, by=agent.name):
        raise NotFound("no voice print for this customer")
    return web.json_response(voice_id.status(customer))


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


def speech_of(audio: bytes, vad: VadEngine, max_seconds: float = MAX_RECORDING_SECONDS) -> np.ndarray:
    """Net speech (float32, 16 kHz) of an uploaded recording; AudioFormatError says what is wrong with it, and
    TooLarge (413) refuses one that decodes to more than ``max_seconds``."""
    with tempfile.NamedTemporaryFile(suffix=".audio") as f:
        f.write(audio)
        f.flush()
        try:
            return pcm_to_float(net_speech(read_pcm(f.name, max_seconds), vad))
        except AudioTooLong as e:
            raise TooLarge(str(e).replace(f.name, "the recording")) from None
        except AudioFormatError as e:
            raise AudioFormatError(str(e).replace(f.name, "the recording")) from None
