"""/v1/jobs: work that takes longer than a request should wait, and the webhook secret.

POST answers 202 with the job (Location: its URL) as soon as the job is written; `Prefer: wait=N`
(RFC 7240) holds the answer up to N seconds (at most MAX_WAIT) and gives 200 if it ended by then.
`Idempotency-Key` makes a retried POST return the job the first one made. GET /v1/jobs/{id}/events
streams the job's changes as Server-Sent Events until it ends."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from atelier.server.deps import PrincipalDep, ServicesDep
from atelier.server.errors import APIError
from atelier.server.jobs import service, store
from atelier.server.jobs.tasks import JobBody
from atelier.server.jobs.webhooks import check_url, webhook_secret
from atelier.server.models import Job
from atelier.server.schemas import ERRORS

router = APIRouter(prefix="/v1", tags=["jobs"])
MAX_WAIT = 60.0
JobId = Annotated[str, PathParam(max_length=40)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]
Prefer = Annotated[str | None, Header(max_length=200)]


def requested_wait(prefer: str | None) -> float | None:
    """The seconds of a `Prefer: wait=N` header (capped at MAX_WAIT), None without one."""
    match = re.search(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", prefer or "")
    return None if match is None else min(float(match.group(1)), MAX_WAIT)


async def answer(job: Job, request: Request, services, wait: float | None, created: bool = True) -> JSONResponse:
    """The job after an optional wait: 200 when it has ended, else 202 (a new job) or 200."""
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if wait is not None:
        job = await service.wait(services, job.id, job.user_id, wait)
        headers["Preference-Applied"] = f"wait={wait:g}"
    status = 202 if created and job.status not in store.FINAL else 200
    return JSONResponse(service.render(job, services, service.base_url(request, services)), status_code=status,
                        headers=headers)


@router.post("/jobs", status_code=202, responses={200: {"description": "the job, ended within Prefer: wait"},
                                                   409: ERRORS[400], **ERRORS})
async def create_job(body: JobBody, request: Request, principal: PrincipalDep, services: ServicesDep,
                     idempotency_key: IdempotencyKey = None, prefer: Prefer = None) -> JSONResponse:
    """Queue a job; its status, progress and output at GET /v1/jobs/{id}."""
    given = service.validate_input(body.task, body.input, services)
    if body.webhook_url is not None:
        try:
            await run_in_threadpool(check_url, body.webhook_url, services.settings.webhook_allow_private)
        except ValueError as error:
            raise APIError(400, str(error), "webhook_url", "invalid_url") from None
    job, created = await run_in_threadpool(service.create, services, principal, body.task, given,
                                           idempotency_key=idempotency_key, webhook_url=body.webhook_url)
    if created:
        await service.enqueue(services, job.id)
    response = await answer(job, request, services, requested_wait(prefer), created)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("/jobs", responses=ERRORS)
def list_jobs(request: Request, principal: PrincipalDep, services: ServicesDep,
              status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|canceled)$")] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              before: Annotated[str | None, Query(max_length=40, description="a job id: list older jobs")] = None,
              ) -> dict[str, Any]:
    """The caller's user's jobs, newest first."""
    with services.db.session() as session:
        jobs = store.user_jobs(session, principal.user_id, status, before, limit)
    base = service.base_url(request, services)
    return {"object": "list", "data": [service.render(job, services, base) for job in jobs[:limit]],
            "has_more": len(jobs) > limit}


@router.get("/jobs/{job_id}", responses={202: {"description": "the job, not ended within Prefer: wait"}, **ERRORS})
async def get_job(job_id: JobId, request: Request, principal: PrincipalDep, services: ServicesDep,
                  prefer: Prefer = None) -> JSONResponse:
    """A job of the caller's user; `Prefer: wait=N` waits up to N seconds for it to end."""
    job = await run_in_threadpool(service.get, services, job_id, principal.user_id)
    return await answer(job, request, services, requested_wait(prefer), created=False)


@router.post("/jobs/{job_id}/cancel", responses={409: ERRORS[400], **ERRORS})
def cancel_job(job_id: JobId, request: Request, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Cancel a queued or running job (a running one stops at its next sampling step)."""
    with services.db.session() as session:
        job = store.cancel(session, job_id, principal.user_id)
    if job is None:
        job = service.get(services, job_id, principal.user_id)      # the 404 of a job not the caller's
        raise APIError(409, f"job {job_id} has already {job.status}; only queued or running jobs can be "
                            f"canceled", "job_id", "job_already_ended")
    services.changes.notify()
    return service.render(job, services, service.base_url(request, services))


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "one event per change, named by the job's status, data: the job"},
                       **ERRORS})
async def job_events(job_id: JobId, request: Request, principal: PrincipalDep, services: ServicesDep):
    """Server-Sent Events: the job each time its status or progress changes, until it ends."""
    await run_in_threadpool(service.get, services, job_id, principal.user_id)    # 404 before the stream starts
    base = service.base_url(request, services)

    async def events():
        seen = None
        while True:
            job = await asyncio.to_thread(service.get, services, job_id, principal.user_id)
            state = (job.status, round(job.progress, 3))
            if state != seen:
                seen = state
                yield {"event": job.status, "data": json.dumps(service.render(job, services, base))}
            if job.status in store.FINAL:
                return
            await services.changes.wait(service.POLL)

    return EventSourceResponse(events(), ping=15)


@router.get("/webhooks/secret", responses=ERRORS)
def get_webhook_secret(principal: PrincipalDep, services: ServicesDep) -> dict[str, str]:
    """The secret that signs your webhooks (Standard Webhooks: check `webhook-signature` with it)."""
    return {"object": "webhook_secret", "secret": webhook_secret(services.secret, principal.user_id)}
