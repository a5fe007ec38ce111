"""The tables (SQLAlchemy 2 declarative). Every change to them ships with an Alembic revision in
migrations/versions/ (tests/test_api_db.py fails when the two disagree), so no upgrade loses data."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)   # stored naive, always UTC


def unix_seconds(moment: dt.datetime | None) -> int | None:
    """A stored (naive, UTC) time as the whole seconds since 1970 the API shows; None stays None."""
    return None if moment is None else int(moment.replace(tzinfo=dt.UTC).timestamp())


class Base(DeclarativeBase):
    pass



class User(Base):
    """Someone who owns keys and images. `password_hash` (argon2id) is set for those who signed up in
    the studio; users made with `atelier users create` have none and sign in with keys only."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # whether this user's published images and feedback may train models; off until they say so
    training_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ApiKey(Base):
    """A key is stored only as the SHA-256 of its text (keys are 256 random bits, so no slow hash is
    needed); `prefix`, its first characters, names it in listings and `atelier keys revoke`."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    label: Mapped[str | None] = mapped_column(String(40), nullable=True)   # "studio": the key sessions act as


class BrowserSession(Base):
    """A signed-in studio browser. The cookie holds a random 256-bit token; only its SHA-256 is kept.
    The session acts as the user's studio key (`key_id`), so quotas, usage and rate limits count as
    for any key; `csrf` must come back in X-CSRF-Token on every request that changes something."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires: Mapped[dt.datetime] = mapped_column(DateTime)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Asset(Base):
    """A stored image: its file in the storage (`path`, relative), its owner and its generation metadata."""

    __tablename__ = "assets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)     # random, so ids cannot be guessed
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))                     # the task: text_to_image, edit, variation
    info: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)  # its siblings: candidates
    published: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)    # None: private
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())   # by an admin
    likes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")          # count of Like rows


class Usage(Base):
    """Requests and images per key per UTC day: the daily quota's counter and the accounting record."""

    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("key_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    day: Mapped[dt.date] = mapped_column(Date)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)



class Job(Base):
    """One piece of work a client asked for (atelier.server.jobs): its input, where it stands and
    what it made. The row is the record of truth in every mode: it is written before the request
    is answered, so an accepted job outlives any process; a queue only says who runs it."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key"),
                      Index("ix_jobs_status_created", "status", "created"),
                      Index("ix_jobs_user_created", "user_id", "created"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)     # "job_" + random hex
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True)
    task: Mapped[str] = mapped_column(String(32))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))                   # queued running succeeded failed canceled
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)         # times a worker started it
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)     # {"code", "message"}
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)    # {"assets": [ids]}
    images: Mapped[int] = mapped_column(Integer, default=0)           # images reserved of the key's quota
    quota_day: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    webhook_status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # pending delivered failed
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_next: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    webhook_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)   # the request that made it, for logs
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    heartbeat: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Like(Base):
    __tablename__ = "likes"
    __table_args__ = (UniqueConstraint("user_id", "asset_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Report(Base):
    """Someone's word that a published image should not be shown; an admin resolves it."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("user_id", "asset_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Feedback(Base):
    """What a user did with an image that says what they wanted: `download`, or `keep` (this one
    of its job's candidates); with likes, the data of preference pairs (atelier feedback export)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
