"""Users and API keys: creating, revoking and looking up, shared by the CLI and the server.

A key is `atl_` and 43 URL-safe characters (256 random bits). It is shown once, when made; the
database keeps its SHA-256 and its first 12 characters (the prefix) to name it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from atelier.server.models import ApiKey, User, utcnow

KEY_PREFIX = "atl_"
PREFIX_LENGTH = 12
SCOPES = ("user", "admin")


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
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise AccountError(f"a user named {name!r} exists already")
    user = User(name=name)
    session.add(user)
    session.flush()
    return user


def create_key(session: Session, user_name: str, scope: str = "user") -> tuple[ApiKey, str]:
    """A new key for the user: (its row, its text). The text is not stored and cannot be shown again."""
    if scope not in SCOPES:
        raise AccountError(f"unknown scope {scope!r}; choose {' or '.join(SCOPES)}")
    user = session.scalar(select(User).where(User.name == user_name))
    if user is None:
        raise AccountError(f"no user named {user_name!r}; create one with atelier users create {user_name}")
    text = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=user.id, prefix=text[:PREFIX_LENGTH], hash=hash_key(text), scope=scope)
    session.add(key)
    session.flush()
    return key, text


def revoke_key(session: Session, prefix: str) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise AccountError(f"no key starts {prefix!r} (give the {PREFIX_LENGTH} characters atelier keys list shows)")
    if key.revoked is None:
        key.revoked = utcnow()
    return key


def authenticate(session: Session, text: str) -> Principal | None:
    """The principal of a presented key, or None for an unknown or revoked one (the same answer for both)."""
    if not text.startswith(KEY_PREFIX):
        return None
    row = session.execute(select(ApiKey, User).join(User, ApiKey.user_id == User.id)
                          .where(ApiKey.hash == hash_key(text), ApiKey.revoked.is_(None))).first()
    if row is None:
        return None
    key, user = row
    return Principal(key.id, key.prefix, key.scope, user.id, user.name)


def list_keys(session: Session, user_name: str | None = None) -> list[tuple[ApiKey, str]]:
    query = select(ApiKey, User.name).join(User, ApiKey.user_id == User.id).order_by(ApiKey.id)
    if user_name is not None:
        query = query.where(User.name == user_name)
    return [(key, name) for key, name in session.execute(query)]


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))
