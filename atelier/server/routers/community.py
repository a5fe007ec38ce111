"""The community: publishing, the gallery, likes, remixes, profiles, reports and their moderation,
and the account (training consent, deletion). The studio uses these endpoints, as can any client.

Everything a user publishes is private until they publish it, and a hidden item (an admin's
decision on a report) is gone from every public list. Publishing, liking and reporting have rate
limits of their own (settings.publish_limit, like_limit, report_limit per hour), on top of the
per-key request limit."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from pydantic import Field
from sqlalchemy.orm import Session

from atelier.server.accounts import Principal
from atelier.server.deps import PrincipalDep, ServicesDep, SessionDep
from atelier.server.errors import APIError
from atelier.server.jobs.service import asset_url, base_url
from atelier.server.models import Asset, unix_seconds, utcnow
from atelier.server.schemas import ERRORS, Strict
from atelier.server.state import Services
from atelier.server.stores import assets, community, users

router = APIRouter(prefix="/v1", tags=["community"])
AssetId = Annotated[str, PathParam(max_length=40)]
NOT_FOUND = "No such image"


class ReportBody(Strict):
    reason: str = Field(..., min_length=1, max_length=500, description="what is wrong with it, in a few words")


class HideBody(Strict):
    hidden: bool = True


class AccountBody(Strict):
    training_consent: bool = Field(..., description="may your published images and your feedback train models")


class DeleteAccountBody(Strict):
    confirm: str = Field(..., max_length=100, description="your user name, to confirm")


def _limit(services: Services, action: str, principal: Principal) -> None:
    wait = services.actions[action].acquire(principal.user_id).wait
    if wait:
        limit = getattr(services.settings, f"{action}_limit")
        raise APIError(429, f"You can {action} at most {limit} time{'s' if limit != 1 else ''} an hour; try "
                            f"again in {wait} s.",
                       code="rate_limit_exceeded", headers={"Retry-After": str(wait)})


def item(asset: Asset, owner: str, services: Services, base: str, liked: bool | None = None) -> dict[str, Any]:
    """A gallery item: the image (a signed link), how it was made, who made it, its likes."""
    info = asset.info
    return {"id": asset.id, "object": "gallery_item", "url": asset_url(services, base, asset.id), "task": asset.kind,
            "prompt": info.get("prompt", ""), "negative_prompt": info.get("negative_prompt", ""),
            "seed": info.get("seed"), "steps": info.get("steps"), "guidance": info.get("guidance"),
            "size": info.get("size"), "owner": owner, "likes": asset.likes, "liked": liked,
            "published": unix_seconds(asset.published), "created": unix_seconds(asset.created)}


def _own(session: Session, asset_id: str, principal: Principal) -> Asset:
    asset = assets.asset_by_id(session, asset_id)
    if asset is None or asset.user_id != principal.user_id:
        raise APIError(404, NOT_FOUND, "asset_id", "not_found")
    return asset


def _public(session: Session, asset_id: str) -> tuple[Asset, str]:
    row = community.public_asset(session, asset_id)
    if row is None:
        raise APIError(404, NOT_FOUND, "asset_id", "not_found")
    return row


def _public_items(session: Session, services: Services, request: Request, principal: Principal,
                  rows: list[tuple[Asset, str]], limit: int) -> dict[str, Any]:
    """A page of public items from up to limit + 1 (asset, owner) rows, each saying whether the caller likes it."""
    liked = community.liked_among(session, principal.user_id, [asset.id for asset, _ in rows])
    base = base_url(request, services)
    return {"object": "list", "data": [item(asset, owner, services, base, asset.id in liked)
                                       for asset, owner in rows[:limit]], "has_more": len(rows) > limit}


# --- publishing and feedback on one's own images ----------------------------------------------

@router.post("/assets/{asset_id}/publish", responses=ERRORS)
def publish(asset_id: AssetId, request: Request, principal: PrincipalDep, services: ServicesDep,
            session: SessionDep) -> dict[str, Any]:
    """Show one of your images in the public gallery and on your profile."""
    asset = _own(session, asset_id, principal)
    if asset.hidden:
        raise APIError(403, "A moderator hid this image after a report; it cannot be published again.", "asset_id",
                       "hidden_by_moderator")
    if asset.published is None:
        _limit(services, "publish", principal)
        asset.published = utcnow()
    return item(asset, principal.user_name, services, base_url(request, services))


@router.post("/assets/{asset_id}/unpublish", responses=ERRORS)
def unpublish(asset_id: AssetId, request: Request, principal: PrincipalDep, services: ServicesDep,
              session: SessionDep) -> dict[str, Any]:
    """Take one of your images out of the gallery (its likes are kept for if you publish it again)."""
    asset = _own(session, asset_id, principal)
    asset.published = None
    return item(asset, principal.user_name, services, base_url(request, services))


@router.post("/assets/{asset_id}/keep", responses=ERRORS)
def keep(asset_id: AssetId, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """Say this is the one you kept of the images its job made: the others become its 'rejected'
    side in preference pairs (atelier feedback export, with your consent). One choice per job: a
    later keep replaces an earlier one, so changing your mind leaves exactly the last choice."""
    asset = _own(session, asset_id, principal)
    others = assets.job_siblings(session, asset)
    community.record_keep(session, principal.user_id, asset.id, others)
    return {"kept": asset.id, "others": others}


# --- the gallery --------------------------------------------------------------------------------

@router.get("/gallery", responses=ERRORS)
def gallery(request: Request, principal: PrincipalDep, services: ServicesDep, session: SessionDep,
            q: Annotated[str | None, Query(max_length=200, description="words in the prompt")] = None,
            sort: Literal["new", "likes"] = "new", limit: Annotated[int, Query(ge=1, le=100)] = 24,
            offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> dict[str, Any]:
    """Published images, newest or most liked first, optionally those whose prompt has `q`."""
    rows = community.gallery_page(session, q, sort, limit, offset)
    return _public_items(session, services, request, principal, rows, limit)


@router.get("/gallery/{asset_id}", responses=ERRORS)
def gallery_item(asset_id: AssetId, request: Request, principal: PrincipalDep, services: ServicesDep,
                 session: SessionDep) -> dict[str, Any]:
    asset, owner = _public(session, asset_id)
    return item(asset, owner, services, base_url(request, services),
                asset.id in community.liked_among(session, principal.user_id, [asset.id]))


@router.post("/gallery/{asset_id}/like", responses=ERRORS)
def like(asset_id: AssetId, principal: PrincipalDep, services: ServicesDep, session: SessionDep) -> dict[str, Any]:
    asset, _ = _public(session, asset_id)
    if not community.liked_among(session, principal.user_id, [asset.id]):
        _limit(services, "like", principal)
        community.add_like(session, principal.user_id, asset.id)
    return {"id": asset.id, "likes": community.current_likes(session, asset), "liked": True}


@router.delete("/gallery/{asset_id}/like", responses=ERRORS)
def unlike(asset_id: AssetId, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    asset, _ = _public(session, asset_id)
    community.remove_like(session, principal.user_id, asset.id)
    return {"id": asset.id, "likes": community.current_likes(session, asset), "liked": False}


@router.get("/gallery/{asset_id}/remix", responses=ERRORS)
def remix(asset_id: AssetId, services: ServicesDep, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """The job that makes this image again, to change and send (POST /v1/jobs): the studio's Remix."""
    asset, _ = _public(session, asset_id)
    info = asset.info
    given = {"prompt": info.get("prompt") or " ", "negative_prompt": info.get("negative_prompt") or None,
             "seed": info.get("seed"), "steps": info.get("steps"), "guidance": info.get("guidance"),
             "size": f"{info['size']}x{info['size']}" if info.get("size") else None}
    return {"task": "text_to_image", "input": {name: value for name, value in given.items() if value is not None},
            "source": asset.id}


@router.post("/gallery/{asset_id}/report", status_code=202, responses=ERRORS)
def report(asset_id: AssetId, body: ReportBody, principal: PrincipalDep, services: ServicesDep,
           session: SessionDep) -> dict[str, Any]:
    """Tell the moderators an image should not be shown. One open report per person and image."""
    asset, _ = _public(session, asset_id)
    if community.report_of(session, principal.user_id, asset.id) is None:
        _limit(services, "report", principal)
        community.add_report(session, principal.user_id, asset.id, body.reason)
    return {"id": asset.id, "reported": True}


@router.get("/profiles/{name}", responses=ERRORS)
def profile(name: Annotated[str, PathParam(max_length=100)], request: Request, principal: PrincipalDep,
            services: ServicesDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 24,
            offset: Annotated[int, Query(ge=0, le=100_000)] = 0) -> dict[str, Any]:
    """A user's public page: their published images, newest first, and the likes they received."""
    user = users.user_named(session, name)
    if user is None:
        raise APIError(404, f"No user named {name}", "name", "not_found")
    published, likes = community.profile_counts(session, user.id)
    rows = community.profile_page(session, user.id, limit, offset)
    page = _public_items(session, services, request, principal, rows, limit)
    return {"object": "profile", "name": user.name, "joined": unix_seconds(user.created), "published": published,
            "likes": likes, "items": page["data"], "has_more": page["has_more"]}


# --- moderation ---------------------------------------------------------------------------------

def _admin(principal: Principal, session: Session, request: Request) -> None:
    """An admin key, or the studio session of a user who holds an unrevoked admin key (never a plain
    user key of that user: only the key meant for it, or the signed-in person, moderates)."""
    if principal.scope == "admin":
        return
    signed_in = getattr(request.state, "browser_session", None) is not None
    if not (signed_in and users.has_admin_key(session, principal.user_id)):
        raise APIError(403, "This needs an admin key (atelier keys create --user NAME --scope admin), or the "
                            "studio signed in as its user.",
                       code="admin_only")


@router.get("/admin/reports", responses=ERRORS)
def open_reports(request: Request, principal: PrincipalDep, services: ServicesDep, session: SessionDep,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """Reported images not yet decided, most reported first, with every reason given."""
    _admin(principal, session, request)
    base, data = base_url(request, services), []
    for asset_id, count, _ in community.most_reported(session, limit):
        asset, owner = community.asset_with_owner(session, asset_id)
        reasons = community.open_reasons(session, asset_id)
        data.append(item(asset, owner, services, base) | {"reports": count, "reasons": reasons,
                                                          "hidden": asset.hidden})
    return {"object": "list", "data": data}


@router.post("/admin/assets/{asset_id}/hide", responses=ERRORS)
def hide(asset_id: AssetId, body: HideBody, request: Request, principal: PrincipalDep,
         session: SessionDep) -> dict[str, Any]:
    """Hide an image from every public list (or show it again), and close its open reports."""
    _admin(principal, session, request)
    asset = assets.asset_by_id(session, asset_id)
    if asset is None:
        raise APIError(404, NOT_FOUND, "asset_id", "not_found")
    asset.hidden = body.hidden
    community.close_reports(session, asset_id)
    return {"id": asset.id, "hidden": asset.hidden}


# --- the account --------------------------------------------------------------------------------

@router.get("/account", responses=ERRORS)
def account(principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    user = users.user_by_id(session, principal.user_id)
    return {"object": "account", "name": user.name, "joined": unix_seconds(user.created),
            "training_consent": user.training_consent}


@router.patch("/account", responses=ERRORS)
def update_account(body: AccountBody, principal: PrincipalDep, session: SessionDep) -> dict[str, Any]:
    """Choose whether your published images and your feedback may be used to train models."""
    user = users.user_by_id(session, principal.user_id)
    user.training_consent = body.training_consent
    return {"object": "account", "name": user.name, "joined": unix_seconds(user.created),
            "training_consent": user.training_consent}


@router.delete("/account", responses=ERRORS)
def delete_account(body: DeleteAccountBody, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Delete your account: your images and their files, jobs, keys, likes, reports and feedback."""
    if body.confirm != principal.user_name:
        raise APIError(400, f"to delete the account, send confirm: \"{principal.user_name}\"", "confirm",
                       "confirmation_mismatch")
    with services.db.session() as session:
        files = users.delete_user(session, principal.user_id)
    for key in files:          # after the commit: a failed deletion leaves files, never rows without them
        services.storage.delete(key)
    return {"deleted": principal.user_name, "images": sum(1 for key in files if not key.startswith("inputs/"))}

