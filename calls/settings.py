"""What an operator sets for calls: links, limits, subtitles, media, ICE, ID&V, phone ingress. The CLI's defaults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from calls.context import RoutingSettings
from identity.idv import IdvSettings


@dataclass
class Settings:
    data_dir: Path
    public_url: str = "http://localhost:8080"
    company: str = "VoxGate"
    texts_dir: Path | None = None  # the operator's customer texts, over the shipped ones (calls.texts)
    link_ttl: float = 600.0
    max_link_ttl: float = 24 * 3600.0
    max_calls_per_agent: int = 4
    max_calls: int = 20
    partials: bool = True  # live partial subtitles (off: each utterance transcribed once, at its end)
    endpoint_ms: int = 300  # the pause that ends a subtitle line: latency is the product
    media_timeout: float = 8.0
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)  # e.g. turn:turn.example.com:3478?transport=udp
    turn_user: str | None = None
    turn_password: str | None = None  # static credentials, or:
    turn_secret: str | None = None  # coturn's use-auth-secret: short-lived credentials derived per call
    idv: IdvSettings = field(default_factory=IdvSettings)
    # Phone calls streamed by the contact-centre platform (see README, "Connect your contact centre").
    audiohook_keys: dict[str, bytes | None] = field(default_factory=dict)  # API key -> client secret (or none)
    twilio_auth_token: str | None = None  # checks X-Twilio-Signature on /twilio/media
    whip_tokens: tuple[str, ...] = ()  # bearer tokens for /whip, kept as hashes (store.security.token_hash)
    queues: dict[str, str] = field(default_factory=dict)  # a platform's queue name -> the agent who takes it
    routing: RoutingSettings = field(default_factory=RoutingSettings)  # skill queues, and reasons for calling
    metrics_token: str | None = None  # /metrics for this bearer token (None: not on the public port)
    metrics_port: int | None = None  # /metrics on this loopback port, without a token
    # Several nodes (README, "Run several nodes"): shared state in PostgreSQL, coordination in Redis.
    database: str | None = None  # postgresql://...; None: SQLite in data_dir
    redis_url: str | None = None  # redis://...; None: one node (in-process events and limits)
    node_id: str | None = None  # unique per node (default: the host name and port)
    node_url: str | None = None  # where the other nodes reach this one (default: public_url)
    asr_workers: bool = True  # with Redis: decode on `voxgate asr-worker` processes while any is alive
    clock: Callable[[], float] = time.time

    def ice_servers(self, ttl: float = 3600.0) -> list[dict]:
        """ICE servers for browsers and aiortc alike. None at all works on one machine or a LAN."""
        servers: list[dict] = [{"urls": self.stun_urls}] if self.stun_urls else []
        if self.turn_urls:
            if self.turn_secret:
                username = f"{int(self.clock() + ttl)}:{self.turn_user or 'voxgate'}"
                digest = hmac.new(self.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
                servers.append(
                    {"urls": self.turn_urls, "username": username, "credential": base64.b64encode(digest).decode()}
                )
            else:
                servers.append({"urls": self.turn_urls, "username": self.turn_user, "credential": self.turn_password})
        return servers
