"""The tables (SQLAlchemy 2 declarative). Every change to them ships with an Alembic revision in
migrations/versions/ (tests/test_api_db.py fails when the two disagree), so no upgrade loses data."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)   # stored naive, always UTC


class Base(DeclarativeBase):
    pass


class User(Base):
    """Someone who owns keys and images; the studio's sign-in will attach to this row."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


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


class Asset(Base):
    """A stored image: its file in the storage (`path`, relative), its owner and its generation metadata."""

    __tablename__ = "assets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)     # random, so ids cannot be guessed
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))                     # the task: text_to_image, edit, variation
    info: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Usage(Base):
    """Requests and images per key per UTC day: the daily quota's counter and the accounting record."""

    __tablename__ = "usage"
    __table_args__ = (UniqueConstraint("key_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    day: Mapped[dt.date] = mapped_column(Date)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0)


