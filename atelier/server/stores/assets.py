"""Assets: the images jobs made, each owned by a user."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from atelier.server.models import Asset
from atelier.server.stores.paging import newest_first


def asset_by_id(session: Session, asset_id: str) -> Asset | None:
    return session.get(Asset, asset_id)


def user_assets(session: Session, user_id: int, q: str | None, before: str | None, limit: int) -> list[Asset]:
    """Up to limit + 1 of the user's assets, newest first, after the asset `before` (a cursor: a 400
    when it names none of theirs); with `q`, those whose prompt contains it."""
    query = select(Asset).where(Asset.user_id == user_id)
    if q:
        query = query.where(prompt_contains(q))
    return newest_first(session, query, Asset, user_id, before, limit, "image")


def prompt_contains(text: str):
    """A case-insensitive substring test on the prompt in an asset's metadata (LIKE, its wildcards escaped)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(Asset.info["prompt"].as_string()).like(f"%{escaped}%", escape="\\")


def job_siblings(session: Session, asset: Asset) -> list[str]:
    """The ids of the other assets the asset's job made (none for an asset without a job)."""
    if asset.job_id is None:
        return []
    return list(session.scalars(select(Asset.id).where(Asset.job_id == asset.job_id, Asset.id != asset.id)))
