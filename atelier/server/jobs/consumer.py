"""`atelier worker --redis URL`: a process that runs the jobs API servers queue on Redis.

Start any number of them, on this machine or others that share the server's database and asset
storage (the --data folder). Each loads the model once, takes up to 2 x max_batch jobs at a time
from Redis so that compatible ones run as one batch, sends the webhooks of the jobs it finishes,
and on SIGTERM stops taking jobs, gives a running batch settings.shutdown_grace seconds and puts
back in the queue whatever it did not finish."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from atelier.server.config import ServerSettings
from atelier.server.db import Database
from atelier.server.logs import LOGGER
from atelier.server.metrics import Metrics
from atelier.server.model_thread import ModelThread
from atelier.server.storage import LocalStorage

log = logging.getLogger(LOGGER)


def run_worker(settings: ServerSettings, name: str | None = None) -> None:
    if not settings.redis:
        raise SystemExit("error: atelier worker needs --redis URL (or redis in the config, or $ATELIER_REDIS): the "
                         "queue it takes jobs from")
    asyncio.run(_work(settings, name or f"worker-{socket.gethostname()}-{os.getpid()}"))


async def _work(settings: ServerSettings, name: str) -> None:
    import torch

    from atelier.pipeline import Atelier
    from atelier.server.app import webhook_sender
    from atelier.server.jobs.queues import Changes, RedisQueue, serve_worker
    from atelier.server.jobs.runner import JobRunner
    from atelier.server.limits import RateLimiter
    from atelier.server.state import Services

    torch.set_num_threads(settings.threads)
    db = Database(settings.database_url)
    await asyncio.to_thread(db.migrate)
    model = ModelThread(Metrics(), settings.threads)
    pipeline = await model.run(lambda: Atelier.from_pretrained(settings.model))
    services = Services(settings=settings, db=db, storage=LocalStorage(settings.data / "assets"),
                        limiter=RateLimiter(1, 1.0), metrics=model.metrics, model_thread=model,
                        secret=settings.signing_secret(), changes=Changes(), pipeline=pipeline)
    queue = RedisQueue(settings.redis, settings.job_heartbeat)
    runner = JobRunner(db, services.storage, pipeline, model, name, settings.max_batch,
                       batch_wait=settings.batch_wait)
    stop_webhooks = asyncio.Event()
    webhooks = asyncio.create_task(webhook_sender(services).run(stop_webhooks))
    log.info("worker %s ready: model %s, queue %s, data in %s", name, pipeline.name, settings.redis, settings.data)
    try:
        await serve_worker(db, queue, runner, capacity=2 * settings.max_batch, grace=settings.shutdown_grace)
    finally:
        stop_webhooks.set()
        await webhooks
        await queue.close()
        model.close()
        db.close()
        log.info("worker %s stopped", name)
