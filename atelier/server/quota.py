"""The daily image quota per key: images are reserved when a request is accepted and given back
when its job fails or is canceled, so a key pays only for what it received."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from atelier.server.errors import APIError
from atelier.server.stores import usage


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def reserve(session: Session, key_id: int, n: int, quota: int) -> dt.date:
    """Count one request and its `n` images against the key's quota for today (UTC), atomically;
    the day they were counted on (to give them back), or a 429 when the quota would be passed."""
    day = today()
    if not usage.take_images(session, key_id, day, n, quota):
        used = usage.images_made(session, key_id, day)
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        wait = max(1, int((midnight - dt.datetime.now(dt.UTC)).total_seconds()))
        raise APIError(429, f"This key's daily quota of {quota} images is used up ({used} made today, {n} asked "
                            f"for); it resets at 00:00 UTC.", None, "daily_quota_exceeded", kind="insufficient_quota",
                       headers={"Retry-After": str(wait), "x-should-retry": "false"})
    return day


def refund(session: Session, key_id: int | None, day: dt.date | None, n: int) -> None:
    if key_id is not None and day is not None and n:
        usage.give_back_images(session, key_id, day, n)
