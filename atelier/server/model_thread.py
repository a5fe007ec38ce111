"""The model thread: one thread runs pipeline calls one at a time, so the event loop stays free to
answer health checks, metrics and asset downloads while an image is drawn. What it runs comes
from the job runner (atelier.server.jobs.runner), in `atelier serve` or in `atelier worker`."""

from __future__ import annotations

import asyncio
import contextvars
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from atelier.server.logs import log_warning
from atelier.server.metrics import Metrics

T = TypeVar("T")


class ModelThread:
    def __init__(self, metrics: Metrics, threads: int | None = None):
        self.metrics, self.threads = metrics, threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-model",
                                            initializer=self._set_threads)
        self.depth = 0

    def _set_threads(self) -> None:
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)

    async def run(self, job: Callable[[], T]) -> T:
        """`job()`'s result, run on the model thread after the jobs queued before it."""
        self.depth += 1
        self.metrics.queue_depth.set(self.depth)

        def timed() -> T:
            begin = time.perf_counter()
            try:
                return _logging_warnings(job)
            finally:
                self.metrics.busy.inc(time.perf_counter() - begin)

        try:   # the caller's context travels with the job: its request id tags the job's warnings
            return await asyncio.wrap_future(self._executor.submit(contextvars.copy_context().run, timed))
        finally:
            self.depth -= 1
            self.metrics.queue_depth.set(self.depth)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _logging_warnings(job: Callable[[], T]) -> T:
    """`job()`, its warnings sent to the JSON log (logs.log_warning) rather than printed, each
    UserWarning every time it is raised: every request's "the prompt is empty" is logged, not
    only the process's first."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            return job()
        finally:
            for warning in caught:
                log_warning(warning.message, warning.category, warning.filename, warning.lineno)
