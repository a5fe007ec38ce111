"""GET /v1/assets (the caller's images: newest first, searchable by prompt, paged with `before`) and
GET /v1/assets/{id} (one image file; `download=1` names it as an attachment).

An image is returned to its owner's key, or to anyone holding a signed link that has not expired
(the url of a `response_format=url` answer). Everyone else gets the same 404 as for an id that does
not exist, so no one learns that another user's image is there. An asset whose file has gone
from the disk while its row remains is a 404 too, logged as an error."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from atelier.server.deps import Credentials, PrincipalDep, ServicesDep, SessionDep, identify
from atelier.server.errors import APIError
from atelier.server.jobs.service import asset_url, base_url
from atelier.server.logs import LOGGER
from atelier.server.models import unix_seconds
from atelier.server.schemas import ERRORS, AssetList
from atelier.server.signing import signature_matches
from atelier.server.stores import assets, community

router = APIRouter(prefix="/v1/assets", tags=["assets"])
NOT_FOUND = "No such asset"
log = logging.getLogger(LOGGER)


@router.get("", response_model=AssetList, responses=ERRORS)
def list_assets(request: Request, principal: PrincipalDep, services: ServicesDep, session: SessionDep,
                limit: Annotated[int, Query(ge=1, le=100)] = 20,
                q: Annotated[str | None, Query(max_length=200, description="words in the prompt (any case)")] = None,
                before: Annotated[str | None, Query(max_length=40, description="an asset id: list older ones")] = None,
                ) -> dict[str, Any]:
    """The caller's user's images, newest first; `q` keeps those whose prompt contains it."""
    rows = assets.user_assets(session, principal.user_id, q, before, limit)
    base = base_url(request, services)
    return {"object": "list", "has_more": len(rows) > limit, "data": [
        {"id": asset.id, "object": "asset", "created": unix_seconds(asset.created),
         "kind": asset.kind, "url": asset_url(services, base, asset.id), "metadata": asset.info,
         "published": asset.published is not None, "hidden": asset.hidden}
        for asset in rows[:limit]]}


@router.get("/{asset_id}", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the image file, with its generation metadata"}, **ERRORS})
async def get_asset(asset_id: Annotated[str, PathParam(max_length=40)], request: Request, services: ServicesDep,
                    credentials: Credentials,
                    expires: Annotated[int | None, Query(ge=0, le=2**62)] = None,
                    signature: Annotated[str | None, Query(max_length=128)] = None,
                    download: Annotated[bool, Query(description="as an attachment named atelier-SEED-ID.png")] = False,
                    ) -> Response:
    if expires is not None or signature is not None:
        if expires is None or signature is None or not signature_matches(services.secret, asset_id, expires,
                                                                          signature):
            raise APIError(404, NOT_FOUND, code="not_found")
        if expires < time.time():
            raise APIError(403, "this link has expired; ask for the image again with your API key", code="expired")
        owner = None
    else:
        owner = (await run_in_threadpool(identify, request, services, credentials)).user_id
    path, info, maker = await run_in_threadpool(_find, services, asset_id, owner)
    try:
        data = await run_in_threadpool(services.storage.get, path)
    except FileNotFoundError:
        log.error("asset %s: its file %s is missing from storage", asset_id, path,
                  extra={"request_id": getattr(request.state, "request_id", None), "asset_id": asset_id})
        raise APIError(404, f"the image file of asset {asset_id} is missing on the server; make the image again",
                       code="asset_file_missing") from None
    headers = {"Cache-Control": "private, max-age=3600"}
    if download:
        seed = info.get("seed")
        name = f"atelier-{seed}-{asset_id}.png" if isinstance(seed, int) else f"atelier-{asset_id}.png"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        # feedback: who keeps a copy (a signed link is the owner's to hand out, so theirs when anonymous)
        await run_in_threadpool(_record_download, services, owner or maker, asset_id)
    return Response(data, media_type="image/png", headers=headers)


def _record_download(services, user_id: int, asset_id: str) -> None:
    with services.db.session() as session:
        community.record_feedback(session, user_id, asset_id, "download")


def _find(services, asset_id: str, owner: int | None) -> tuple[str, dict[str, Any], int]:
    """The asset's storage key, metadata and owner, or the 404 of an asset that does not exist or is
    not the owner's."""
    with services.db.session() as session:
        asset = assets.asset_by_id(session, asset_id)
        if asset is None or (owner is not None and asset.user_id != owner):
            raise APIError(404, NOT_FOUND, code="not_found")
        return asset.path, asset.info or {}, asset.user_id
