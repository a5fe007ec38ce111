"""Lists of a user's rows, newest first, paged with a cursor (`before`: the last id seen), which
stays right while new rows arrive, unlike an offset."""

from __future__ import annotations

from atelier.server.errors import APIError


def newest_first(session, query, model, user_id: int, before: str | None, limit: int, what: str) -> list:
    """Up to limit + 1 of the user's rows of `query`, newest first (created, then id, descending),
    starting after the row `before` names (a cursor); a 400 when it names none of theirs. One more
    than asked, so the caller can say has_more."""
    if before is not None:
        cursor = session.get(model, before)
        if cursor is None or cursor.user_id != user_id:
            raise APIError(400, f"'before' names no {what} of yours: {before}", "before", "invalid_value")
        query = query.where((model.created < cursor.created) |
                            ((model.created == cursor.created) & (model.id < cursor.id)))
    return list(session.scalars(query.order_by(model.created.desc(), model.id.desc()).limit(limit + 1)))
