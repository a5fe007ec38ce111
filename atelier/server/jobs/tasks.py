"""What a job can do: each task is an input schema, a batch key and a run function.

`POST /v1/jobs {"task": NAME, "input": {...}}` checks the input against the task's schema when
the job is created. The runner groups running jobs whose `batch_key` is equal into one call of
`run`: text_to_image batches through the pipeline's batch entry point (Atelier.generate); the
editing tasks have their own image each and run alone (key None). Images a job reads (`image`,
`mask`) are an asset id of the caller's (`img_...`) or the file itself in base64 (optionally as
a data: URL); they are decoded once, when the job is created, and kept in storage as PNG files,
so a job in the queue never holds a request's bytes. A task for video or 3D is one more entry."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from atelier.pipeline.inputs import ImageInputError, open_image, read_region, rgb_pixels
from atelier.server.schemas import MAX_N, Extras, Point, Size, Strict
from atelier.server.storage import Storage

Progress = Callable[[int, int], None]
IMAGE_FIELDS = ("image", "mask")
FILES = "files"       # the input's storage keys of its images; internal, never shown


class TextToImage(Extras):
    prompt: str = Field(..., min_length=1)
    n: int = Field(1, ge=1, le=MAX_N)
    size: Size = Field(None, max_length=20, description="WxH, one of the model's sizes (GET /v1/models)")
    sampler: str | None = Field(None, max_length=40)


class ImageTask(Extras):
    image: str = Field(..., min_length=1, description="an asset id of yours (img_...) or the image file in "
                                                      "base64 (or a data: URL)")
    prompt: str = ""
    n: int = Field(1, ge=1, le=MAX_N)


class Edit(ImageTask):
    mask: str | None = Field(None, description="white (or alpha 0) = the area to redraw, as an asset id or "
                                               "base64; default: the image's own transparency")
    context: float | None = Field(None, ge=0, le=4, description="context around the area, in its sizes")


class Variation(ImageTask):
    strength: float = Field(0.6, gt=0, le=1)


class Outpaint(ImageTask):
    left: int = Field(0, ge=0, le=4096)
    right: int = Field(0, ge=0, le=4096)
    top: int = Field(0, ge=0, le=4096)
    bottom: int = Field(0, ge=0, le=4096)


class ReplaceBackground(ImageTask):
    pass


class ReplaceSubject(ImageTask):
    which: int | Point | None = Field(None, description="the object: its index, largest first, or an (x, y) "
                                                        "point on it")


@dataclass(frozen=True)
class Task:
    schema: type[BaseModel]
    batch_key: Callable[[Any, dict[str, Any]], Any]      # (pipeline, input) -> key, None = alone
    run: Callable[[Any, list[dict[str, Any]], Storage, Progress], list[list[Image.Image]]]


def _generation_request(given: dict[str, Any]):
    from atelier.pipeline import GenerationRequest

    size = int(given["size"].split("x")[0]) if given.get("size") else None
    return GenerationRequest(given["prompt"], given.get("negative_prompt"), given["n"], given.get("seed"),
                             given.get("steps"), given.get("guidance"), size, given.get("sampler"))


def _text_to_image_key(pipe, given: dict[str, Any]) -> tuple:
    with warnings.catch_warnings():     # they are raised again, and logged, when the batch runs
        warnings.simplefilter("ignore")
        request = pipe.resolve(_generation_request(given))      # also the check: a bad setting fails this job alone
    return "text_to_image", request.size, request.steps, request.sampler


def _text_to_image(pipe, inputs: list[dict[str, Any]], storage: Storage, progress: Progress) -> list[list[Image.Image]]:
    return pipe.generate([_generation_request(given) for given in inputs], progress=progress)


def _settings(given: dict[str, Any], *names: str) -> dict[str, Any]:
    common = ("prompt", "negative_prompt", "n", "seed", "steps", "guidance")
    return {name: given[name] for name in common + names if given.get(name) is not None}


def _alone(pipe, given: dict[str, Any]) -> None:
    return None


def _editing(method: str, *names: str):
    """A run function calling pipe.<method>(image, [mask,] **settings) for one job."""

    def run(pipe, inputs: list[dict[str, Any]], storage: Storage, progress: Progress) -> list[list[Image.Image]]:
        (given,) = inputs
        files = given[FILES]
        arguments = [load_pixels(storage, files["image"])]
        if method == "edit":
            arguments.append(load_region(storage, files["mask"]))
        settings = _settings(given, *names)
        if "which" in settings and isinstance(settings["which"], list):
            settings["which"] = tuple(settings["which"])
        return [getattr(pipe, method)(*arguments, progress=progress, **settings).images]

    return run


TASKS: dict[str, Task] = {
    "text_to_image": Task(TextToImage, _text_to_image_key, _text_to_image),
    "edit": Task(Edit, _alone, _editing("edit", "context")),
    "variation": Task(Variation, _alone, _editing("variations", "strength")),
    "outpaint": Task(Outpaint, _alone, _editing("outpaint", "left", "right", "top", "bottom")),
    "replace_background": Task(ReplaceBackground, _alone, _editing("replace_background")),
    "replace_subject": Task(ReplaceSubject, _alone, _editing("replace_subject", "which")),
}
TaskName = Literal[tuple(TASKS)]


class JobBody(Strict):
    task: TaskName = Field(..., description="what to do; its input fields are listed under each task's schema")
    input: dict[str, Any] = Field(..., description="the task's settings (see the task schemas)")
    webhook_url: str | None = Field(None, max_length=2048, description="POSTed the job when it finishes, signed "
                                                                       "(Standard Webhooks; GET /v1/webhooks/secret)")


# --- the images a job reads -------------------------------------------------------------------

def decode_upload(text: str, what: str) -> bytes:
    """The bytes of a base64 image, with or without a data: URL's header."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError(f"the {what} is neither an asset id (img_...) nor valid base64") from None


def save_pixels(storage: Storage, key: str, pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    storage.put(key, buffer.getvalue())
    return key


def load_pixels(storage: Storage, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(storage.get(key))).convert("RGB"))


def load_region(storage: Storage, key: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(storage.get(key))).convert("L")) >= 128


def store_images(storage: Storage, user_id: int, job_id: str, picture: Image.Image,
                 region: np.ndarray | None) -> dict[str, str]:
    """Keep a job's image (RGB) and region (white = edit) as PNG files; their storage keys."""
    files = {"image": save_pixels(storage, f"inputs/{user_id}/{job_id}-image.png", rgb_pixels(picture))}
    if region is not None:
        files["mask"] = save_pixels(storage, f"inputs/{user_id}/{job_id}-mask.png", region.astype(np.uint8) * 255)
    return files


def open_inputs(task: str, given: dict[str, Any],
                read_asset: Callable[[str], bytes]) -> tuple[Image.Image, np.ndarray | None]:
    """The job's picture and, for an edit, its region, from asset ids or base64; ImageInputError
    naming the field when one cannot be used."""
    def read(field: str) -> bytes:
        value = given[field]
        return read_asset(value) if value.startswith("img_") else decode_upload(value, field)

    picture = open_image(read("image"), "image")
    if task != "edit":
        return picture, None
    mask = open_image(read("mask"), "mask") if given.get("mask") else None
    return picture, edit_region(mask, picture)


def edit_region(mask: Image.Image | None, picture: Image.Image) -> np.ndarray:
    """The area to redraw [H, W] bool: the mask's transparent pixels (alpha 0, OpenAI's convention)
    when it has some, else its white ones (a black-and-white mask, grey or RGB); without a mask,
    the picture's own transparency. ImageInputError when it marks nothing."""
    region = read_region(mask, picture)
    if not region.any():
        raise ImageInputError("the mask marks nothing to edit: paint the area white (or make it transparent)")
    return region

