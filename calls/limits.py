"""Limits that hold under concurrency: guesses per client or account, and live calls per server and per agent.

Both take their place *before* the work they guard (a password check, a WebRTC
negotiation) and in one synchronous step on the event loop, so a burst of
concurrent requests cannot all pass a check made before any of them counted.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from store.errors import AtCapacity


class Limiter(Protocol):
    """Attempts per key: this node's ``Throttle``, or one the nodes share (``cluster.throttle``)."""

    async def take(self, key: str) -> bool: ...
    async def retry_after(self, key: str) -> float: ...
    async def refund(self, key: str) -> None: ...
    async def forgive(self, key: str) -> None: ...


# name, limit, window, lockout -> a limiter (the composition root picks this node's or the shared kind)
Limiters = Callable[[str, int, float, float], Limiter]


@dataclass
class _Key:
    attempts: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    lockouts: int = 0  # lockouts so far: each doubles the next one


class Throttle:
    """At most ``limit`` attempts per key in a sliding ``window``; past it the key is locked out, for ``lockout``
    seconds doubled at each further lockout (up to ``max_lockout``), until an attempt succeeds.

    ``take`` reserves an attempt before it is checked; ``refund`` gives it back when it succeeded (a right
    password does not count against its address), ``forgive`` forgets the key's failures and back-off (its
    owner proved who they are). Keys are bounded in number: the oldest are forgotten first, so
    a flood of made-up names cannot grow memory. The methods are coroutines only to share ``Limiter``'s shape:
    none awaits, so each is still one step on the event loop.
    """

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        lockout: float = 60.0,
        max_lockout: float = 3600.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.lockout, self.max_lockout = limit, window, lockout, max_lockout
        self.max_keys, self.clock = max_keys, clock
        self._keys: OrderedDict[str, _Key] = OrderedDict()

    async def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: it may now)."""
        state = self._keys.get(key)
        return max(0.0, state.locked_until - self.clock()) if state else 0.0

    async def take(self, key: str) -> bool:
        """Reserve an attempt for ``key``; False (and nothing counted) when it is locked out. The attempt that
        fills the window is allowed and locks the key for the next ones."""
        now, state = self.clock(), self._state(key)
        if state.locked_until > now:
            return False
        while state.attempts and state.attempts[0] <= now - self.window:
            state.attempts.popleft()
        state.attempts.append(now)
        if len(state.attempts) >= self.limit:
            state.locked_until = now + min(self.max_lockout, self.lockout * 2**state.lockouts)
            state.lockouts += 1
            state.attempts.clear()
        return True

    async def refund(self, key: str) -> None:
        if (state := self._keys.get(key)) is not None and state.attempts:
            state.attempts.pop()

    async def forgive(self, key: str) -> None:
        self._keys.pop(key, None)

    def _state(self, key: str) -> _Key:
        state = self._keys.pop(key, None) or _Key()
        self._keys[key] = state  # most recently used last
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return state


def local_limiters(name: str, limit: int, window: float, lockout: float) -> Limiter:
    """``Limiters`` for one node: each limit held in this process."""
    return Throttle(limit, window, lockout=lockout)


class CallSlots:
    """Live calls per server and per agent, counted from the moment a call is admitted (before its media is
    negotiated) until it ends: the check and the count are one step, so concurrent offers cannot all pass."""

    def __init__(self, total: int, per_agent: int) -> None:
        self.total, self.per_agent = total, per_agent
        self._held: Counter[int] = Counter()

    def take(self, agent_id: int, agent_name: str = "your agent") -> Slot:
        if sum(self._held.values()) >= self.total:
            raise AtCapacity("the server is at its limit of live calls; please try again shortly")
        if self._held[agent_id] >= self.per_agent:
            raise AtCapacity(f"{agent_name} has too many live calls; please try again shortly")
        self._held[agent_id] += 1
        return Slot(self, agent_id)

    def held(self, agent_id: int | None = None) -> int:
        return sum(self._held.values()) if agent_id is None else self._held[agent_id]

    def _release(self, agent_id: int) -> None:
        self._held[agent_id] -= 1
        if self._held[agent_id] <= 0:
            del self._held[agent_id]


class Slot:
    """One admitted call's place; ``release`` is idempotent, so every way a call can end may call it."""

    def __init__(self, slots: CallSlots, agent_id: int) -> None:
        self._slots, self._agent_id, self._held = slots, agent_id, True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self._agent_id)
