"""Fan-out of events to whoever is listening (consoles, customer pages), each through a bounded queue."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Hashable


class Hub:
    """Subscribers by key (an agent, a call); a listener that stops reading loses its oldest events, never memory.

    ``relay``, when set (several nodes: ``cluster.bus``), is handed every event published here as well, for the
    listeners on other nodes, which ``deliver`` it to theirs.
    """

    def __init__(self, maxsize: int = 1000) -> None:
        self._queues: dict[Hashable, set[asyncio.Queue]] = defaultdict(set)
        self._maxsize = maxsize
        self.relay: Callable[[Hashable, object], None] | None = None

    def subscribe(self, key: Hashable) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=self._maxsize)
        self._queues[key].add(q)
        return q

    def unsubscribe(self, key: Hashable, q: asyncio.Queue) -> None:
        queues = self._queues.get(key)
        if queues is not None:
            queues.discard(q)
            if not queues:
                del self._queues[key]

    def publish(self, key: Hashable, event: object) -> None:
        """``None`` tells listeners the stream has ended."""
        self.deliver(key, event)
        if self.relay is not None:
            self.relay(key, event)

    def deliver(self, key: Hashable, event: object) -> None:
        """To this node's listeners only."""
        for q in list(self._queues.get(key, ())):
            if q.full():
                q.get_nowait()
            q.put_nowait(event)


def customer_topic(call_id: str) -> tuple[str, str]:
    """The Hub topic of one call's customer page (agents' topics are their ids)."""
    return ("customer", call_id)
