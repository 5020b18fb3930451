"""The real server, in-process on a real port, with an injectable clock and an agent ready to sign in."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import web

from calls.settings import Settings
from cli.node import build_node
from signaling.middleware import BACKLOG, AccessLogger
from store.security import hash_password, new_token, token_hash


class TestServer:
    __test__ = False

    def __init__(self, data_dir: Path, engines=None, calibration=None, journeys=None, **settings) -> None:
        self.now = time.time()
        self.settings = Settings(data_dir=data_dir, clock=lambda: self.now, **settings)
        self.node = build_node(self.settings, engines, calibration, journeys=journeys)
        self.app = self.node.app()
        # A refused upload's connection lingers (aiohttp reads the rest of the body for up to 10 s, so the client
        # can read the refusal): behaviour under test. Only the test server's own shutdown is bounded.
        self.runner = web.AppRunner(self.app, shutdown_timeout=2.0, access_log_class=AccessLogger)
        self.base = ""

    async def start(self) -> TestServer:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=BACKLOG)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        self.settings.public_url = self.base
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    @property
    def calls(self):
        return self.node.calls

    @property
    def store(self):
        return self.node.store

    @property
    def voice_id(self):
        return self.node.voice_id

    def add_agent(
        self,
        name: str = "alice",
        password: str = "correct horse",
        language: str = "en",
        role: str = "agent",
        display_name: str | None = None,
    ) -> str:
        api_token = new_token()
        self.store.agents.add(name, hash_password(password), token_hash(api_token), language, role, display_name)
        return api_token

    def agent(self, name: str = "alice"):
        return self.store.agents.by_name(name)
