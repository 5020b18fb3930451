"""Several ``voxgate serve`` processes on one PostgreSQL and one Redis, as an operator runs them: for tests and
the cluster benchmark. Each node is its own process (so it can be killed), with its own port and data folder,
and the secret key every node must share."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from peers.ports import free_port
from peers.servers import wait_ready

CLI = [sys.executable, "-m", "cli"]


@dataclass
class Node:
    node_id: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    async def ready(self) -> None:
        await wait_ready(self.base, self.process, self.log)


class Cluster:
    """``nodes`` nodes sharing ``database`` and ``redis``; ``extra`` args per node id (e.g. ``--no-subtitles``)."""

    def __init__(
        self, root: Path, database: str, redis: str, nodes: int = 2, extra: dict[str, list[str]] | None = None
    ):
        self.root, self.database, self.redis = root, database, redis
        self.nodes = [Node(chr(ord("a") + i), root / f"node-{chr(ord('a') + i)}") for i in range(nodes)]
        self.extra = extra or {}
        key = base64.b64encode(os.urandom(32)).decode()
        self.env = {**os.environ, "VOXGATE_SECRET_KEY": key}
        self.workers: list[subprocess.Popen] = []

    def add_agent(self, name: str, language: str = "en") -> str:
        """A new agent in the shared store; returns its API token."""
        out = subprocess.run(
            [*CLI, "agent", "add", name, "--language", language, "--database", self.database]
            + ["--data-dir", str(self.root / "cli")],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        ).stdout
        return out.split("api token:")[1].split()[0]

    async def start(self) -> Cluster:
        for node in self.nodes:
            self.start_node(node)
        await asyncio.gather(*(node.ready() for node in self.nodes))
        return self

    def start_node(self, node: Node) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        args = [*CLI, "serve", "--data-dir", str(node.data_dir), "--port", str(node.port)]
        args += ["--public-url", node.base, "--database", self.database, "--redis", self.redis]
        args += ["--node-id", node.node_id, "--no-idv", *self.extra.get(node.node_id, [])]
        node.process = subprocess.Popen(args, stdout=node.log.open("w"), stderr=subprocess.STDOUT, env=self.env)

    def start_worker(self, *args: str) -> subprocess.Popen:
        """A ``voxgate asr-worker`` process on the cluster's Redis."""
        log = (self.root / f"worker-{len(self.workers)}.log").open("w")
        worker = subprocess.Popen(
            [*CLI, "asr-worker", "--redis", self.redis, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        self.workers.append(worker)
        return worker

    def kill(self, node: Node) -> None:
        """kill -9: no goodbye to Redis, no call ended."""
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()

    def stop(self) -> None:
        for process in [*(n.process for n in self.nodes if n.process), *self.workers]:
            if process.poll() is None:
                process.terminate()
        for process in [*(n.process for n in self.nodes if n.process), *self.workers]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
