"""GET /v1/usage: requests and images per key per UTC day. A user key sees its own user's keys;
an admin key (atelier keys create --scope admin) sees every user's, for accounting."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from atelier.server.deps import PrincipalDep, SessionDep
from atelier.server.errors import APIError
from atelier.server.schemas import ERRORS, UsageList
from atelier.server.stores.usage import usage_rows

router = APIRouter(prefix="/v1/usage", tags=["usage"])


@router.get("", response_model=UsageList, responses=ERRORS)
def usage(principal: PrincipalDep, session: SessionDep,
          everyone: Annotated[bool, Query(alias="all", description="admin keys: every user's usage")] = False,
          days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict[str, Any]:
    if everyone and principal.scope != "admin":
        raise APIError(403, "all=true needs a key with the admin scope", "all", "insufficient_scope")
    rows = usage_rows(session, None if everyone else principal.user_id)
    newest = sorted({row.day for row, _, _ in rows}, reverse=True)[:days]
    return {"object": "list", "data": [
        {"day": row.day.isoformat(), "key": prefix, "user": name, "requests": row.requests, "images": row.images}
        for row, prefix, name in rows if row.day in newest]}
