"""ASGI middleware: the request-body limit, and per-request observability (request id, metrics,
one log line, and OpenAI-shaped 500s for anything unhandled, so a client never sees a stack trace)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from atelier.server.errors import RequestTooLarge, error_body
from atelier.server.logs import ACCESS, REQUEST_ID
from atelier.server.metrics import Metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class BodyLimit:
    """413 before reading a body whose Content-Length passes `limit`; a chunked body is counted as it arrives."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            status = 413 if length.isdigit() else 400
            message = (f"the request body is larger than {self.limit} bytes" if status == 413
                       else "invalid Content-Length header")
            return await _send_json(send, status, error_body(status, message, code="request_too_large"
                                                             if status == 413 else "invalid_value"))
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise RequestTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


class Observe:
    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics
        self.log = logging.getLogger(ACCESS)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        status, started = 500, False
        begin = time.perf_counter()

        async def tagged(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        except Exception:
            status = 500
            self.log.exception("unhandled error", extra={"request_id": request_id})
            if not started:
                await _send_json(tagged, 500, error_body(500, f"the server failed on this request (request id "
                                                              f"{request_id}); it has been logged"))
        finally:
            duration = time.perf_counter() - begin
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(duration)
            principal = scope.get("state", {}).get("principal")
            extra = {"request_id": request_id, "method": scope["method"], "route": route, "status": status,
                     "duration_ms": round(duration * 1000, 1)}
            if principal is not None:
                extra.update(user_id=principal.user_id, key_prefix=principal.key_prefix)
            self.log.info("%s %s %d", scope["method"], route, status, extra=extra)
            REQUEST_ID.reset(token)


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
