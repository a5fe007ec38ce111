"""Usage: requests and images per key per UTC day, the counters the daily quota reserves from
(atelier.server.quota) and GET /v1/usage reports."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from atelier.server.models import ApiKey, Usage, User


def take_images(session: Session, key_id: int, day: dt.date, n: int, quota: int) -> bool:
    """Count one request and its `n` images on the key's row for `day` (made if missing), atomically,
    unless that would pass `quota` images; whether they were counted."""
    session.execute(insert(Usage).values(key_id=key_id, day=day, requests=0, images=0).on_conflict_do_nothing())
    return bool(session.execute(
        update(Usage).where(Usage.key_id == key_id, Usage.day == day, Usage.images + n <= quota)
        .values(images=Usage.images + n, requests=Usage.requests + 1)).rowcount)


def images_made(session: Session, key_id: int, day: dt.date) -> int | None:
    """The images counted on the key's row for `day`; None when it has none."""
    return session.scalar(select(Usage.images).where(Usage.key_id == key_id, Usage.day == day))


def give_back_images(session: Session, key_id: int, day: dt.date, n: int) -> None:
    session.execute(update(Usage).where(Usage.key_id == key_id, Usage.day == day).values(images=Usage.images - n))


def usage_rows(session: Session, user_id: int | None) -> list[tuple[Usage, str, str]]:
    """(the day's row, its key's prefix, its user's name), newest day first, then by prefix: the
    user's keys, or every key when `user_id` is None."""
    query = (select(Usage, ApiKey.prefix, User.name).join(ApiKey, Usage.key_id == ApiKey.id)
             .join(User, ApiKey.user_id == User.id).order_by(Usage.day.desc(), ApiKey.prefix))
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return [(row, prefix, name) for row, prefix, name in session.execute(query).all()]
