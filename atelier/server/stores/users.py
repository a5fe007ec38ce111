"""Users, their API keys and their studio (browser) sessions; deleting a user and all that is theirs."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from atelier.server.models import ApiKey, Asset, BrowserSession, Job, Like, User

# --- users --------------------------------------------------------------------------------------


def user_by_id(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def user_named(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def all_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def add_user(session: Session, name: str) -> User:
    """A new user row, flushed (its id set)."""
    user = User(name=name)
    session.add(user)
    session.flush()
    return user


def delete_user(session: Session, user_id: int) -> list[str]:
    """Delete the user and all that is theirs (the database cascades to keys, usage, assets, jobs,
    likes, reports and feedback); the storage keys of their files, to delete once the transaction
    has committed. Likes they gave are taken off the counts first."""
    files = list(session.scalars(select(Asset.path).where(Asset.user_id == user_id)))
    for job_input in session.scalars(select(Job.input).where(Job.user_id == user_id)):
        files.extend(job_input.get("files", {}).values())
    liked = list(session.scalars(select(Like.asset_id).where(Like.user_id == user_id)))
    if liked:
        session.execute(update(Asset).where(Asset.id.in_(liked)).values(likes=Asset.likes - 1))
    session.execute(delete(User).where(User.id == user_id))
    return files


# --- API keys -----------------------------------------------------------------------------------


def add_key(session: Session, user_id: int, prefix: str, key_hash: str, scope: str, label: str | None) -> ApiKey:
    """A new key row, flushed (its id set)."""
    key = ApiKey(user_id=user_id, prefix=prefix, hash=key_hash, scope=scope, label=label)
    session.add(key)
    session.flush()
    return key


def key_with_prefix(session: Session, prefix: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))


def user_key_with_prefix(session: Session, user_id: int, prefix: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.user_id == user_id))


def live_key_and_user(session: Session, key_hash: str) -> tuple[ApiKey, User] | None:
    """The unrevoked key with this hash and its user; None when there is none."""
    row = session.execute(select(ApiKey, User).join(User, ApiKey.user_id == User.id)
                          .where(ApiKey.hash == key_hash, ApiKey.revoked.is_(None))).first()
    return None if row is None else (row[0], row[1])


def has_admin_key(session: Session, user_id: int) -> bool:
    """Whether the user holds an unrevoked admin key: the studio then shows them Moderation, and
    their signed-in session may use the admin endpoints."""
    return session.scalar(select(ApiKey.id).where(ApiKey.user_id == user_id, ApiKey.scope == "admin",
                                                  ApiKey.revoked.is_(None)).limit(1)) is not None


def keys_with_owners(session: Session, user_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (or the named user's) with its user's name, oldest first."""
    query = select(ApiKey, User.name).join(User, ApiKey.user_id == User.id).order_by(ApiKey.id)
    if user_name is not None:
        query = query.where(User.name == user_name)
    return [(key, name) for key, name in session.execute(query)]


def user_keys(session: Session, user_id: int) -> list[ApiKey]:
    """The user's keys, oldest first."""
    return list(session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)))


def live_labelled_key(session: Session, user_id: int, label: str) -> ApiKey | None:
    """The user's oldest unrevoked key with this label."""
    return session.scalar(select(ApiKey).where(ApiKey.user_id == user_id, ApiKey.label == label,
                                               ApiKey.revoked.is_(None)).order_by(ApiKey.id))


def key_has_sessions(session: Session, key_id: int) -> bool:
    """Whether any browser session acts as this key."""
    return session.scalar(select(BrowserSession.id).where(BrowserSession.key_id == key_id).limit(1)) is not None


# --- browser sessions ---------------------------------------------------------------------------


def delete_expired_sessions(session: Session, now: dt.datetime) -> None:
    session.query(BrowserSession).filter(BrowserSession.expires <= now).delete()


def add_browser_session(session: Session, token_hash: str, user_id: int, key_id: int, csrf: str, now: dt.datetime,
                        expires: dt.datetime) -> BrowserSession:
    """A new session row, flushed."""
    row = BrowserSession(token_hash=token_hash, user_id=user_id, key_id=key_id, csrf=csrf, created=now,
                         expires=expires, last_seen=now)
    session.add(row)
    session.flush()
    return row


def live_browser_session(session: Session, token_hash: str,
                         now: dt.datetime) -> tuple[BrowserSession, ApiKey, User] | None:
    """The unexpired session with this token hash whose key is unrevoked, with its key and user."""
    row = session.execute(select(BrowserSession, ApiKey, User).join(ApiKey, BrowserSession.key_id == ApiKey.id)
                          .join(User, BrowserSession.user_id == User.id)
                          .where(BrowserSession.token_hash == token_hash, BrowserSession.expires > now,
                                 ApiKey.revoked.is_(None))).first()
    return None if row is None else (row[0], row[1], row[2])


def delete_browser_session(session: Session, token_hash: str) -> None:
    session.query(BrowserSession).filter(BrowserSession.token_hash == token_hash).delete()
