"""Errors in OpenAI's JSON shape, {"error": {"message", "type", "param", "code"}}, for every failure:
our own (APIError), FastAPI's validation errors (400, not 422, as OpenAI answers), Starlette's HTTP
errors (404 for unknown routes, 405 ...) and request bodies over the limit (413). A method a path
lacks is a 405 whose Allow header lists every method of the path, and OPTIONS answers 204 with it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

try:        # newer FastAPI keeps each included router whole in app.routes; this walks down to its routes
    from fastapi.routing import iter_route_contexts as leaf_routes
except ImportError:     # older FastAPI copies the routes themselves into app.routes
    def leaf_routes(routes):
        return iter(routes)

TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
         404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
         415: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, kind: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers
        self.kind = kind    # OpenAI's error "type", when not the status's usual one


class RequestTooLarge(StarletteHTTPException):
    """Raised while reading a body that passes the size limit (atelier.server.middleware.BodyLimit).
    An HTTPException, because FastAPI turns any other error met while it reads a JSON body into
    its own 400 ("There was an error parsing the body"), and passes HTTPExceptions on."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


def error_body(status: int, message: str, param: str | None = None, code: str | None = None,
               kind: str | None = None) -> dict[str, Any]:
    kind = kind or TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None, kind: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code, kind), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into OpenAI's shape."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        return error_response(error.status, error.message, error.param, error.code, error.headers, error.kind)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, *describe_validation(error.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        methods = allowed_methods(request) if error.status_code == 405 else None
        if methods:
            allow = {"Allow": ", ".join(methods)}
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=allow)
            return error_response(405, f"{request.method} is not allowed on {request.url.path}; allowed: "
                                       f"{allow['Allow']}", code="method_not_allowed", headers=allow)
        message = error.detail if isinstance(error.detail, str) else "request failed"
        return error_response(error.status_code, message, headers=getattr(error, "headers", None))

    @app.exception_handler(RequestTooLarge)
    async def too_large(_: Request, error: RequestTooLarge) -> JSONResponse:
        return error_response(413, f"the request body is larger than {error.limit} bytes", code="request_too_large")


def allowed_methods(request: Request) -> list[str]:
    """Every method of the routes whose path matches the request's, and OPTIONS; none for a path
    that only a mount serves (its methods are not the app's to list)."""
    methods = set()
    for route in leaf_routes(request.app.routes):
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods | {"OPTIONS"}) if methods else []


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, str | None, str]:
    """(message, param, code) for the first of pydantic's errors, in words a client can act on."""
    if not errors:
        return "invalid request", None, "invalid_value"
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(location) or None
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None, "invalid_json"
    if first.get("type") == "missing" and param is None:
        return "the request body is missing: send a JSON object", None, "missing_required_parameter"
    if first.get("type") == "missing":
        return f"missing required parameter '{param}'", param, "missing_required_parameter"
    if first.get("type") == "extra_forbidden":
        return f"unknown parameter '{param}'", param, "unknown_parameter"
    message = first.get("msg", "invalid value")
    return (f"invalid value for '{param}': {message}" if param else message), param, "invalid_value"
