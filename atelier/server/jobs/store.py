"""The jobs table as a state machine: queued -> running -> succeeded | failed | canceled.

Every change is one conditional UPDATE, so any number of API servers and workers can share the
table: a job is started only from queued (or from running when its worker died and the queue
delivers it again), and finished only while running, so a job canceled while it runs stays
canceled whatever its batch does later. `attempts` counts starts: a job whose worker died twice
is failed with a message instead of being started a third time. The webhook columns change the
same way (atelier.server.jobs.webhooks claims and records each delivery here).

Functions taking a `Database` open a transaction of their own; those taking a `Session` run in the
caller's (atelier.server.stores says the same of the other tables)."""

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
from atelier.server.stores.paging import newest_first

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINAL = (SUCCEEDED, FAILED, CANCELED)
MAX_ATTEMPTS = 2       # a job is retried once after its worker dies, then failed


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"    # random, so ids cannot be guessed


def asset_path(user_id: int, asset_id: str) -> str:
    """Where a job's image is kept in storage."""
    return f"{user_id}/{asset_id}.png"


def add_queued(session: Session, job_id: str, user_id: int, key_id: int, task: str, given: dict[str, Any],
               images: int, quota_day: dt.date, idempotency_key: str | None, request_hash: str,
               webhook_url: str | None, request_id: str | None) -> Job:
    """A new queued job row (written when the caller's transaction commits)."""
    job = Job(id=job_id, user_id=user_id, key_id=key_id, task=task, input=given, status=QUEUED, progress=0.0,
              attempts=0, images=images, quota_day=quota_day, idempotency_key=idempotency_key,
              request_hash=request_hash, webhook_url=webhook_url, webhook_attempts=0, request_id=request_id)
    session.add(job)
    return job


def job_by_id(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def job_by_idempotency_key(session: Session, user_id: int, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.user_id == user_id, Job.idempotency_key == key))


def user_jobs(session: Session, user_id: int, status: str | None, before: str | None, limit: int) -> list[Job]:
    """Up to limit + 1 of the user's jobs (those with `status` if given), newest first, after the
    job `before` (a cursor: a 400 when it names none of theirs)."""
    query = select(Job).where(Job.user_id == user_id)
    if status is not None:
        query = query.where(Job.status == status)
    return newest_first(session, query, Job, user_id, before, limit, "job")


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


# --- webhook deliveries (atelier.server.jobs.webhooks) ------------------------------------------


def due_webhooks(session: Session, now: dt.datetime, limit: int) -> list[tuple[str, dt.datetime]]:
    """(job id, webhook_next) of up to `limit` pending deliveries due by `now`, the longest due first."""
    return [(job_id, due) for job_id, due in session.execute(
        select(Job.id, Job.webhook_next)
        .where(Job.webhook_status == "pending", Job.webhook_next <= now)
        .order_by(Job.webhook_next).limit(limit)).all()]


def claim_webhook(session: Session, job_id: str, seen: dt.datetime, lease: dt.datetime) -> bool:
    """Hold the job's pending delivery until `lease`, provided it is still due at `seen` (no other
    sender claimed it since); whether this caller holds it."""
    return session.execute(
        update(Job).where(Job.id == job_id, Job.webhook_status == "pending", Job.webhook_next == seen)
        .values(webhook_next=lease).execution_options(synchronize_session=False)).rowcount == 1


def record_webhook(session: Session, job_id: str, lease: dt.datetime, attempt: int, values: dict[str, Any]) -> bool:
    """Write a delivery attempt's outcome (`values`: webhook columns), provided the claim that ends
    at `lease` is still held; whether it was written."""
    return bool(session.execute(
        update(Job).where(Job.id == job_id, Job.webhook_status == "pending", Job.webhook_next == lease)
        .values(webhook_attempts=attempt, **values).execution_options(synchronize_session=False)).rowcount)
