"""POST /v1/images/generations, /edits and /variations: OpenAI's image endpoints.

Each request is checked (model, size, prompt, uploads, quota), then runs as a job
(atelier.server.jobs) that the answer waits for: batched with other requests, durable across a
restart, listed at GET /v1/jobs. Every image is stored as an asset of the caller's user (a PNG
carrying its generation metadata) and returned as base64 or as a signed link. Multipart bodies are read by hand
so that uploads are counted against the limits, repeated `image[]` parts are seen, and unknown
fields are refused; their schemas are published in the OpenAPI document all the same. As in
OpenAI's API, an empty form field (`curl -F size=`) counts as absent, and the names of OpenAI's
image models (dall-e-*, gpt-image-*, the defaults of many tools) are aliases of the served model."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from atelier.pipeline.inputs import ImageInputError, open_image, rgb_pixels
from atelier.server.accounts import Principal
from atelier.server.deps import PrincipalDep, ServicesDep
from atelier.server.errors import APIError, describe_validation
from atelier.server.jobs import service, store
from atelier.server.jobs.tasks import edit_region
from atelier.server.schemas import ERRORS, EditForm, GenerationBody, ImageData, ImagesResponse, VariationForm
from atelier.server.state import Services

router = APIRouter(prefix="/v1/images", tags=["images"])

FILE_FIELDS = {"edits": ("image", "image[]", "mask"), "variations": ("image",)}
OPENAI_MODELS = ("dall-e-", "gpt-image-")      # name prefixes taken as aliases of the served model


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
    _check_model(body.model, services)
    service.parse_size(body.size, services)
    service.check_prompt(body.prompt, services, "prompt")
    service.check_prompt(body.negative_prompt or "", services, "negative_prompt")
    given = body.model_dump(include={"prompt", "negative_prompt", "n", "seed", "steps", "guidance", "size"},
                            exclude_none=True)
    return await _run(request, services, principal, "text_to_image", given, None, body.response_format)


@router.post("/edits", response_model=ImagesResponse, response_model_exclude_none=True, responses=ERRORS,
             openapi_extra=_multipart(EditForm, {"image": _BINARY, "image[]": {"type": "array", "items": _BINARY},
                                                 "mask": _BINARY}))
async def edits(request: Request, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Redraw the area of `image` that `mask` marks: its transparent pixels (alpha 0, OpenAI's
    convention), or, on a mask without transparency, its white ones; no mask: the image's own
    transparency. Pixels outside the area are returned exactly as given."""
    form, files = await _read_form(request, services, "edits")
    fields = _validate(EditForm, form)
    _check_model(fields.model, services)
    side = service.parse_size(fields.size, services)
    service.check_prompt(fields.prompt, services, "prompt")
    service.check_prompt(fields.negative_prompt or "", services, "negative_prompt")
    images = files.get("image", []) + files.get("image[]", [])
    if not images:
        raise APIError(400, "missing required parameter 'image'", "image", "missing_required_parameter")
    if len(images) > 1:
        raise APIError(400, f"one image per edit is supported; got {len(images)}", "image", "invalid_value")
    masks = files.get("mask", [])
    if len(masks) > 1:
        raise APIError(400, "give at most one mask", "mask", "invalid_value")
    pixels, region = await run_in_threadpool(_edit_inputs, images[0], masks[0] if masks else None, side)
    given = fields.model_dump(include={"prompt", "negative_prompt", "n", "seed", "steps", "guidance"},
                              exclude_none=True) | {"image": "(uploaded)", "mask": "(uploaded)"}
    return await _run(request, services, principal, "edit", given, (Image.fromarray(pixels), region),
                      fields.response_format)


@router.post("/variations", response_model=ImagesResponse, response_model_exclude_none=True, responses=ERRORS,
             openapi_extra=_multipart(VariationForm, {"image": _BINARY}))
async def variations(request: Request, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Images like `image`, changed by `strength` (SDEdit)."""
    form, files = await _read_form(request, services, "variations")
    fields = _validate(VariationForm, form)
    _check_model(fields.model, services)
    side = service.parse_size(fields.size, services)
    images = files.get("image", [])
    if len(images) != 1:
        raise APIError(400, "missing required parameter 'image'" if not images else "give exactly one image",
                       "image", "missing_required_parameter" if not images else "invalid_value")
    pixels, _ = await run_in_threadpool(_edit_inputs, images[0], None, side, False)
    given = fields.model_dump(include={"n", "seed", "steps", "strength"}, exclude_none=True) | {"image": "(uploaded)"}
    return await _run(request, services, principal, "variation", given, (Image.fromarray(pixels), None),
                      fields.response_format)


# --- checks ---------------------------------------------------------------------------------

def _check_model(model: str | None, services: Services) -> None:
    """None, the served model's name, or an OpenAI model's name (an alias of it); a 400 otherwise."""
    served = services.pipeline.name
    if model is not None and model != served and not model.startswith(OPENAI_MODELS):
        raise APIError(400, f"model '{model}' is not served here; available: {served} (OpenAI's model names, "
                            f"{'*, '.join(OPENAI_MODELS)}*, are aliases of it)", "model", "model_not_found")


async def _read_form(request: Request, services: Services,
                     endpoint: str) -> tuple[dict[str, str], dict[str, list[UploadFile]]]:
    """The text fields and the files of a multipart body; each file checked against the upload limit.
    An empty text field is left out, as if it had not been sent."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(415, "send this request as multipart/form-data, with the image as a file part", None,
                       "unsupported_media_type")
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
        elif value == "":
            continue
        elif name in FILE_FIELDS[endpoint]:
            raise APIError(400, f"'{name}' must be a file part (an image), not a text field", name, "invalid_value")
        elif name in fields:
            raise APIError(400, f"parameter '{name}' is given more than once", name, "invalid_value")
        else:
            fields[name] = value
    return fields, files


def _validate(model: type[BaseModel], fields: dict[str, str]):
    """The form's fields, all strings, parsed into `model`'s types ("2" is 2 here, unlike in JSON)."""
    try:
        return model.model_validate(fields, strict=False)
    except ValidationError as error:
        raise APIError(400, *describe_validation(error.errors(include_url=False))) from None


def _edit_inputs(image: UploadFile, mask: UploadFile | None, side: int | None,
                 needs_region: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels [H, W, 3], region [H, W] bool, True = edit) from the uploads, resized to `side` when
    given. The mask must match the image's size; tasks.edit_region says which of its pixels mark the area."""
    picture = _open(image, "image")
    region = None
    if needs_region:
        picture_mask = None if mask is None else _open(mask, "mask")
        if picture_mask is not None and picture_mask.size != picture.size:
            raise APIError(400, f"the mask is {picture_mask.width}x{picture_mask.height} but the image is "
                                f"{picture.width}x{picture.height}; they must be the same size", "mask",
                           "invalid_image")
        try:
            region = edit_region(picture_mask, picture)
        except ImageInputError as error:
            raise APIError(400, str(error), "mask", "invalid_image") from None
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

async def _run(request: Request, services: Services, principal: Principal, task: str, given: dict[str, Any],
               pictures: tuple[Image.Image, np.ndarray | None] | None, response_format: str) -> dict[str, Any]:
    """Run the request as a job (its `n` images reserved of the key's daily quota and given back if
    it fails), wait for it, and answer in OpenAI's shape."""
    job, _ = await run_in_threadpool(service.create, services, principal, task, given, pictures=pictures)
    await service.enqueue(services, job.id)
    job = await service.wait(services, job.id, principal.user_id, None)
    if job.status != store.SUCCEEDED:
        code = (job.error or {}).get("code", "internal_error")
        message = (job.error or {}).get("message", f"the job {job.status}")
        if code in ("invalid_value", "invalid_image"):
            raise APIError(400, message, "image" if code == "invalid_image" else None, code)
        raise APIError(500 if code != "canceled" else 409, f"{message} (job {job.id})", None, code)
    base = service.base_url(request, services)
    data = []
    for asset_id in job.result["assets"]:
        if response_format == "b64_json":
            png = await run_in_threadpool(services.storage.get, store.asset_path(principal.user_id, asset_id))
            data.append(ImageData(b64_json=base64.b64encode(png).decode()))
        else:
            data.append(ImageData(url=service.asset_url(services, base, asset_id)))
        services.metrics.images.labels(task).inc()
    return {"created": int(time.time()), "data": data}
