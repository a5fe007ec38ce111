"""FastAPI dependencies: the app's services, the database session, the caller and the per-key rate
limit. Authentication runs before any body is parsed into a model job.

The caller is a Bearer key, or else the studio's session cookie (`atelier_session`), which acts as
the user's studio key. A request with the cookie that may change something (any method but GET,
HEAD and OPTIONS) must carry the session's CSRF token in X-CSRF-Token: another site can make a
browser send the cookie, but cannot read the token (the studio gets it from GET /studio/api/session)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from atelier.server.accounts import Principal, SessionInfo, authenticate, csrf_matches, find_session
from atelier.server.errors import APIError
from atelier.server.limits import LimiterUnavailable
from atelier.server.logs import LOGGER
from atelier.server.state import Services

log = logging.getLogger(LOGGER)
bearer = HTTPBearer(auto_error=False, description="an Atelier API key: atelier keys create --user NAME")
SESSION_COOKIE = "atelier_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.db.session() as session:
        yield session


# scope="function": committed before the answer is sent, so a client that reads right after a write sees it
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def identify(request: Request, services: Services, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The key's (or studio session's) principal, checked against the rate limit; 401, 403 or 429
    in OpenAI's words otherwise."""
    if credentials is None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise APIError(401, "You didn't provide an API key. Send it in the Authorization header as "
                                "'Bearer YOUR_KEY' (create one with: atelier keys create --user NAME), or sign "
                                "in to the studio.", code="missing_api_key")
        principal = browser_session(request, services, token).principal
    else:
        with services.db.session() as session:
            principal = authenticate(session, credentials.credentials)
        if principal is None:   # the key itself is never echoed or logged
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
    request.state.principal = principal
    try:
        allowance = services.limiter.acquire(principal.key_id)
    except LimiterUnavailable:
        log.exception("rate limit unavailable")
        raise APIError(503, "The service is briefly unavailable (its rate-limit store cannot be reached); try "
                            "again in a few seconds.", code="service_unavailable",
                       headers={"Retry-After": "5"}) from None
    request.state.rate_limit = allowance        # the answer's x-ratelimit-* headers (middleware.RateLimitHeaders)
    if allowance.wait:
        limit = services.settings
        raise APIError(429, f"Rate limit reached for this key: {limit.rate_limit} requests per "
                            f"{limit.rate_window:g} s. Try again in {allowance.wait} s.", code="rate_limit_exceeded",
                       headers={"Retry-After": str(allowance.wait)})
    return principal


def browser_session(request: Request, services: Services, token: str) -> SessionInfo:
    """The live session of the cookie's token, its CSRF token checked on unsafe methods."""
    with services.db.session() as session:
        found = find_session(session, token)
    if found is None:
        raise APIError(401, "Your studio session has ended. Sign in again.", code="session_expired")
    if request.method not in SAFE_METHODS and not csrf_matches(found.csrf, request.headers.get(CSRF_HEADER)):
        raise APIError(403, "This request was refused because it did not carry the page's security token "
                            f"({CSRF_HEADER}). Reload the studio and try again.", code="csrf_failed")
    request.state.browser_session = found
    return found


def current_principal(request: Request, services: ServicesDep, credentials: Credentials) -> Principal:
    return identify(request, services, credentials)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
