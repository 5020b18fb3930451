"""What the calls of one node need from the others: where a live call's media is, and word of a node that died.

One node has no cluster (``None`` in ``Services``). Several share one through Redis (``cluster.nodes``): the
node that takes a call's media *claims* it, releases it when it ends, and the web edge asks ``locate`` to send a
call's requests to its owner. When a node dies (or this one restarts), its calls are handed to ``on_lost``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol


class Cluster(Protocol):
    node_id: str
    url: str  # where the other nodes reach this one
    presence: Mapping[str, dict]  # the other live nodes' shares (``share``), as each said at its last heartbeat

    async def start(self, on_lost: Callable[[list[str], str], Awaitable[None]]) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raises when the cluster's coordination (Redis) cannot be reached."""

    async def claim(self, call_id: str) -> None: ...
    async def release(self, call_id: str) -> None: ...
    def share(self, snapshot: Callable[[], dict]) -> None:
        """Tell the other nodes ``snapshot()`` at every heartbeat: the agents' presence the queues route by."""

    async def locate(self, call_id: str) -> str | None:
        """The URL of the other live node holding this call's media; None when it is this node, or none."""
