"""The per-key rate limit: a sliding window of request times, in memory (one server process).

Kept on the app (app.state), not in a module global, so two apps in one process (the tests) never
share counts. Many processes would move this to Redis with the job queue (DESIGN.md, Scale path)."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable


class RateLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._times: dict[object, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def acquire(self, key: object) -> int:
        """0 when the request may go ahead (it is counted), else the whole seconds until it may."""
        with self._lock:
            now = self.clock()
            times = self._times[key]
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return max(1, math.ceil(times[0] + self.window - now))
            times.append(now)
            return 0
