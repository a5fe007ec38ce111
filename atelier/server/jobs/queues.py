"""The two ways a job reaches a runner, behind one `enqueue(job_id)`.

`EmbeddedQueue` (the default: `atelier serve` alone, no other process): the jobs table is the
queue; this process reads the oldest queued rows and runs them. At start it puts back the jobs
that were running when the process died, so a SIGKILL loses nothing.

`RedisQueue` (`--redis URL`): the job id is handed to SAQ (a job queue on Redis) and any number
of `atelier worker` processes take it (`serve_worker`). SAQ gives each job a heartbeat that the
worker renews while the job runs; a worker that dies stops renewing it, SAQ's sweep notices and
delivers the job again, and the table decides whether it runs (atelier.server.jobs.store.start).
Workers also hand over again, every RECONCILE_EVERY seconds, queued rows that Redis does not hold
(an API server that died between writing the row and enqueueing it, or a Redis that lost its
data): SAQ ignores a key it already holds, so this never runs a job twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from contextlib import suppress
from typing import Any, Protocol

from atelier.server.db import Database
from atelier.server.jobs import store
from atelier.server.jobs.runner import JobRunner
from atelier.server.logs import LOGGER

log = logging.getLogger(LOGGER)
QUEUE_NAME = "atelier"
DELIVERIES = 5            # SAQ's retries: the table's MAX_ATTEMPTS decides, this only leaves room for it
RECONCILE_EVERY = 10.0    # seconds


class Queue(Protocol):
    async def enqueue(self, job_id: str) -> None: ...
    async def close(self) -> None: ...


class Changes:
    """Wakes whoever waits for a job row to change (an answer waiting for its job, an event
    stream) when this process changed one; callers re-read the row and also poll, since jobs
    run in other processes too."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        self._loop = asyncio.get_running_loop()

    def notify(self) -> None:
        """Safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class EmbeddedQueue:
    def __init__(self, db: Database, runner: JobRunner, capacity: int):
        self.db, self.runner, self.capacity = db, runner, capacity
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        recovered = await asyncio.to_thread(store.requeue, self.db)   # this process was their only runner
        if recovered:
            log.warning("put %d job(s) back in the queue that were running when the server stopped: %s",
                        len(recovered), ", ".join(recovered))
        self._task = asyncio.create_task(self._dispatch())

    async def enqueue(self, job_id: str) -> None:
        self._wake.set()

    async def _dispatch(self) -> None:
        while True:
            free = self.capacity - len(self._running)
            if free > 0:
                try:
                    ids = await asyncio.to_thread(store.queued, self.db, free, list(self._running))
                except Exception:
                    log.exception("reading the job queue failed; trying again")
                    ids = []
                for job_id in ids:
                    task = asyncio.create_task(self.runner.run(job_id))
                    self._running[job_id] = task
                    task.add_done_callback(lambda done, job_id=job_id: self._finished(job_id, done))
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()

    def _finished(self, job_id: str, task: asyncio.Task) -> None:
        self._running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: %s", job_id, task.exception())
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task


class RedisQueue:
    def __init__(self, url: str, heartbeat: int):
        """`heartbeat`: seconds a running job's heartbeat lasts in SAQ (settings.job_heartbeat); the
        worker renews it every third of that."""
        from saq import Queue as SaqQueue

        self.saq, self.heartbeat = SaqQueue.from_url(url, name=QUEUE_NAME), heartbeat

    async def enqueue(self, job_id: str) -> None:
        from saq import Job as SaqJob

        await self.saq.enqueue(SaqJob("run_job", kwargs={"job_id": job_id}, key=job_id, retries=DELIVERIES,
                                      heartbeat=self.heartbeat, timeout=0))

    async def close(self) -> None:
        await self.saq.disconnect()


async def serve_worker(db: Database, queue: RedisQueue, runner: JobRunner, capacity: int, grace: float,
                       stop: asyncio.Event | None = None, sweep_every: float = 2.0) -> None:
    """An `atelier worker`: take jobs from Redis until SIGTERM or SIGINT (or `stop`). Then it takes
    no more, lets the running batch finish for `grace` seconds (else stops it between two steps),
    and hands every job it held back to the queue before it exits."""
    import signal

    from saq import Worker as SaqWorker

    async def run_job(context: dict[str, Any], *, job_id: str) -> None:
        delivery = context["job"]

        async def beat() -> None:
            while True:
                await asyncio.sleep(queue.heartbeat / 3)
                await delivery.update()

        heartbeat = asyncio.create_task(beat())
        try:
            await runner.run(job_id)
        finally:
            heartbeat.cancel()

    async def reconcile() -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY)
            try:
                for job_id in await asyncio.to_thread(store.stale, db, dt.timedelta(seconds=RECONCILE_EVERY)):
                    await queue.enqueue(job_id)
            except Exception:
                log.exception("handing queued jobs to Redis again failed; trying again")

    class Worker(SaqWorker):
        SIGNALS = []      # ours below: the runner must stop before SAQ cancels what it runs

    worker = Worker(queue.saq, functions=[("run_job", run_job)], concurrency=capacity,
                    timers={"sweep": max(1, round(sweep_every))}, shutdown_grace_period_s=int(grace) + 5)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    requeued: list[str] = []

    async def stop_when_asked() -> None:
        await stop.wait()
        log.info("stopping: finishing or putting back the running jobs (up to %g s)", grace)
        requeued.extend(await runner.close(grace))
        worker.event.set()

    tasks = [asyncio.create_task(reconcile()), asyncio.create_task(stop_when_asked())]
    try:
        await worker.start()
    finally:
        for task in tasks:
            task.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        for job_id in requeued:
            await queue.enqueue(job_id)
        if requeued:
            log.info("put %d job(s) back in the queue: %s", len(requeued), ", ".join(requeued))
