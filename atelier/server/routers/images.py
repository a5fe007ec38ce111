"""POST /v1/images/generations, /edits and /variations: OpenAI's image endpoints.

Each request is checked (model, size, prompt, uploads, quota) before it is queued; the model runs
on the worker thread; every image is stored as an asset of the caller's user (a PNG carrying its
generation metadata) and returned as base64 or as a signed link. Multipart bodies are read by hand
so that uploads are counted against the limits, repeated `image[]` parts are seen, and unknown
fields are refused; their schemas are published in the OpenAPI document all the same."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update
from sqlalchemy.dialects.sqlite import insert
from starlette.datastructures import UploadFile

from atelier.edit.inputs import ImageInputError, has_alpha, open_image, read_region, rgb_pixels, transparency
from atelier.metadata import GenerationInfo, png_bytes
from atelier.server.accounts import Principal
from atelier.server.deps import PrincipalDep, ServicesDep
from atelier.server.errors import APIError, describe_validation
from atelier.server.models import Asset, Usage
from atelier.server.schemas import ERRORS, EditForm, GenerationBody, ImageData, ImagesResponse, VariationForm
from atelier.server.services import Services
from atelier.server.signing import sign

router = APIRouter(prefix="/v1/images", tags=["images"])

FILE_FIELDS = {"edits": ("image", "image[]", "mask"), "variations": ("image",)}


def _multipart(model: type[BaseModel], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI request body of a multipart endpoint: the form model's fields plus its files."""
    schema = model.model_json_schema()
    schema["properties"].update(files)
    schema["required"] = sorted({*schema.get("required", []), "image"})
    schema["additionalProperties"] = False
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_BINARY = {"type": "string", "format": "binary"}


@router.post("/generations", response_model=ImagesResponse, response_model_exclude_none=True, responses=ERRORS)
async def generations(body: GenerationBody, request: Request, principal: PrincipalDep,
                      services: ServicesDep) -> dict[str, Any]:
    """Images from a prompt."""
    from atelier.pipeline import GenerationRequest

    pipe = services.pipeline
    _check_model(body.model, services)
    side = _parse_size(body.size, services) or pipe.defaults["size"]
    _check_prompt(body.prompt, services, "prompt")
    _check_prompt(body.negative_prompt or "", services, "negative_prompt")
    job_request = GenerationRequest(body.prompt, body.negative_prompt, body.n, body.seed, body.steps,
                                    body.guidance, side)

    def draw() -> list[Image.Image]:
        return pipe.generate([job_request])[0]

    return await _run(request, services, principal, body.n, draw, body.response_format)


@router.post("/edits", response_model=ImagesResponse, response_model_exclude_none=True, responses=ERRORS,
             openapi_extra=_multipart(EditForm, {"image": _BINARY, "image[]": {"type": "array", "items": _BINARY},
                                                 "mask": _BINARY}))
async def edits(request: Request, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Redraw the area of `image` that `mask` marks (alpha 0 = edit; no mask: the image's own
    transparency). Pixels outside the area are returned exactly as given."""
    form, files = await _read_form(request, services, "edits")
    fields = _validate(EditForm, form)
    _check_model(fields.model, services)
    side = _parse_size(fields.size, services)
    _check_prompt(fields.prompt, services, "prompt")
    _check_prompt(fields.negative_prompt or "", services, "negative_prompt")
    images = files.get("image", []) + files.get("image[]", [])
    if not images:
        raise APIError(400, "missing required parameter 'image'", "image", "missing_required_parameter")
    if len(images) > 1:
        raise APIError(400, f"one image per edit is supported; got {len(images)}", "image", "invalid_value")
    masks = files.get("mask", [])
    if len(masks) > 1:
        raise APIError(400, "give at most one mask", "mask", "invalid_value")
    pixels, region = await run_in_threadpool(_edit_inputs, images[0], masks[0] if masks else None, side)
    pipe = services.pipeline

    def draw() -> list[Image.Image]:
        result = pipe.edit(pixels, region, fields.prompt, negative_prompt=fields.negative_prompt, n=fields.n,
                           seed=fields.seed, steps=fields.steps, guidance=fields.guidance)
        return result.images

    return await _run(request, services, principal, fields.n, draw, fields.response_format)


@router.post("/variations", response_model=ImagesResponse, response_model_exclude_none=True, responses=ERRORS,
             openapi_extra=_multipart(VariationForm, {"image": _BINARY}))
async def variations(request: Request, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Images like `image`, changed by `strength` (SDEdit)."""
    form, files = await _read_form(request, services, "variations")
    fields = _validate(VariationForm, form)
    _check_model(fields.model, services)
    side = _parse_size(fields.size, services)
    images = files.get("image", [])
    if len(images) != 1:
        raise APIError(400, "missing required parameter 'image'" if not images else "give exactly one image",
                       "image", "missing_required_parameter" if not images else "invalid_value")
    pixels, _ = await run_in_threadpool(_edit_inputs, images[0], None, side, False)
    pipe = services.pipeline

    def draw() -> list[Image.Image]:
        return pipe.variations(pixels, strength=fields.strength, n=fields.n, seed=fields.seed,
                               steps=fields.steps).images

    return await _run(request, services, principal, fields.n, draw, fields.response_format)


# --- checks ---------------------------------------------------------------------------------

def _check_model(model: str | None, services: Services) -> None:
    served = services.pipeline.name
    if model is not None and model != served:
        raise APIError(400, f"model '{model}' is not served here; available: {served}", "model", "model_not_found")


def _parse_size(size: str | None, services: Services) -> int | None:
    """The square side a `WxH` size names, or a 400 naming the sizes the model makes."""
    if size is None:
        return None
    allowed = services.model_sizes()
    if size not in allowed:
        raise APIError(400, f"size '{size}' is not supported by model '{services.pipeline.name}'; allowed sizes: "
                            f"{', '.join(allowed)}", "size", "invalid_size")
    return int(size.split("x")[0])


def _check_prompt(prompt: str, services: Services, param: str) -> None:
    limit = services.settings.max_prompt_chars
    if len(prompt) > limit:
        raise APIError(400, f"the {param.replace('_', ' ')} is {len(prompt)} characters long; at most {limit} are "
                            f"accepted", param, "string_above_max_length")


async def _read_form(request: Request, services: Services,
                     endpoint: str) -> tuple[dict[str, str], dict[str, list[UploadFile]]]:
    """The text fields and the files of a multipart body; each file checked against the upload limit."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(400, "send this request as multipart/form-data, with the image as a file part", None,
                       "invalid_content_type")
    form = await request.form(max_files=8, max_fields=32)
    fields: dict[str, str] = {}
    files: dict[str, list[UploadFile]] = {}
    limit = services.settings.max_upload_bytes
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name not in FILE_FIELDS[endpoint]:
                raise APIError(400, f"unexpected file '{name}'; files accepted here: "
                                    f"{', '.join(FILE_FIELDS[endpoint])}", name, "unknown_parameter")
            if value.size is not None and value.size > limit:
                raise APIError(413, f"the file '{name}' is {value.size} bytes; files up to {limit} bytes are "
                                    f"accepted", name, "file_too_large")
            files.setdefault(name, []).append(value)
        elif name in FILE_FIELDS[endpoint]:
            raise APIError(400, f"'{name}' must be a file part (an image), not a text field", name, "invalid_value")
        elif name in fields:
            raise APIError(400, f"parameter '{name}' is given more than once", name, "invalid_value")
        else:
            fields[name] = value
    return fields, files


def _validate(model: type[BaseModel], fields: dict[str, str]):
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        raise APIError(400, *describe_validation(error.errors(include_url=False))) from None


def _edit_inputs(image: UploadFile, mask: UploadFile | None, side: int | None,
                 needs_region: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels [H, W, 3], region [H, W] bool, True = edit) from the uploads, resized to `side` when
    given. OpenAI's convention: the mask's alpha 0 marks the area; it must match the image's size."""
    picture = _open(image, "image")
    region = None
    if needs_region:
        if mask is None:
            try:
                region = read_region(None, picture)
            except ImageInputError as error:
                raise APIError(400, f"{error}; in this API the mask's (or the image's) alpha 0 marks the area",
                               "mask", "invalid_image") from None
        else:
            picture_mask = _open(mask, "mask")
            if not has_alpha(picture_mask):
                raise APIError(400, "the mask has no alpha channel: give a PNG whose fully transparent pixels "
                                    "(alpha 0) mark the area to edit", "mask", "invalid_image")
            if picture_mask.size != picture.size:
                raise APIError(400, f"the mask is {picture_mask.width}x{picture_mask.height} but the image is "
                                    f"{picture.width}x{picture.height}; they must be the same size", "mask",
                               "invalid_image")
            region = transparency(picture_mask)
            if region is None:
                region = np.zeros((picture.height, picture.width), dtype=bool)
        if not region.any():
            raise APIError(400, "the mask marks nothing to edit: no pixel is transparent (alpha 0)", "mask",
                           "invalid_image")
    pixels = rgb_pixels(picture)
    if side is not None and picture.size != (side, side):
        pixels = np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.LANCZOS))
        if region is not None:
            scaled = Image.fromarray(region.astype(np.uint8) * 255).resize((side, side), Image.Resampling.NEAREST)
            region = np.asarray(scaled) >= 128
    return pixels, region


def _open(upload: UploadFile, what: str) -> Image.Image:
    upload.file.seek(0)
    try:
        return open_image(upload.file.read(), what)
    except ImageInputError as error:
        raise APIError(400, str(error), what, "invalid_image") from None



# --- running and answering -------------------------------------------------------------------

async def _run(request: Request, services: Services, principal: Principal, n: int,
               draw: Callable[[], list[Image.Image]], response_format: str) -> dict[str, Any]:
    """Reserve `n` images of the key's daily quota, draw on the worker, store, and answer; the
    reservation is given back when the drawing fails."""
    await run_in_threadpool(_reserve, services, principal, n)
    try:
        stored = await services.worker.run(lambda: _store(services, principal, draw()))
    except ImageInputError as error:
        await run_in_threadpool(_refund, services, principal, n)
        raise APIError(400, str(error), "image", "invalid_image") from None
    except ValueError as error:        # a setting the pipeline refuses, in its words
        await run_in_threadpool(_refund, services, principal, n)
        raise APIError(400, str(error), None, "invalid_value") from None
    except BaseException:
        await run_in_threadpool(_refund, services, principal, n)
        raise
    base = services.settings.public_url or str(request.base_url)
    data = []
    for asset_id, png, info in stored:
        services.metrics.images.labels(info.task).inc()
        item = ImageData(b64_json=base64.b64encode(png).decode()) if response_format == "b64_json" else \
            ImageData(url=asset_url(services, base, asset_id))
        data.append(item)
    return {"created": int(time.time()), "data": data}


def asset_url(services: Services, base: str, asset_id: str) -> str:
    """A link to the asset that works without the key until it expires (settings.url_ttl)."""
    expires = int(time.time()) + services.settings.url_ttl
    return (f"{base.rstrip('/')}/v1/assets/{asset_id}?expires={expires}"
            f"&signature={sign(services.secret, asset_id, expires)}")


def _store(services: Services, principal: Principal, images: list[Image.Image]) -> list[tuple[str, bytes,
                                                                                              GenerationInfo]]:
    """Save each image (PNG with its metadata) as an asset of the principal's user."""
    stored = []
    with services.db.session() as session:
        for image in images:
            info = image.info["atelier"]
            asset_id = "img_" + secrets.token_hex(12)
            png = png_bytes(image, info)
            path = f"{principal.user_id}/{asset_id}.png"
            services.storage.put(path, png)
            session.add(Asset(id=asset_id, user_id=principal.user_id, path=path, kind=info.task,
                              info=info.to_dict()))
            stored.append((asset_id, png, info))
    return stored


def _reserve(services: Services, principal: Principal, n: int) -> None:
    """Count the request and its `n` images against the key's quota for today (UTC), atomically."""
    quota, day = services.settings.daily_quota, _today()
    with services.db.session() as session:
        session.execute(insert(Usage).values(key_id=principal.key_id, day=day, requests=0, images=0)
                        .on_conflict_do_nothing())
        granted = session.execute(
            update(Usage).where(Usage.key_id == principal.key_id, Usage.day == day, Usage.images + n <= quota)
            .values(images=Usage.images + n, requests=Usage.requests + 1)).rowcount
        used = session.scalar(select(Usage.images).where(Usage.key_id == principal.key_id, Usage.day == day))
    if not granted:
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        wait = max(1, int((midnight - dt.datetime.now(dt.UTC)).total_seconds()))
        raise APIError(429, f"This key's daily quota of {quota} images is used up ({used} made today, {n} asked "
                            f"for); it resets at 00:00 UTC.", None, "daily_quota_exceeded", kind="insufficient_quota",
                       headers={"Retry-After": str(wait), "x-should-retry": "false"})


def _refund(services: Services, principal: Principal, n: int) -> None:
    with services.db.session() as session:
        session.execute(update(Usage).where(Usage.key_id == principal.key_id, Usage.day == _today())
                        .values(images=Usage.images - n))


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
