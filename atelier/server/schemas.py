"""Request and response bodies (pydantic), strict: an unknown field, a value out of range or of
another JSON type (`"n": "2"`, `"n": true`) is a 400 naming it. Multipart forms, whose fields are
all strings (as the openai client sends them), are validated with strict=False, so "2" is 2 there.
Fields follow OpenAI's images API; `seed`, `steps`, `guidance`, `negative_prompt` and `strength`
are Atelier's extras. OpenAI's `quality`, `style` and `user` are accepted and ignored, so existing
clients that send them work unchanged."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat
from pydantic import Strict as StrictTypes

from atelier.pipeline import MAX_GUIDANCE, MAX_STEPS, SEED_RANGE

MAX_N = 10          # OpenAI's limit per request
MAX_SEED = SEED_RANGE - MAX_N   # seed + k stays in range for every image k
ResponseFormat = Literal["url", "b64_json"]


# an (x, y) point: a JSON array of two numbers (strict mode alone takes only a Python tuple)
Point = Annotated[tuple[StrictFloat, StrictFloat], StrictTypes(False)]
# WxH; "auto", gpt-image's default, is the same as no size: the model's own
Size = Annotated[str | None, BeforeValidator(lambda size: None if size == "auto" else size)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Extras(Strict):
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="image k uses seed + k (default: random)")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="sampling steps (default: the model's)")
    guidance: float | None = Field(None, ge=0, le=MAX_GUIDANCE, description="classifier-free guidance scale")
    negative_prompt: str | None = Field(None, max_length=4000, description="what the images should not show")


class GenerationBody(Extras):
    prompt: str = Field(..., min_length=1, description="what the image should show (at most the server's "
                                                       "max_prompt_chars, 4000 by default)")
    model: str | None = Field(None, max_length=200, description="a model id from GET /v1/models")
    n: int = Field(1, ge=1, le=MAX_N)
    size: Size = Field(None, max_length=20, description="WxH, one of the model's sizes (GET /v1/models)")
    response_format: ResponseFormat = "url"
    quality: str | None = Field(None, max_length=20, description="accepted for compatibility; ignored")
    style: str | None = Field(None, max_length=20, description="accepted for compatibility; ignored")
    user: str | None = Field(None, max_length=200, description="accepted for compatibility; ignored")


class EditForm(Extras):
    prompt: str = Field("", description="what the whole result should show")
    model: str | None = Field(None, max_length=200)
    n: int = Field(1, ge=1, le=MAX_N)
    size: Size = Field(None, max_length=20, description="WxH: the image is resized to it first; "
                                                               "default: edited at its own size")
    response_format: ResponseFormat = "url"
    user: str | None = Field(None, max_length=200)


class VariationForm(Strict):
    model: str | None = Field(None, max_length=200)
    n: int = Field(1, ge=1, le=MAX_N)
    size: Size = Field(None, max_length=20, description="WxH: the image is resized to it first")
    response_format: ResponseFormat = "url"
    user: str | None = Field(None, max_length=200)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    strength: float = Field(0.6, gt=0, le=1, description="how much to change: 0.2 small changes, 1 a new image")


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "atelier"
    sizes: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AssetCard(BaseModel):
    id: str
    object: Literal["asset"] = "asset"
    created: int
    kind: str
    url: str
    metadata: dict
    published: bool = False     # shown in the public gallery (POST /v1/assets/{id}/publish)
    hidden: bool = False        # hidden by a moderator after a report: it cannot be published again


class AssetList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AssetCard]
    has_more: bool = False


class UsageRecord(BaseModel):
    day: str
    key: str            # the key's prefix
    user: str
    requests: int
    images: int


class UsageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UsageRecord]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 413, 429)}
