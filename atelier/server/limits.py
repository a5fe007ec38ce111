"""The per-key rate limit: a sliding window of request times, either in memory (`RateLimiter`, one
server process) or in Redis (`RedisRateLimiter`, any number of API servers sharing one count).

Both keep the same contract, `acquire(key) -> Allowance` and `close()`, so either can sit on the app
(app.state), never in a module global: two apps in one process (the tests) never share counts.
An Allowance carries what OpenAI's x-ratelimit-*-requests headers tell a client (remaining, reset)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Allowance:
    wait: int           # 0: the request may go ahead (it is counted); else whole seconds until one may
    limit: int          # requests per window
    remaining: int      # requests left in the window, this one counted
    reset: float        # seconds until the window is empty again, so `limit` requests are left


class RateLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._times: dict[object, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def acquire(self, key: object) -> Allowance:
        """Counts the request if the window has room (wait 0), else says how long to wait."""
        with self._lock:
            now = self.clock()
            times = self._times[key]
            while times and times[0] <= now - self.window:
                times.popleft()
            wait = max(1, math.ceil(times[0] + self.window - now)) if len(times) >= self.limit else 0
            if not wait:
                times.append(now)
            return Allowance(wait, self.limit, self.limit - len(times), times[-1] + self.window - now)

    def close(self) -> None:
        """Nothing to release; here so the in-memory and Redis limiters are interchangeable."""


# One sorted set per key, members scored by their request time in microseconds of the Redis server's
# clock (TIME), so API servers with skewed clocks agree. One script, so the trim, count and add are
# atomic across every process. Microseconds since 1970 (~1.8e15) are exact in Lua's doubles.
# KEYS[1]: the key's set; ARGV: limit, window in microseconds, a member unique to this request.
# Returns {wait in whole seconds (0: counted), requests in the window, microseconds until it is empty}.
_ACQUIRE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local wait = 0
if redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
else
    local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
    wait = math.max(1, math.ceil((oldest + window - now) / 1000000))
end
local newest = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
return {wait, redis.call('ZCARD', KEYS[1]), newest + window - now}
"""


class LimiterUnavailable(RuntimeError):
    pass


class RedisRateLimiter:
    """The same sliding window as `RateLimiter`, kept in Redis so that every API server counts against
    one limit. Synchronous client: acquire is called from a sync dependency (deps.identify)."""

    def __init__(self, url: str, limit: int, window: float, prefix: str = "atelier:ratelimit:"):
        import redis  # imported here: a server without Redis never pays for it

        self.limit, self.window, self.prefix = limit, window, prefix
        self._window_us = max(1, round(window * 1_000_000))
        self._client = redis.Redis.from_url(url)
        self._acquire = self._client.register_script(_ACQUIRE)

    def acquire(self, key: object) -> Allowance:
        """As RateLimiter.acquire; LimiterUnavailable when Redis cannot be asked (the server answers
        503, never lets it pass)."""
        import redis

        try:
            wait, count, reset_us = self._acquire(keys=[f"{self.prefix}{key}"],
                                                  args=[self.limit, self._window_us, uuid.uuid4().hex])
        except redis.RedisError as error:
            raise LimiterUnavailable(f"the rate limit's store (Redis) cannot be reached: {error}") from error
        return Allowance(int(wait), self.limit, self.limit - int(count), int(reset_us) / 1_000_000)

    def close(self) -> None:
        self._client.close()
