"""Rate limits that hold per client address."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable


class GuessLimiter:
    """Failed guesses (unknown link tokens, wrong passwords) per client in a sliding window."""

    def __init__(self, limit: int = 20, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, who: str) -> bool:
        q = self._fails[who]
        while q and q[0] < self.clock() - self.window:
            q.popleft()
        return len(q) >= self.limit

    def fail(self, who: str) -> None:
        self._fails[who].append(self.clock())
