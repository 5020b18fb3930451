"""Events across nodes: every node's hub events relayed to the others over one Redis pub/sub channel.

A node delivers its own events to its own listeners at once (a console on the same node never waits on Redis)
and publishes them for the others, in the order they were made, from one task; each node delivers what the
others publish. Events are the hub's JSON objects, so what crosses is what a console receives. Pub/sub keeps
nothing: a node that is away misses events, as a console that reconnects does, and both read the state again
(the console's hello).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Hashable

from redis.asyncio import Redis

log = logging.getLogger(__name__)

CHANNEL = "voxgate:events"


class EventBus:
    """Relays ``relay(key, event)`` to every other node, which calls its ``deliver(key, event)``."""

    def __init__(self, redis: Redis, node_id: str, deliver: Callable[[Hashable, object], None]) -> None:
        self.redis, self.node_id, self.deliver = redis, node_id, deliver
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=100_000)
        self._tasks: list[asyncio.Task] = []
        self.ready = asyncio.Event()  # subscribed: events published from now on reach this node

    def relay(self, key: Hashable, event: object) -> None:
        """Queue an event for the other nodes (from the event loop; never blocks). A full outbox (Redis away
        for long) drops the oldest: listeners resynchronise from the store."""
        message = json.dumps({"n": self.node_id, "k": list(key) if isinstance(key, tuple) else key, "e": event})
        if self._outbox.full():
            self._outbox.get_nowait()
        self._outbox.put_nowait(message)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send()), loop.create_task(self._receive())]
        await asyncio.wait_for(self.ready.wait(), 10.0)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 100:
                batch.append(self._outbox.get_nowait())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(CHANNEL, message)
                    await pipe.execute()
            except Exception as e:  # Redis away: these events are lost to the other nodes, said once per batch
                log.warning("events to other nodes lost (%d): %s", len(batch), e)
                await asyncio.sleep(0.5)

    async def _receive(self) -> None:
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.ready.set()
                    async for message in pubsub.listen():
                        self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("events from other nodes: %s; resubscribing", e)
                await asyncio.sleep(0.5)

    def _deliver(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            if message["n"] == self.node_id:
                return
            key = message["k"]
            self.deliver(tuple(key) if isinstance(key, list) else key, message["e"])
        except Exception:  # one bad message must not stop the node hearing the rest
            log.exception("an event from another node could not be delivered")
