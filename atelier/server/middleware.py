"""ASGI middleware: the request-body limit, JSON bodies sent without their Content-Type, OpenAI's
rate-limit headers, and per-request observability (request id, metrics, one log line, and
OpenAI-shaped 500s for anything unhandled, so a client never sees a stack trace)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.routing import Match

from atelier.server.errors import RequestTooLarge, error_body, leaf_routes
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


class JSONBodies:
    """On a route whose body is JSON, a body sent without Content-Type: application/json is read as
    JSON when it parses as JSON and came with no Content-Type or with application/x-www-form-urlencoded
    (what `curl -d` sends); any other body there is a 415 that says what to send. text/plain is never
    taken for JSON: a cross-site HTML form can POST it, raw, to the studio's sign-in."""

    SNIFFED = ("", "application/x-www-form-urlencoded")

    def __init__(self, app, routes):
        self.app, self.routes = app, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            return await self.app(scope, receive, send)
        media = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if media == "application/json" or media.endswith("+json") or not self._takes_json(scope):
            return await self.app(scope, receive, send)
        try:
            body = await _read_body(receive)
        except RequestTooLarge as error:
            return await _send_json(send, 413, error_body(413, str(error.detail), code="request_too_large"))
        if body and not (media in self.SNIFFED and _is_json(body)):
            found = f"a body of type {media}" if media else "a body with no Content-Type"
            detail = " that is not valid JSON" if media in self.SNIFFED else ""
            return await _send_json(send, 415, error_body(
                415, f"this endpoint reads a JSON object, sent with the header Content-Type: application/json; "
                     f"this request sent {found}{detail}", code="unsupported_media_type"))
        if body:        # in place, not a copy: Observe reads the route the router records in this scope
            headers = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
            scope["headers"] = [*headers, (b"content-type", b"application/json")]
        await self.app(scope, _replay(body, receive), send)

    def _takes_json(self, scope) -> bool:
        """Whether the route this request reaches reads its body as JSON (FastAPI's body_field)."""
        for route in leaf_routes(self.routes):
            if route.matches(scope)[0] == Match.FULL:
                return getattr(route, "body_field", None) is not None
        return False


async def _read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """A receive() that gives `body` once, then passes on to the connection's (for its disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


class RateLimitHeaders:
    """OpenAI's x-ratelimit-{limit,remaining,reset}-requests headers on every answer to a request
    counted against the per-key limit (deps.identify leaves its Allowance in the request's state),
    429s included, so a client can pace itself before it is refused."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def tagged(message):
            allowance = scope.get("state", {}).get("rate_limit")
            if message["type"] == "http.response.start" and allowance is not None:
                message = {**message, "headers": [
                    *message.get("headers", []),
                    (b"x-ratelimit-limit-requests", str(allowance.limit).encode()),
                    (b"x-ratelimit-remaining-requests", str(allowance.remaining).encode()),
                    (b"x-ratelimit-reset-requests", go_duration(allowance.reset).encode())]}
            await send(message)

        await self.app(scope, receive, tagged)


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes x-ratelimit-reset-* (Go's format, to the millisecond): 20ms, 1s,
    1.5s, 6m0s, 1h0m0s."""
    millis = max(0, round(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms" if millis else "0s"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = f"{millis / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


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
