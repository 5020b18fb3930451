"""The composition root: one server's parts, built from settings, in the order they depend on each other."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from calls.call import Services
from calls.cluster import Cluster
from calls.hub import Hub
from calls.limits import Limiters, local_limiters
from calls.metrics import Metrics
from calls.service import CallService
from calls.settings import Settings
from calls.texts import Catalogue
from identity.directory import HttpClient, RestDirectory, StoreDirectory
from identity.idv import IdvContext
from identity.voiceid import Calibration, VoiceId
from journeys import Journeys
from journeys.callbacks import Callbacks
from journeys.menus import MenuService
from journeys.payments import build_payments
from journeys.settings import JourneySettings
from media.webrtc import use_fast_audio_level
from models.engines import Engines
from models.voiceprint import Cohort
from signaling.app import create_app
from signaling.middleware import WEB_DIR
from store import open_store
from store.security import SecretChecks, Vault, private_dir


@dataclass
class Node:
    """Everything one VoxGate server runs; ``close`` releases it after the last request."""

    settings: Settings
    calls: CallService
    voice_id: VoiceId | None
    http: HttpClient
    pools: list[ThreadPoolExecutor]
    secrets: SecretChecks
    journeys: Journeys

    @property
    def store(self):
        return self.calls.store

    def app(self, secure_cookies: bool | None = None) -> web.Application:
        return create_app(
            self.calls, self.voice_id, self.journeys, secure_cookies=secure_cookies, on_cleanup=self.close
        )

    async def close(self) -> None:
        """After the app has ended every call (``create_app``'s lifecycle): release what the calls used."""
        await self.http.close()
        self.store.close()
        for pool in self.pools:
            pool.shutdown(wait=False)
        self.secrets.close()


def build_node(
    settings: Settings,
    engines: Engines | None = None,
    calibration: Calibration | None = None,
    cohort: Cohort | None = None,
    journeys: JourneySettings | None = None,
) -> Node:
    """``engines`` (loaded once, shared by every call) turn on subtitles, and voice ID when they hold a speaker
    encoder; without them, video only. ``cohort``: voice ID's S-norm cohort (default: the shipped one)."""
    use_fast_audio_level()
    private_dir(settings.data_dir)
    store = open_store(settings.database or settings.data_dir / "voxgate.db", clock=settings.clock)
    vault = Vault.from_file(settings.data_dir / "secret.key")
    secrets = SecretChecks(vault.derive("pin"))
    metrics = Metrics()
    pools: list[ThreadPoolExecutor] = []
    executor = voice_executor = voice_id = tts_executor = None
    if engines is not None:
        # Model work runs in these threads; CTranslate2 and onnxruntime release the GIL while they compute. A thread
        # may only wait here for the decode scheduler (which bounds the decodes at once), so every leg of every
        # call can have its final and a guess waiting without queueing translations behind them.
        executor = ThreadPoolExecutor(max_workers=4 * settings.max_calls + 4, thread_name_prefix="speech")
        pools.append(executor)
        if engines.voices is not None:
            # Translated speech: a sentence is short work, but it must never queue behind a Whisper decode.
            tts_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts")
            pools.append(tts_executor)
        if engines.speaker is not None:
            voice_id = VoiceId(store, vault, [engines.speaker], calibration or Calibration(), cohort, engines.spoof)
            voice_id.ready()
            # Live voice decisions get threads of their own: in the shared pool they queued behind Whisper decodes.
            voice_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="voiceid")
            pools.append(voice_executor)
    http = HttpClient()
    s = settings.idv
    directory = RestDirectory(s.directory_url, http, s.directory_token) if s.directory_url else None
    idv = IdvContext(s, directory or StoreDirectory(store.customers), store, voice_id, http, settings.company, secrets)
    texts = Catalogue(WEB_DIR / "i18n", settings.texts_dir)
    hub = Hub()
    cluster, limiters = _join(settings, hub, engines) if settings.redis_url else (None, local_limiters)
    services = Services(
        store,
        vault,
        hub,
        secrets,
        metrics,
        texts,
        engines,
        executor,
        voice_id,
        voice_executor,
        idv,
        cluster,
        limiters,
        tts_executor,
    )
    calls = CallService(settings, services)
    _watch(metrics, calls)
    return Node(
        settings, calls, voice_id, http, pools, secrets, build_journeys(journeys or JourneySettings(), calls, http)
    )


def build_journeys(settings: JourneySettings, calls: CallService, http: HttpClient) -> Journeys:
    """The journeys on links besides video: each service over the call service (links, store, hub, queues)."""
    return Journeys(
        menus=MenuService(settings.menus, calls, http) if settings.menus.enabled else None,
        callbacks=Callbacks(settings.callbacks, calls, http) if settings.callbacks.enabled else None,
        payments=build_payments(settings.payments, calls, http),
    )


def _join(settings: Settings, hub: Hub, engines: Engines | None) -> tuple[Cluster, Limiters]:
    """This node's part in a cluster on Redis: its heartbeat and calls, events across nodes, shared limits, and
    decoding on the ASR workers while any is alive."""
    try:
        from redis.asyncio import Redis

        from cluster.bus import EventBus
        from cluster.nodes import ClusterNode
        from cluster.throttle import RedisThrottle
    except ImportError as e:
        raise RuntimeError(f"--redis needs the cluster extra: pip install 'voxgate[cluster]' ({e})") from None
    assert settings.redis_url is not None
    redis = Redis.from_url(settings.redis_url)
    node_id = settings.node_id or _default_node_id(settings)
    bus = EventBus(redis, node_id, hub.deliver)
    hub.relay = bus.relay
    # The URL is read when the node joins: a server on port 0 knows its public URL only once listening.
    node = ClusterNode(redis, node_id, lambda: settings.node_url or settings.public_url, bus)

    def limiters(name: str, limit: int, window: float, lockout: float) -> RedisThrottle:
        return RedisThrottle(redis, name, limit, window, lockout=lockout)

    if engines is not None and settings.asr_workers and hasattr(engines.asr, "scheduler"):
        from cluster.asr import RemoteScheduler

        engines.asr.scheduler = RemoteScheduler(settings.redis_url, node_id, engines.asr.scheduler)
    return node, limiters


def _default_node_id(settings: Settings) -> str:
    import socket
    from urllib.parse import urlsplit

    return f"{socket.gethostname()}:{urlsplit(settings.public_url).port or 80}"


def _watch(metrics: Metrics, calls: CallService) -> None:
    """The state gauges, read from their owners when Prometheus scrapes."""
    metrics.gauge(
        "voxgate_live_calls",
        "Live calls by kind: link (a video link), audiohook, twilio, whip (phone streams)",
        lambda: Counter(call.link.channel for call in calls.live.values()),
        "kind",
    )
    metrics.gauge("voxgate_links", "Links and calls by state", calls.store.links.count_by_state, "state")
    scheduler = getattr(calls.engines.asr, "scheduler", None) if calls.engines is not None else None
    if scheduler is not None:
        scheduler.on_wait = metrics.decode_wait.observe
        metrics.gauge("voxgate_decode_queue", "Final decodes queued and not started", lambda: {"": scheduler.waiting})
