"""`create_app(settings, pipeline=None)`: the FastAPI application, built from its settings.

The lifespan does the slow and fallible work once, before the first request: it sets the torch
threads, migrates the database, and loads the model (unless one is handed in, as the tests do),
so a request never waits for a load and a broken model stops `atelier serve` with its reason.
Then it starts the job queue: embedded (this process runs the jobs, and first puts back those a
killed process left running) or, with settings.redis, Redis (`atelier worker` processes run them
and this server keeps no state of its own), and the webhook sender. On shutdown the queue stops
taking jobs, a running batch gets settings.shutdown_grace seconds, and what is left is re-queued."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from atelier.server import errors
from atelier.server.config import ServerSettings
from atelier.server.db import Database
from atelier.server.jobs import service
from atelier.server.jobs.queues import Changes, EmbeddedQueue, RedisQueue
from atelier.server.jobs.runner import JobRunner
from atelier.server.jobs.webhooks import WebhookSender
from atelier.server.limits import RateLimiter, RedisRateLimiter
from atelier.server.logs import LOGGER
from atelier.server.metrics import Metrics
from atelier.server.middleware import BodyLimit, JSONBodies, Observe, RateLimitHeaders
from atelier.server.model_thread import ModelThread
from atelier.server.routers import assets, community, health, images, jobs, masks, models, studio, usage
from atelier.server.state import Services
from atelier.server.storage import LocalStorage

log = logging.getLogger(LOGGER)
STUDIO = Path(__file__).resolve().parent / "studio"     # the studio's page, scripts and styles
ATTEMPT_WINDOW = 300.0     # seconds: settings.login_attempts and signup_attempts are counted over it


def create_app(settings: ServerSettings, pipeline: Any = None) -> FastAPI:
    """The API for `settings`; `pipeline` (an atelier.pipeline.Atelier) skips loading settings.model."""
    metrics = Metrics()
    services = Services(settings=settings, db=Database(settings.database_url),
                        storage=LocalStorage(settings.data / "assets"),
                        limiter=rate_limiter(settings, settings.rate_limit, settings.rate_window, "requests"),
                        metrics=metrics, model_thread=ModelThread(metrics, settings.threads),
                        secret=settings.signing_secret(),
                        changes=Changes(), actions=action_limiters(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import torch

        torch.set_num_threads(settings.threads)
        await run_in_threadpool(services.db.migrate)
        if pipeline is None:
            from atelier.pipeline import Atelier

            services.pipeline = await services.model_thread.run(lambda: Atelier.from_pretrained(settings.model))
        else:
            services.pipeline = pipeline
        services.changes.bind()
        runner = None
        if settings.redis:
            services.queue = RedisQueue(settings.redis, settings.job_heartbeat)
        else:
            runner = JobRunner(services.db, services.storage, services.pipeline, services.model_thread,
                               f"serve-{socket.gethostname()}-{os.getpid()}", settings.max_batch,
                               services.changes.notify, settings.batch_wait)
            services.queue = EmbeddedQueue(services.db, runner, capacity=2 * settings.max_batch)
            await services.queue.start()
        stop_webhooks = asyncio.Event()
        webhooks = asyncio.create_task(webhook_sender(services).run(stop_webhooks))
        log.info("ready: model %s (%s), data in %s, jobs %s", services.pipeline.name,
                 ", ".join(services.model_sizes()), settings.data,
                 "on Redis (run `atelier worker`)" if settings.redis else "run here")
        try:
            yield
        finally:
            stop_webhooks.set()
            await services.queue.close()
            if runner is not None:
                requeued = await runner.close(settings.shutdown_grace)
                if requeued:
                    log.warning("put %d running job(s) back in the queue: %s", len(requeued), ", ".join(requeued))
            await webhooks
            services.model_thread.close()
            for limiter in (services.limiter, *services.actions.values()):
                limiter.close()
            services.db.close()

    app = FastAPI(title="Atelier API", version="1", lifespan=lifespan,
                  description="OpenAI-compatible image generation, editing and variations with Atelier models.")
    app.state.services = services
    errors.install(app)
    app.openapi = lambda: _openapi(app)
    for router in (images.router, jobs.router, models.router, assets.router, masks.router, community.router,
                   usage.router, health.router, studio.router):
        app.include_router(router)
    mount_studio(app)
    # outermost last: CORS answers preflights, Observe sees every request, BodyLimit guards the rest,
    # JSONBodies reads its body through BodyLimit's count
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(JSONBodies, routes=app.routes)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Retry-After", "x-ratelimit-limit-requests",
                                           "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"])
    app.add_middleware(Observe, metrics=metrics)
    return app


def mount_studio(app: FastAPI) -> None:
    """The studio's page at / and its files at /studio/static/: plain HTML, CSS and JavaScript modules,
    nothing fetched from elsewhere (the Content-Security-Policy allows this origin only)."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
               "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                          "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                                          "base-uri 'none'; form-action 'self'"}

    @app.get("/", include_in_schema=False)
    def studio_page() -> FileResponse:
        return FileResponse(STUDIO / "index.html", media_type="text/html", headers=headers)

    app.mount("/studio/static", StaticFiles(directory=STUDIO), name="studio")
def rate_limiter(settings: ServerSettings, limit: int, window: float, name: str) -> RateLimiter | RedisRateLimiter:
    """A sliding-window limit, in Redis when the servers share one (settings.redis), else in memory."""
    if settings.redis:
        return RedisRateLimiter(settings.redis, limit, window, prefix=f"atelier:ratelimit:{name}:")
    return RateLimiter(limit, window)


def action_limiters(settings: ServerSettings) -> dict[str, RateLimiter | RedisRateLimiter]:
    """Publishing, liking and reporting per user an hour; studio sign-ins per name and address and
    sign-ups per address over ATTEMPT_WINDOW."""
    limits = {action: (getattr(settings, f"{action}_limit"), 3600.0) for action in ("publish", "like", "report")}
    limits |= {"login": (settings.login_attempts, ATTEMPT_WINDOW), "signup": (settings.signup_attempts, ATTEMPT_WINDOW)}
    return {action: rate_limiter(settings, limit, window, action) for action, (limit, window) in limits.items()}


def webhook_sender(services: Services) -> WebhookSender:
    """The sender of finished jobs' webhooks; its links point at settings.public_url, else host:port."""
    settings = services.settings
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return WebhookSender(services.db, services.secret, lambda job: service.render(job, services, base),
                         attempts=settings.webhook_attempts, base_delay=settings.webhook_retry_delay,
                         allow_private=settings.webhook_allow_private)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document less its default 422 answers: validation errors are 400s here, as in OpenAI's API."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for path in document["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            document.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = document
    return app.openapi_schema
