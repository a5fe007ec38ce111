"""`JobRunner`: runs jobs on the model thread, compatible ones together.

Jobs handed to `run` wait in a list while the model is busy; when it is free, the oldest waiting
job and up to `max_batch - 1` others with the same batch key (atelier.server.jobs.tasks) go into
one pipeline call (the dynamic batching of inference servers such as Triton). A job that finds
the model free starts at once, unless more jobs were in hand (running or waiting) at some point
of the last batch than are waiting now: then the load is concurrent and the other requests are
on their way, so the batch waits up to `batch_wait` seconds for that many. Without that, under
steady load a batch starts with the first few answers' next requests and the rest wait a whole
batch for the next one (measured: 8 clients made batches of 7 and 1).
Progress is written to the job rows at most every PROGRESS_EVERY seconds; a row found canceled
then is dropped from its batch, and a batch with no job left stops at that step. On `close` the
runner lets a running batch finish for `grace` seconds, then stops it at its next step and puts
its jobs back in the queue."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from atelier.pipeline.inputs import ImageInputError
from atelier.server.db import Database
from atelier.server.jobs import store
from atelier.server.jobs.tasks import TASKS
from atelier.server.logs import JOB_ID, LOGGER, REQUEST_ID
from atelier.server.model_thread import ModelThread
from atelier.server.models import Job
from atelier.server.storage import Storage

log = logging.getLogger(LOGGER)
PROGRESS_EVERY = 0.2     # seconds between progress writes of a batch


class Stopped(Exception):
    """Raised from the sampling callback to stop a batch between two steps."""


@dataclass
class _Waiting:
    job: Job
    key: Any
    done: asyncio.Future = field(repr=False)


class JobRunner:
    def __init__(self, db: Database, storage: Storage, pipeline: Any, model: ModelThread, worker_id: str,
                 max_batch: int = 8, on_change: Callable[[], None] = lambda: None, batch_wait: float = 0.25):
        self.db, self.storage, self.pipeline, self.model = db, storage, pipeline, model
        self.worker_id, self.max_batch, self.on_change, self.batch_wait = worker_id, max_batch, on_change, batch_wait
        self._demand, self._running = 1, 0     # most jobs in hand during the last batch; its size
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._stopping, self._deadline = False, float("inf")
        self._loop: asyncio.Task | None = None
        self.batches: deque[int] = deque(maxlen=1000)      # the sizes of the last batches run, for the tests

    async def run(self, job_id: str) -> None:
        """Run the job, if it is still to be run, and return once it has ended here."""
        if self._stopping:
            raise RuntimeError("the runner is stopping")
        job = await asyncio.to_thread(store.pending, self.db, job_id)
        if job is None:
            return
        try:
            key = await asyncio.to_thread(TASKS[job.task].batch_key, self.pipeline, job.input)
        except (ValueError, ImageInputError) as error:
            if await asyncio.to_thread(store.start, self.db, job.id, self.worker_id):
                await asyncio.to_thread(store.fail, self.db, job.id, "invalid_value", str(error))
            self.on_change()
            return
        waiting = _Waiting(job, ("alone", job.id) if key is None else key,
                           asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._demand = max(self._demand, self._running + len(self._waiting))
        self._wake.set()
        if self._loop is None:
            self._loop = asyncio.create_task(self._serve())
        await waiting.done

    async def _serve(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting and not self._stopping:
                first = self._waiting[0]
                await self._gather(first.key)
                batch = [item for item in self._waiting if item.key == first.key][: self.max_batch]
                for item in batch:
                    self._waiting.remove(item)
                self._running = len(batch)
                self._demand = self._running + len(self._waiting)
                try:
                    # marked running only now, as its batch starts: one canceled while it waited is dropped
                    jobs = await asyncio.to_thread(self._start, [item.job.id for item in batch])
                    self.on_change()
                    if jobs:
                        await self.model.run(lambda jobs=jobs: self._run_batch(jobs))
                except BaseException as error:     # the model thread itself failed: no job may hang on it
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(error)
                    if isinstance(error, asyncio.CancelledError):
                        raise
                else:
                    for item in batch:
                        item.done.set_result(None)
                finally:
                    self._running = 0

    async def _gather(self, key: Any) -> None:
        """Wait up to batch_wait for as many jobs as were in hand during the last batch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_wait
        target = min(self.max_batch, self._demand)
        while sum(item.key == key for item in self._waiting) < target and not self._stopping:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._wake.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _start(self, job_ids: list[str]) -> list[Job]:
        return [job for job_id in job_ids if (job := store.start(self.db, job_id, self.worker_id)) is not None]

    def _run_batch(self, jobs: list[Job]) -> None:
        """On the model thread: one pipeline call for `jobs`, their rows updated as it goes."""
        task = TASKS[jobs[0].task]
        ids = [job.id for job in jobs]
        REQUEST_ID.set(jobs[0].request_id if len(jobs) == 1 else None)   # this thread's context copy only
        JOB_ID.set(",".join(ids))
        live, last = set(ids), 0.0
        self.batches.append(len(jobs))
        self.model.metrics.batch_size.observe(len(jobs))

        def report(done: int, total: int) -> None:
            nonlocal live, last
            now = time.monotonic()
            if now >= self._deadline:      # stopping, and the grace is over (infinite until close)
                raise Stopped
            if now - last >= PROGRESS_EVERY or done == total:
                last = now
                live = store.progress(self.db, [job_id for job_id in ids if job_id in live], done / total)
                self.on_change()
                if not live:
                    raise Stopped

        try:
            outputs = task.run(self.pipeline, [job.input for job in jobs], self.storage, report)
        except Stopped:
            return
        except (ValueError, ImageInputError) as error:      # a setting or an image the pipeline refuses
            for job_id in ids:
                store.fail(self.db, job_id, "invalid_value", str(error))
        except Exception:
            log.exception("job batch %s failed", ", ".join(ids))
            for job_id in ids:
                store.fail(self.db, job_id, "internal_error", "the job failed on the server; the error is in "
                                                              "the server's log")
        else:
            for job_id, images in zip(ids, outputs):
                store.succeed(self.db, self.storage, job_id, images)
        finally:
            self.on_change()

    async def close(self, grace: float) -> list[str]:
        """Stop: jobs not started go back to the queue at once; a running batch gets `grace`
        seconds to finish, then is stopped at its next step and its jobs go back too. The ids
        put back in the queue."""
        self._stopping, self._deadline = True, time.monotonic() + grace
        for item in self._waiting:
            if not item.done.done():
                item.done.set_result(None)
        self._waiting.clear()
        if self._loop is not None:
            self._wake.set()
            with suppress(asyncio.TimeoutError, asyncio.CancelledError):   # a step longer than 30 s: give up on it
                await asyncio.wait_for(asyncio.shield(self._loop), timeout=grace + 30)
        return await asyncio.to_thread(store.requeue, self.db, self.worker_id, False)
