"""Users and API keys: creating, revoking and looking up, shared by the CLI and the server; and the
studio's accounts: passwords (argon2id) and browser sessions. The queries are in
atelier.server.stores.users.

A key is `atl_` and 43 URL-safe characters (256 random bits). It is shown once, when made; the
database keeps its SHA-256 and its first 12 characters (the prefix) to name it. A session token
is 256 random bits too, kept the same way; a session acts as its user's "studio" key.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from atelier.server.models import ApiKey, User, utcnow
from atelier.server.stores import users

KEY_PREFIX = "atl_"
PREFIX_LENGTH = 12
SCOPES = ("user", "admin")
STUDIO_LABEL = "studio"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,40}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
SESSION_DAYS = 14
SEEN_EVERY = dt.timedelta(minutes=5)      # last_seen is written at most this often per session


class AccountError(ValueError):
    """A user or key that cannot be made or found, with the reason."""


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the key and its user, detached from any session."""

    key_id: int
    key_prefix: str
    scope: str
    user_id: int
    user_name: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_user(session: Session, name: str) -> User:
    name = name.strip()
    if not name or len(name) > 100:
        raise AccountError("a user name must have 1 to 100 characters")
    if users.user_named(session, name) is not None:
        raise AccountError(f"a user named {name!r} exists already")
    return users.add_user(session, name)


def create_key(session: Session, user_name: str, scope: str = "user",
               label: str | None = None) -> tuple[ApiKey, str]:
    """A new key for the user: (its row, its text). The text is not stored and cannot be shown again."""
    if scope not in SCOPES:
        raise AccountError(f"unknown scope {scope!r}; choose {' or '.join(SCOPES)}")
    user = users.user_named(session, user_name)
    if user is None:
        raise AccountError(f"no user named {user_name!r}; create one with atelier users create {user_name}")
    text = KEY_PREFIX + secrets.token_urlsafe(32)
    return users.add_key(session, user.id, text[:PREFIX_LENGTH], hash_key(text), scope, label), text


def revoke_key(session: Session, prefix: str) -> ApiKey:
    key = users.key_with_prefix(session, prefix)
    if key is None:
        raise AccountError(f"no key starts {prefix!r} (give the {PREFIX_LENGTH} characters atelier keys list shows)")
    if key.revoked is None:
        key.revoked = utcnow()
    return key


def authenticate(session: Session, text: str) -> Principal | None:
    """The principal of a presented key, or None for an unknown or revoked one (the same answer for both)."""
    if not text.startswith(KEY_PREFIX):
        return None
    row = users.live_key_and_user(session, hash_key(text))
    if row is None:
        return None
    key, user = row
    return Principal(key.id, key.prefix, key.scope, user.id, user.name)


def list_keys(session: Session, user_name: str | None = None) -> list[tuple[ApiKey, str]]:
    return users.keys_with_owners(session, user_name)


def list_users(session: Session) -> list[User]:
    return users.all_users(session)


# --- the studio: passwords and browser sessions -------------------------------------------------

def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()     # argon2id, the library's (RFC 9106 low-memory) parameters


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name takes as long as a wrong password."""
    return _hasher().hash(secrets.token_hex(16))


def check_new_account(name: str, password: str) -> None:
    """AccountError in plain words for a name or password the studio does not accept."""
    if not NAME_PATTERN.match(name):
        raise AccountError("A user name has 3 to 40 characters: letters, digits, '_', '.' or '-'.")
    check_new_password(password)


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"A password needs at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"A password has at most {MAX_PASSWORD} characters.")


def sign_up(session: Session, name: str, password: str) -> User:
    """A new user with a password and a studio key (whose text is never shown); AccountError when
    the name or password is refused or the name is taken."""
    check_new_account(name, password)
    if users.user_named(session, name) is not None:
        raise AccountError(f"The name {name!r} is taken; choose another.")
    user = create_user(session, name)
    user.password_hash = _hasher().hash(password)
    create_key(session, name, "user", STUDIO_LABEL)
    return user


def set_password(session: Session, name: str, password: str) -> User:
    """Give an existing user (e.g. one made with `atelier users create`) a studio password."""
    user = users.user_named(session, name)
    if user is None:
        raise AccountError(f"no user named {name!r}; create one with atelier users create {name}")
    check_new_password(password)
    user.password_hash = _hasher().hash(password)
    return user


def check_password(session: Session, name: str, password: str) -> User | None:
    """The user when the name and password match, else None (the same for an unknown name)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    user = users.user_named(session, name) if len(password) <= MAX_PASSWORD else None
    stored = user.password_hash if user is not None else None
    if stored is None:
        stored, user = _dummy_hash(), None
    try:
        hasher.verify(stored, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if user is not None and hasher.check_needs_rehash(stored):
        user.password_hash = hasher.hash(password)
    return user


def studio_key(session: Session, user: User) -> ApiKey:
    """The user's studio key, made again if it was revoked (the CLI can revoke any key)."""
    key = users.live_labelled_key(session, user.id, STUDIO_LABEL)
    return key if key is not None else create_key(session, user.name, "user", STUDIO_LABEL)[0]


@dataclass(frozen=True)
class SessionInfo:
    principal: Principal
    csrf: str
    expires: dt.datetime


def open_session(session: Session, user: User) -> tuple[str, SessionInfo]:
    """A new browser session for the user: (the cookie's token, shown only here; the session)."""
    key = studio_key(session, user)
    users.delete_expired_sessions(session, utcnow())    # the long expired
    token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), utcnow()
    row = users.add_browser_session(session, hash_key(token), user.id, key.id, csrf, now,
                                    now + dt.timedelta(days=SESSION_DAYS))
    return token, SessionInfo(Principal(key.id, key.prefix, key.scope, user.id, user.name), csrf, row.expires)


def find_session(session: Session, token: str) -> SessionInfo | None:
    """The live session of a cookie's token; None for an unknown, expired or ended one, or one
    whose studio key was revoked."""
    if not token or len(token) > 100:
        return None
    now = utcnow()
    row = users.live_browser_session(session, hash_key(token), now)
    if row is None:
        return None
    browser, key, user = row
    if now - browser.last_seen > SEEN_EVERY:
        browser.last_seen = now
    return SessionInfo(Principal(key.id, key.prefix, key.scope, user.id, user.name), browser.csrf, browser.expires)


def close_session(session: Session, token: str) -> None:
    users.delete_browser_session(session, hash_key(token))


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
