"""The jobs table as a state machine: queued -> running -> succeeded | failed | canceled.

Every change is one conditional UPDATE, so any number of API servers and workers can share the
table: a job is started only from queued (or from running when its worker died and the queue
delivers it again), and finished only while running, so a job canceled while it runs stays
canceled whatever its batch does later. `attempts` counts starts: a job whose worker died twice
is failed with a message instead of being started a third time."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from atelier.pipeline.metadata import png_bytes
from atelier.server.db import Database
from atelier.server.models import Asset, Job, utcnow
from atelier.server.quota import refund
from atelier.server.storage import Storage

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINAL = (SUCCEEDED, FAILED, CANCELED)
MAX_ATTEMPTS = 2       # a job is retried once after its worker dies, then failed


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"    # random, so ids cannot be guessed


def asset_path(user_id: int, asset_id: str) -> str:
    """Where a job's image is kept in storage."""
    return f"{user_id}/{asset_id}.png"


def start(db: Database, job_id: str, worker: str) -> Job | None:
    """Mark the job running on `worker` and return it, or None when it is not to be run: finished,
    canceled, unknown, or failed here because its workers died MAX_ATTEMPTS times."""
    now = utcnow()
    with db.session() as session:
        started = session.execute(
            update(Job).where(Job.id == job_id, Job.status.in_((QUEUED, RUNNING)))
            .values(status=RUNNING, attempts=Job.attempts + 1, worker=worker, heartbeat=now, started=now,
                    progress=0.0)).rowcount
        if not started:
            return None
        job = session.get(Job, job_id)
        if job.attempts <= MAX_ATTEMPTS:
            return job
        job.attempts -= 1     # this delivery did not run it
        session.flush()
        _end(session, job_id, FAILED, (RUNNING,), error={
            "code": "worker_lost", "message": f"the worker running this job stopped before it finished, "
                                              f"{MAX_ATTEMPTS} times; it is not tried again"})
        return None


def pending(db: Database, job_id: str) -> Job | None:
    """The job if it is still to be run: queued, or running on a worker that died (its queue
    delivers it again); None when it has ended or does not exist."""
    with db.session() as session:
        job = session.get(Job, job_id)
        return job if job is not None and job.status in (QUEUED, RUNNING) else None


def queued(db: Database, limit: int, exclude: Iterable[str] = ()) -> list[str]:
    """The ids of the oldest queued jobs, first come first served."""
    with db.session() as session:
        return list(session.scalars(select(Job.id).where(Job.status == QUEUED, Job.id.not_in(list(exclude)))
                                    .order_by(Job.created, Job.id).limit(limit)))


def requeue(db: Database, worker: str | None = None, crashed: bool = True) -> list[str]:
    """Put running jobs back in the queue: those of `worker` (all when None). After a crash their
    start counts as an attempt; after a graceful stop (crashed=False) it does not."""
    with db.session() as session:
        condition = [Job.status == RUNNING] + ([Job.worker == worker] if worker is not None else [])
        ids = list(session.scalars(select(Job.id).where(*condition)))
        if ids:
            session.execute(update(Job).where(Job.id.in_(ids), Job.status == RUNNING).values(
                status=QUEUED, worker=None, progress=0.0,
                attempts=Job.attempts if crashed else Job.attempts - 1))
        return ids


def progress(db: Database, job_ids: Sequence[str], fraction: float) -> set[str]:
    """Record progress (and a heartbeat) for the jobs still running; their ids. A job canceled
    meanwhile is missing from the answer, which is how a running batch learns of it."""
    with db.session() as session:
        session.execute(update(Job).where(Job.id.in_(list(job_ids)), Job.status == RUNNING)
                        .values(progress=fraction, heartbeat=utcnow()))
        return set(session.scalars(select(Job.id).where(Job.id.in_(list(job_ids)), Job.status == RUNNING)))


def succeed(db: Database, storage: Storage, job_id: str, images: list[Image.Image]) -> bool:
    """Store the images as the job's user's assets and mark the job succeeded; False (nothing
    stored) when the job is no longer running (canceled meanwhile)."""
    with db.session() as session:
        job = _end(session, job_id, SUCCEEDED, (RUNNING,))
        if job is None:
            return False
        assets, infos = [], []
        for image in images:
            info = image.info["atelier"]
            asset = Asset(id=new_id("img"), user_id=job.user_id, kind=info.task, info=info.to_dict(), job_id=job.id)
            asset.path = asset_path(job.user_id, asset.id)
            storage.put(asset.path, png_bytes(image, info))
            session.add(asset)
            assets.append(asset.id)
            infos.append(asset.info)
        job.result = {"assets": assets, "metadata": infos}
        return True


def fail(db: Database, job_id: str, code: str, message: str) -> bool:
    with db.session() as session:
        return _end(session, job_id, FAILED, (RUNNING,), error={"code": code, "message": message}) is not None


def cancel(session: Session, job_id: str, user_id: int) -> Job | None:
    """Cancel the user's queued or running job now (a running one's batch drops it at its next
    step); None when there is no such job still to end."""
    return _end(session, job_id, CANCELED, (QUEUED, RUNNING), user_id=user_id,
                error={"code": "canceled", "message": "the job was canceled by its owner"})


def _end(session: Session, job_id: str, status: str, from_statuses: tuple[str, ...], user_id: int | None = None,
         error: dict[str, Any] | None = None) -> Job | None:
    """The one way a job reaches a final status, by a conditional UPDATE first (SQLite's write lock
    is taken before anything is read, and a job ends once): its unused images go back to the
    key's quota and its webhook, if any, is scheduled (atelier.server.jobs.webhooks delivers it)."""
    now = utcnow()
    condition = [Job.id == job_id, Job.status.in_(from_statuses)] + ([Job.user_id == user_id] if user_id else [])
    values: dict[str, Any] = {"status": status, "error": error, "finished": now}
    if status == SUCCEEDED:
        values["progress"] = 1.0
    if not session.execute(update(Job).where(*condition).values(**values)).rowcount:
        return None
    job = session.get(Job, job_id)
    if status != SUCCEEDED:
        refund(session, job.key_id, job.quota_day, job.images)
    if job.webhook_url:
        job.webhook_status, job.webhook_attempts, job.webhook_next = "pending", 0, now
    return job


def stale(db: Database, older_than: dt.timedelta) -> list[str]:
    """Queued jobs older than `older_than`: those a queue may have lost (an API server that died
    between writing the job and handing it to Redis), for the workers to hand over again."""
    with db.session() as session:
        return list(session.scalars(select(Job.id).where(Job.status == QUEUED,
                                                         Job.created < utcnow() - older_than)
                                    .order_by(Job.created).limit(1000)))
