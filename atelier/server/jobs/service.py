"""What the routers do with jobs: create one (checked, quota reserved, inputs stored, then queued),
wait for one, and show one as JSON. The images endpoints use the same calls as /v1/jobs, so an
image request is a job like any other, as durable and as visible."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from atelier.pipeline.inputs import ImageInputError
from atelier.server.accounts import Principal
from atelier.server.errors import APIError, describe_validation
from atelier.server.jobs import store
from atelier.server.jobs.tasks import FILES, IMAGE_FIELDS, TASKS, open_inputs, store_images
from atelier.server.logs import LOGGER, REQUEST_ID
from atelier.server.models import Job, unix_seconds
from atelier.server.quota import reserve
from atelier.server.signing import sign
from atelier.server.state import Services
from atelier.server.stores import assets

log = logging.getLogger(LOGGER)
POLL = 0.25          # seconds between reads of a job another process runs


def validate_input(task: str, given: dict[str, Any], services: Services) -> dict[str, Any]:
    """The task's input checked against its schema and the served model, as plain JSON."""
    try:
        checked = TASKS[task].schema.model_validate(given).model_dump(exclude_none=True)
    except ValidationError as error:
        message, param, code = describe_validation(error.errors(include_url=False))
        raise APIError(400, message, f"input.{param}" if param else "input", code) from None
    for name in ("prompt", "negative_prompt"):
        check_prompt(checked.get(name, ""), services, name, f"input.{name}")
    parse_size(checked.get("size"), services, "input.size")
    return checked


def check_prompt(text: str, services: Services, name: str, param: str | None = None) -> None:
    """A 400 for a prompt over the server's max_prompt_chars."""
    limit = services.settings.max_prompt_chars
    if len(text) > limit:
        raise APIError(400, f"the {name.replace('_', ' ')} is {len(text)} characters long; at most {limit} are "
                            f"accepted", param or name, "string_above_max_length")


def parse_size(size: str | None, services: Services, param: str = "size") -> int | None:
    """The square side a `WxH` size names, or a 400 naming the sizes the model makes."""
    if size is None:
        return None
    allowed = services.model_sizes()
    if size not in allowed:
        raise APIError(400, f"size '{size}' is not supported by model '{services.pipeline.name}'; allowed sizes: "
                            f"{', '.join(allowed)}", param, "invalid_size")
    return int(size.split("x")[0])


def create(services: Services, principal: Principal, task: str, given: dict[str, Any], *,
           pictures: tuple[Any, Any] | None = None, idempotency_key: str | None = None,
           webhook_url: str | None = None) -> tuple[Job, bool]:
    """Write a queued job (in a thread: it reads images and the database); (job, created). With
    an idempotency key already used by this user for the same request, that job and False; for
    another request, a 409. `pictures` (picture, region) are images already read (the
    multipart endpoints); otherwise they are read from the input's asset ids or base64."""
    request_hash = hashlib.sha256(json.dumps([task, given, webhook_url], sort_keys=True).encode()).hexdigest()
    if idempotency_key is not None:
        with services.db.session() as session:
            earlier = _by_idempotency_key(session, principal.user_id, idempotency_key, request_hash)
        if earlier is not None:
            return earlier, False
    job_id = store.new_id("job")
    if pictures is None and "image" in given:
        try:
            pictures = open_inputs(task, given, lambda asset_id: read_asset(services, principal, asset_id))
        except ImageInputError as error:
            raise APIError(400, str(error), "input.image", "invalid_image") from None
    shown = dict(given)
    if pictures is not None:
        shown[FILES] = store_images(services.storage, principal.user_id, job_id, *pictures)
        for name in IMAGE_FIELDS:
            if name in shown and not str(shown[name]).startswith("img_"):
                shown[name] = "(uploaded)"
    images = given.get("n", 1)
    created = False
    try:
        job, created = _write(services, principal, job_id, task, shown, images, idempotency_key, request_hash,
                              webhook_url)
        return job, created
    finally:
        if not created:        # no job of ours, so no one will read them
            for key in shown.get(FILES, {}).values():
                services.storage.delete(key)


def _write(services: Services, principal: Principal, job_id: str, task: str, shown: dict[str, Any], images: int,
           idempotency_key: str | None, request_hash: str, webhook_url: str | None) -> tuple[Job, bool]:
    try:
        with services.db.session() as session:
            day = reserve(session, principal.key_id, images, services.settings.daily_quota)
            job = store.add_queued(session, job_id, principal.user_id, principal.key_id, task, shown, images, day,
                                   idempotency_key, request_hash, webhook_url, REQUEST_ID.get())
    except IntegrityError:     # the same key sent twice at once: the other request made the job
        with services.db.session() as session:
            earlier = _by_idempotency_key(session, principal.user_id, idempotency_key, request_hash)
        if earlier is None:
            raise
        return earlier, False
    return job, True


async def enqueue(services: Services, job_id: str) -> None:
    """Hand the written job to the queue. If that fails (Redis is down) the job is still written,
    so the answer is still 202: the workers hand queued rows over again (queues.RECONCILE_EVERY)."""
    try:
        await services.queue.enqueue(job_id)
    except Exception:
        log.exception("job %s is written but could not be queued now; a worker will queue it again", job_id)


def _by_idempotency_key(session, user_id: int, key: str, request_hash: str) -> Job | None:
    job = store.job_by_idempotency_key(session, user_id, key)
    if job is not None and job.request_hash != request_hash:
        raise APIError(409, f"the Idempotency-Key '{key}' was used for a different request (job {job.id}); use "
                            f"a new key for a new request", "Idempotency-Key", "idempotency_key_reused")
    return job


def read_asset(services: Services, principal: Principal, asset_id: str) -> bytes:
    with services.db.session() as session:
        asset = assets.asset_by_id(session, asset_id)
        if asset is None or asset.user_id != principal.user_id:
            raise ImageInputError(f"no asset {asset_id} of yours")
        path = asset.path
    return services.storage.get(path)


def get(services: Services, job_id: str, user_id: int) -> Job:
    """The user's job, or the same 404 for another user's job as for none."""
    with services.db.session() as session:
        job = store.job_by_id(session, job_id)
    if job is None or job.user_id != user_id:
        raise APIError(404, f"No job {job_id}", "job_id", "not_found")
    return job


async def wait(services: Services, job_id: str, user_id: int, timeout: float | None) -> Job:
    """The job once it has ended, or as it is after `timeout` seconds (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = await asyncio.to_thread(get, services, job_id, user_id)
        left = None if deadline is None else deadline - time.monotonic()
        if job.status in store.FINAL or (left is not None and left <= 0):
            return job
        await services.changes.wait(POLL if left is None else min(POLL, left))


def render(job: Job, services: Services, base: str) -> dict[str, Any]:
    """A job as the API shows it; its images as signed links with their generation metadata
    (seed, steps, ...; None for jobs finished before it was kept)."""
    output = None
    if job.result is not None:
        infos = job.result.get("metadata") or [None] * len(job.result.get("assets", []))
        output = {"images": [{"id": asset_id, "url": asset_url(services, base, asset_id), "metadata": info}
                             for asset_id, info in zip(job.result.get("assets", []), infos)]}
    return {
        "id": job.id, "object": "job", "task": job.task, "status": job.status, "progress": round(job.progress, 4),
        "input": {name: value for name, value in job.input.items() if name != FILES},
        "output": output, "error": job.error, "attempts": job.attempts,
        "created": unix_seconds(job.created), "started": unix_seconds(job.started),
        "finished": unix_seconds(job.finished),
        "webhook": None if not job.webhook_url else {
            "url": job.webhook_url, "status": job.webhook_status, "attempts": job.webhook_attempts,
            "error": job.webhook_error},
    }


def base_url(request, services: Services) -> str:
    """Where links point: settings.public_url behind a proxy, else the address the request came to."""
    return services.settings.public_url or str(request.base_url)


def asset_url(services: Services, base: str, asset_id: str) -> str:
    """A link to the asset that works without the key until it expires (settings.url_ttl)."""
    expires = int(time.time()) + services.settings.url_ttl
    return (f"{base.rstrip('/')}/v1/assets/{asset_id}?expires={expires}"
            f"&signature={sign(services.secret, asset_id, expires)}")
