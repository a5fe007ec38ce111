"""The community's rows: what is public (published and not hidden), likes, reports and feedback;
and the queries of the training export (atelier.server.flywheel), which reads them under the
users' consent."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session, aliased

from atelier.server.models import Asset, Feedback, Like, Report, User, utcnow
from atelier.server.stores.assets import prompt_contains

# --- what is public -----------------------------------------------------------------------------


def _visible() -> Select:
    """Published assets not hidden by a moderator, with their owner's name."""
    return (select(Asset, User.name).join(User, Asset.user_id == User.id)
            .where(Asset.published.is_not(None), Asset.hidden.is_(False)))


def public_asset(session: Session, asset_id: str) -> tuple[Asset, str] | None:
    """The asset and its owner's name when it is public; None otherwise."""
    row = session.execute(_visible().where(Asset.id == asset_id)).first()
    return None if row is None else (row[0], row[1])


def gallery_page(session: Session, q: str | None, sort: Literal["new", "likes"], limit: int,
                 offset: int) -> list[tuple[Asset, str]]:
    """Up to limit + 1 public assets with their owners' names, newest or most liked first; with `q`,
    those whose prompt contains it."""
    query = _visible()
    if q:
        query = query.where(prompt_contains(q))
    order = (Asset.published.desc(),) if sort == "new" else (Asset.likes.desc(), Asset.published.desc())
    return _page(session, query.order_by(*order, Asset.id), limit, offset)


def profile_page(session: Session, user_id: int, limit: int, offset: int) -> list[tuple[Asset, str]]:
    """Up to limit + 1 of the user's public assets with their name, newest first."""
    query = _visible().where(Asset.user_id == user_id).order_by(Asset.published.desc(), Asset.id)
    return _page(session, query, limit, offset)


def profile_counts(session: Session, user_id: int) -> tuple[int, int]:
    """(how many public assets the user has, the likes they received)."""
    shown = _visible().where(Asset.user_id == user_id).subquery()
    count, likes = session.execute(select(func.count(), func.coalesce(func.sum(shown.c.likes), 0))).one()
    return count, int(likes)


def _page(session: Session, query: Select, limit: int, offset: int) -> list[tuple[Asset, str]]:
    return [(asset, owner) for asset, owner in session.execute(query.offset(offset).limit(limit + 1)).all()]


# --- likes --------------------------------------------------------------------------------------


def liked_among(session: Session, user_id: int, asset_ids: list[str]) -> set[str]:
    """Which of the assets the user likes."""
    return set(session.scalars(select(Like.asset_id).where(Like.user_id == user_id, Like.asset_id.in_(asset_ids))))


def add_like(session: Session, user_id: int, asset_id: str) -> None:
    """The user's like of the asset, counted on the asset."""
    session.add(Like(user_id=user_id, asset_id=asset_id))
    session.execute(update(Asset).where(Asset.id == asset_id).values(likes=Asset.likes + 1))


def remove_like(session: Session, user_id: int, asset_id: str) -> None:
    """Take back the user's like of the asset, if there is one, and its count."""
    removed = session.execute(delete(Like).where(Like.user_id == user_id, Like.asset_id == asset_id))
    if removed.rowcount:
        session.execute(update(Asset).where(Asset.id == asset_id).values(likes=Asset.likes - 1))


def current_likes(session: Session, asset: Asset) -> int:
    """The asset's like count as the database has it now (the row read again)."""
    session.refresh(asset)
    return asset.likes


# --- feedback -----------------------------------------------------------------------------------


def record_feedback(session: Session, user_id: int, asset_id: str, kind: str) -> None:
    session.add(Feedback(user_id=user_id, asset_id=asset_id, kind=kind))


def record_keep(session: Session, user_id: int, asset_id: str, others: list[str]) -> None:
    """The user kept this asset of its job: any earlier keep of theirs among the job's assets
    (`others`) is replaced, so one choice per job remains."""
    session.execute(delete(Feedback).where(Feedback.user_id == user_id, Feedback.kind == "keep",
                                           Feedback.asset_id.in_([asset_id, *others])))
    record_feedback(session, user_id, asset_id, "keep")


# --- reports and moderation ---------------------------------------------------------------------


def report_of(session: Session, user_id: int, asset_id: str) -> Report | None:
    """The user's report of the asset, if they made one."""
    return session.scalar(select(Report).where(Report.user_id == user_id, Report.asset_id == asset_id))


def add_report(session: Session, user_id: int, asset_id: str, reason: str) -> None:
    session.add(Report(user_id=user_id, asset_id=asset_id, reason=reason))


def most_reported(session: Session, limit: int) -> list[tuple[str, int, dt.datetime]]:
    """(asset id, open reports, the first one's time) of the assets with open reports, most
    reported first, then the longest waiting."""
    return [(asset_id, count, first) for asset_id, count, first in session.execute(
        select(Report.asset_id, func.count(), func.min(Report.created))
        .where(Report.resolved.is_(None)).group_by(Report.asset_id)
        .order_by(func.count().desc(), func.min(Report.created)).limit(limit)).all()]


def asset_with_owner(session: Session, asset_id: str) -> tuple[Asset, str]:
    """The asset (which must exist) and its owner's name, public or not."""
    asset, owner = session.execute(select(Asset, User.name).join(User, Asset.user_id == User.id)
                                   .where(Asset.id == asset_id)).one()
    return asset, owner


def open_reasons(session: Session, asset_id: str) -> list[str]:
    """The reasons given in the asset's open reports."""
    return list(session.scalars(select(Report.reason).where(Report.asset_id == asset_id, Report.resolved.is_(None))))


def close_reports(session: Session, asset_id: str) -> None:
    """Mark the asset's open reports resolved now."""
    session.execute(update(Report).where(Report.asset_id == asset_id, Report.resolved.is_(None))
                    .values(resolved=utcnow()))


# --- the training export (atelier.server.flywheel) ----------------------------------------------


def consenting_user_ids(session: Session) -> set[int]:
    return set(session.scalars(select(User.id).where(User.training_consent.is_(True))))


def published_by_consenting(session: Session) -> list[Asset]:
    """Public assets of users who consented to training, oldest published first."""
    return list(session.scalars(
        select(Asset).join(User, Asset.user_id == User.id)
        .where(Asset.published.is_not(None), Asset.hidden.is_(False), User.training_consent.is_(True))
        .order_by(Asset.published, Asset.id)))


def keeps_by(session: Session, user_ids: set[int]) -> list[tuple[Feedback, Asset]]:
    """The users' keeps of assets made by a job, with the kept asset, oldest first."""
    return [(feedback, asset) for feedback, asset in session.execute(
        select(Feedback, Asset).join(Asset, Feedback.asset_id == Asset.id)
        .where(Feedback.kind == "keep", Feedback.user_id.in_(user_ids), Asset.job_id.is_not(None))
        .order_by(Feedback.id)).all()]


def kept_asset_ids(session: Session, user_id: int) -> set[str]:
    return set(session.scalars(select(Feedback.asset_id).where(Feedback.user_id == user_id,
                                                               Feedback.kind == "keep")))


def job_assets_except(session: Session, job_id: str, exclude: set[str]) -> list[Asset]:
    """The job's assets but those in `exclude`."""
    return list(session.scalars(select(Asset).where(Asset.job_id == job_id, Asset.id.not_in(exclude))))


def likes_of_public_job_assets(session: Session, user_ids: set[int]) -> list[tuple[Like, Asset]]:
    """The users' likes of public assets made by a job, with the liked asset, oldest first."""
    return [(like, asset) for like, asset in session.execute(
        select(Like, Asset).join(Asset, Like.asset_id == Asset.id)
        .where(Like.user_id.in_(user_ids), Asset.job_id.is_not(None),
               Asset.published.is_not(None), Asset.hidden.is_(False)).order_by(Like.id)).all()]


def liked_asset_ids(session: Session, user_id: int) -> set[str]:
    return set(session.scalars(select(Like.asset_id).where(Like.user_id == user_id)))


def public_job_assets_except(session: Session, job_id: str, exclude: set[str]) -> list[Asset]:
    """The job's public assets but those in `exclude`."""
    sibling = aliased(Asset)
    return list(session.scalars(select(sibling).where(
        sibling.job_id == job_id, sibling.id.not_in(exclude), sibling.published.is_not(None),
        sibling.hidden.is_(False))))
