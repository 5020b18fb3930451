"""The nodes of a cluster, and which one owns each live call, kept in Redis with a heartbeat.

A WebRTC peer connection lives in one process, so a call stays on the node that took its media (its *owner*);
everything else is shared. Each node refreshes a key of its own every ``beat`` seconds, expiring after
``ttl``, and records the calls it owns. Every node also watches the others: when a node's key has lapsed (the
process was killed, the machine lost), one survivor, chosen by a Redis lock, takes that node's calls and hands
them to ``on_lost``, which marks them interrupted and tells the consoles. A node that starts again under the
same id finds its own calls of the last run the same way, at once.

Keys (all under ``voxgate:``): ``node:{id}`` (the node's URL; expires), ``nodes`` (the set of node ids),
``calls:{id}`` (the calls a node owns), ``owner`` (hash: call id -> node id), ``reaping:{id}`` (the lock),
``presence:{id}`` (what the node shares at each beat: its agents' presence, as JSON; expires with the node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from cluster.bus import EventBus

log = logging.getLogger(__name__)

Lost = Callable[[list[str], str], Awaitable[None]]  # (call ids, why) -> marks them interrupted


class ClusterNode:
    """This node's place in the cluster: ``calls.cluster.Cluster`` on Redis."""

    def __init__(
        self,
        redis: Redis,
        node_id: str,
        url: Callable[[], str],
        bus: EventBus,
        *,
        beat: float = 1.0,
        ttl: float = 4.0,
    ) -> None:
        self.redis, self.node_id, self._url, self.bus = redis, node_id, url, bus
        self.url = ""  # known once the node joins
        self.beat, self.ttl = beat, ttl
        self._on_lost: Lost | None = None
        self._task: asyncio.Task | None = None
        self._closed = False
        self._calls: set[str] = set()  # the calls this node owns, said again at every beat
        self._share: Callable[[], dict] | None = None  # what this node tells the others at every beat
        self.presence: dict[str, dict] = {}  # what the other live nodes told at their last beat

    async def start(self, on_lost: Lost) -> None:
        """Join (the heartbeat and the watch on the others begin) after settling what this node's last run left."""
        self._on_lost = on_lost
        self.url = self._url().rstrip("/")
        await self.bus.start()
        await self._reap(self.node_id, "the server stopped during the call")
        await self._heartbeat()
        await self._hear(await self._others())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Leave: the calls are ended by then, so nothing is left for the others to reap."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with self.redis.pipeline() as pipe:
                pipe.delete(self._key(self.node_id), self._presence_key(self.node_id))
                await pipe.srem("voxgate:nodes", self.node_id).execute()
        await self.bus.close()
        await self.redis.aclose()

    def share(self, snapshot: Callable[[], dict]) -> None:
        self._share = snapshot

    async def ping(self) -> None:
        await self.redis.ping()

    async def claim(self, call_id: str) -> None:
        """This node holds the call's media from now on."""
        self._calls.add(call_id)
        async with self.redis.pipeline() as pipe:
            pipe.hset("voxgate:owner", call_id, self.node_id).sadd(f"voxgate:calls:{self.node_id}", call_id)
            await pipe.execute()

    async def release(self, call_id: str) -> None:
        self._calls.discard(call_id)
        async with self.redis.pipeline() as pipe:
            pipe.hdel("voxgate:owner", call_id).srem(f"voxgate:calls:{self.node_id}", call_id)
            await pipe.execute()

    async def locate(self, call_id: str) -> str | None:
        """The URL of the other live node that owns the call; None when it is this node's, or nobody's."""
        owner = await self.redis.hget("voxgate:owner", call_id)
        if owner is None or owner.decode() == self.node_id:
            return None
        url = await self.redis.get(self._key(owner.decode()))
        return url.decode() if url else None

    async def nodes(self) -> dict[str, str]:
        """The live nodes and their URLs."""
        ids = sorted(i.decode() for i in await self.redis.smembers("voxgate:nodes"))
        urls = await self.redis.mget([self._key(i) for i in ids]) if ids else []
        return {i: u.decode() for i, u in zip(ids, urls, strict=True) if u}

    # -- the heartbeat and the watch -----------------------------------------------------------------------------

    def _key(self, node_id: str) -> str:
        return f"voxgate:node:{node_id}"

    def _presence_key(self, node_id: str) -> str:
        return f"voxgate:presence:{node_id}"

    async def _heartbeat(self) -> None:
        """The node's key, and its calls said again: a Redis that restarted empty knows them within a beat."""
        async with self.redis.pipeline() as pipe:
            pipe.set(self._key(self.node_id), self.url, px=int(self.ttl * 1000)).sadd("voxgate:nodes", self.node_id)
            if self._share is not None:
                pipe.set(self._presence_key(self.node_id), json.dumps(self._share()), px=int(self.ttl * 1000))
            if calls := sorted(self._calls):
                pipe.hset("voxgate:owner", mapping=dict.fromkeys(calls, self.node_id))
                pipe.sadd(f"voxgate:calls:{self.node_id}", *calls)
            await pipe.execute()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.beat)
            try:
                await self._heartbeat()
                others = await self._others()
                await self._hear(others)
                await self._watch(others)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis away: keep the calls, try again
                log.warning("cluster heartbeat: %s", e)

    async def _others(self) -> list[str]:
        return sorted(i.decode() for i in await self.redis.smembers("voxgate:nodes") if i.decode() != self.node_id)

    async def _hear(self, others: list[str]) -> None:
        """What the other nodes shared at their last beat (a node gone stops counting when its key expires)."""
        shared = await self.redis.mget([self._presence_key(i) for i in others]) if others else []
        self.presence = {i: json.loads(s) for i, s in zip(others, shared, strict=True) if s}

    async def _watch(self, others: list[str]) -> None:
        for node in others:
            if not await self.redis.exists(self._key(node)):
                await self._reap(node, f"node {node} stopped answering during the call")

    async def _reap(self, node: str, why: str) -> None:
        """Take a silent node's calls (once, whichever node wins the lock) and hand them to ``on_lost``."""
        lock = f"voxgate:reaping:{node}"
        if not await self.redis.set(lock, self.node_id, nx=True, px=int(self.ttl * 5000)):
            return
        try:
            calls = sorted(c.decode() for c in await self.redis.smembers(f"voxgate:calls:{node}"))
            if calls:
                log.warning("node %s is gone: its %d call(s) are interrupted", node, len(calls))
                assert self._on_lost is not None
                await self._on_lost(calls, why)
            async with self.redis.pipeline() as pipe:
                if calls:
                    pipe.hdel("voxgate:owner", *calls)
                pipe.delete(f"voxgate:calls:{node}")
                if node != self.node_id:
                    pipe.srem("voxgate:nodes", node)
                await pipe.execute()
        finally:
            await self.redis.delete(lock)
