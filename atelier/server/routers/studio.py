"""/studio/api: the studio's accounts. Sign up, sign in and out, who is signed in (with the CSRF
token the page sends back in X-CSRF-Token), and the user's own API keys.

Signing in sets the `atelier_session` cookie: HttpOnly (no script reads it), SameSite=Lax,
Path=/, Secure over https, 14 days. The studio then uses the same /v1 API as any client, the
cookie standing in for a Bearer key (atelier.server.deps). Sign-in attempts are limited per name
and address (settings.login_attempts per 5 minutes, 10), accounts made per address
(settings.signup_attempts, 20), and a wrong name gets the same answer as a wrong password."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field

from atelier.server import accounts
from atelier.server.accounts import AccountError, SessionInfo
from atelier.server.deps import SESSION_COOKIE, ServicesDep, browser_session, identify
from atelier.server.errors import APIError
from atelier.server.limits import LimiterUnavailable
from atelier.server.models import ApiKey, unix_seconds
from atelier.server.schemas import ERRORS, Strict
from atelier.server.stores import users

router = APIRouter(prefix="/studio/api", tags=["studio"])
WRONG = "Wrong user name or password."


class Credentials(Strict):
    name: str = Field(..., max_length=100)
    password: str = Field(..., max_length=accounts.MAX_PASSWORD)


def signed_in(request: Request, services: ServicesDep) -> SessionInfo:
    """The caller's studio session (401 without one); its CSRF token checked on unsafe methods and
    the request counted against the session's key's rate limit. Keys cannot manage keys here."""
    if not request.cookies.get(SESSION_COOKIE):
        raise APIError(401, "You are not signed in.", code="not_signed_in")
    identify(request, services, None)     # the session, its CSRF check and the rate limit
    return request.state.browser_session


SignedIn = Annotated[SessionInfo, Depends(signed_in)]


def _session_body(found: SessionInfo, services) -> dict[str, Any]:
    """Who is signed in, their CSRF token, and `admin`: whether they hold an unrevoked admin key (the
    studio then shows Moderation, and the session may use the admin endpoints)."""
    with services.db.session() as session:
        admin = users.has_admin_key(session, found.principal.user_id)
    return {"object": "session", "user": {"id": found.principal.user_id, "name": found.principal.user_name},
            "csrf_token": found.csrf, "expires": unix_seconds(found.expires),
            "admin": admin}


def _set_cookie(response: Response, request: Request, token: str) -> None:
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(SESSION_COOKIE, token, max_age=accounts.SESSION_DAYS * 86400, path="/", httponly=True,
                        samesite="lax", secure=secure)


def _limit_attempts(request: Request, limiter, what: str) -> None:
    address = request.client.host if request.client else "?"
    try:
        wait = limiter.acquire(f"{what.lower()}|{address}").wait
    except LimiterUnavailable:
        raise APIError(503, "Signing in is briefly unavailable; try again in a few seconds.",
                       code="service_unavailable", headers={"Retry-After": "5"}) from None
    if wait:
        minutes = max(1, round(wait / 60))
        raise APIError(429, f"Too many attempts. Try again in {minutes} minute"
                            f"{'s' if minutes != 1 else ''}.", code="too_many_attempts",
                       headers={"Retry-After": str(wait), "x-should-retry": "false"})


@router.post("/signup", status_code=201, responses={409: ERRORS[400], **ERRORS})
def sign_up(body: Credentials, request: Request, response: Response, services: ServicesDep) -> dict[str, Any]:
    """Make an account and sign in (sets the session cookie)."""
    _limit_attempts(request, services.actions["signup"], "signup")     # accounts made per address
    name = body.name.strip()
    try:
        accounts.check_new_account(name, body.password)
    except AccountError as error:
        raise APIError(400, str(error), "password" if "password" in str(error) else "name", "invalid_value") from None
    try:
        with services.db.session() as session:
            user = accounts.sign_up(session, name, body.password)
            token, found = accounts.open_session(session, user)
    except AccountError as error:
        raise APIError(409, str(error), "name", "name_taken") from None
    _set_cookie(response, request, token)
    return _session_body(found, services)


@router.post("/login", responses=ERRORS)
def sign_in(body: Credentials, request: Request, response: Response, services: ServicesDep) -> dict[str, Any]:
    """Sign in with a name and password (sets the session cookie)."""
    name = body.name.strip()
    _limit_attempts(request, services.actions["login"], f"login|{name}")
    with services.db.session() as session:
        user = accounts.check_password(session, name, body.password)
        if user is None:
            raise APIError(401, WRONG, code="wrong_credentials")
        token, found = accounts.open_session(session, user)
    _set_cookie(response, request, token)
    return _session_body(found, services)


@router.post("/logout", responses=ERRORS)
def sign_out(request: Request, response: Response, services: ServicesDep) -> dict[str, Any]:
    """End this browser's session (its CSRF token is required) and clear the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            browser_session(request, services, token)
        except APIError as error:
            if error.status != 401:     # a CSRF failure stays one; an ended session just clears the cookie
                raise
        with services.db.session() as session:
            accounts.close_session(session, token)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return {"object": "session", "signed_out": True}


@router.get("/session", responses=ERRORS)
def who_am_i(found: SignedIn, services: ServicesDep) -> dict[str, Any]:
    """Who is signed in, and the CSRF token to send in X-CSRF-Token; 401 when signed out."""
    return _session_body(found, services)


def _key_card(key: ApiKey) -> dict[str, Any]:
    return {"object": "api_key", "prefix": key.prefix, "scope": key.scope, "label": key.label,
            "created": unix_seconds(key.created), "revoked": unix_seconds(key.revoked)}


@router.get("/keys", responses=ERRORS)
def list_keys(found: SignedIn, services: ServicesDep) -> dict[str, Any]:
    """Your API keys (prefixes only: a key's text is shown once, when it is made)."""
    with services.db.session() as session:
        keys = users.user_keys(session, found.principal.user_id)
        return {"object": "list", "data": [_key_card(key) for key in keys]}


@router.post("/keys", status_code=201, responses=ERRORS)
def create_key(found: SignedIn, services: ServicesDep) -> dict[str, Any]:
    """A new API key for you (scope user); its text is in this answer only."""
    with services.db.session() as session:
        key, text = accounts.create_key(session, found.principal.user_name, "user")
        return {**_key_card(key), "key": text}


@router.delete("/keys/{prefix}", responses=ERRORS)
def revoke_key(prefix: str, found: SignedIn, services: ServicesDep) -> dict[str, Any]:
    """Revoke one of your keys by its prefix; it stops working at once."""
    with services.db.session() as session:
        key = users.user_key_with_prefix(session, found.principal.user_id, prefix[:20])
        if key is None:
            raise APIError(404, f"You have no key starting {prefix[:20]!r}.", "prefix", "not_found")
        if key.label == accounts.STUDIO_LABEL and users.key_has_sessions(session, key.id):
            raise APIError(400, "This is the key the studio itself signs in with; sign out to end its sessions "
                                "instead.", "prefix", "studio_key")
        accounts.revoke_key(session, key.prefix)
        return _key_card(key)
