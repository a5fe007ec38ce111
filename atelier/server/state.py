"""The app's state: `Services`, what the routers need (settings, database, storage, limiter,
metrics, the model and its model thread, the job queue), made by the app factory and kept on
app.state, so nothing lives in module globals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from atelier.server.config import ServerSettings
from atelier.server.db import Database
from atelier.server.jobs.queues import Changes, Queue
from atelier.server.limits import RateLimiter, RedisRateLimiter
from atelier.server.metrics import Metrics
from atelier.server.model_thread import ModelThread
from atelier.server.storage import Storage


@dataclass
class Services:
    settings: ServerSettings
    db: Database
    storage: Storage
    limiter: RateLimiter | RedisRateLimiter
    metrics: Metrics
    model_thread: ModelThread
    secret: bytes = field(repr=False)
    changes: Changes
    # limits of their own: publish, like, report (per user an hour), login and signup (per address)
    actions: dict[str, RateLimiter | RedisRateLimiter] = field(default_factory=dict)
    pipeline: Any = None        # atelier.pipeline.Atelier, set once the lifespan has loaded it
    queue: Queue | None = None  # set by the lifespan: embedded, or Redis with --redis

    def model_sizes(self) -> list[str]:
        return [f"{side}x{side}" for side in self.pipeline.sizes]
