"""Rate limits every node shares: ``calls.limits.Throttle``'s rule, kept in Redis and applied by one script.

A guesser spread over the nodes behind a load balancer meets one limit, not one per node. Each decision is one
Lua script, which Redis runs alone, so a concurrent burst across nodes is held to the limit as one node holds
its own; time is Redis's clock, the same for every node. Keys expire once nothing about them can matter.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

# KEYS: state hash, attempts zset. ARGV: window, limit, lockout, max lockout, a unique member, keep (s).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local locked = tonumber(redis.call('HGET', KEYS[1], 'locked') or '0')
if locked > now then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[2], now, ARGV[5])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  local n = tonumber(redis.call('HGET', KEYS[1], 'lockouts') or '0')
  local wait = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ n)
  redis.call('HSET', KEYS[1], 'locked', tostring(now + wait), 'lockouts', n + 1)
  redis.call('DEL', KEYS[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""

_RETRY_AFTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local locked = tonumber(redis.call('HGET', KEYS[1], 'locked') or '0')
return tostring(math.max(0, locked - now))
"""


class RedisThrottle:
    """``calls.limits.Throttle`` across nodes: the same ``take``/``retry_after``/``refund``/``forgive``."""

    def __init__(
        self, redis: Redis, name: str, limit: int, window: float, *, lockout: float, max_lockout: float = 3600.0
    ) -> None:
        self.redis, self.name = redis, name
        self.limit, self.window, self.lockout, self.max_lockout = limit, window, lockout, max_lockout
        self._take = redis.register_script(_TAKE)
        self._retry_after = redis.register_script(_RETRY_AFTER)
        self._keep = int(max(window, 2 * max_lockout))

    def _keys(self, key: str) -> list[str]:
        base = f"voxgate:throttle:{self.name}:{key}"
        return [base, f"{base}:attempts"]

    async def take(self, key: str) -> bool:
        args = [self.window, self.limit, self.lockout, self.max_lockout, uuid.uuid4().hex, self._keep]
        return bool(await self._take(keys=self._keys(key), args=args))

    async def retry_after(self, key: str) -> float:
        return float(await self._retry_after(keys=self._keys(key)))

    async def refund(self, key: str) -> None:
        await self.redis.zpopmax(self._keys(key)[1])

    async def forgive(self, key: str) -> None:
        await self.redis.delete(*self._keys(key))
