"""POST /v1/masks: the automatic mask of replace_background or replace_subject, before any edit.

The studio shows it on the canvas for the designer to refine with the brush, then sends an `edit`
job with the refined mask. The region comes from the pipeline's own automatic_region (the same
code replace_background and replace_subject use), run on the model thread."""

from __future__ import annotations

import base64
import io
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from PIL import Image
from pydantic import Field

from atelier.pipeline.editing import NoSubjectError
from atelier.pipeline.inputs import ImageInputError
from atelier.server.deps import PrincipalDep, ServicesDep
from atelier.server.errors import APIError
from atelier.server.jobs import service
from atelier.server.jobs.tasks import open_inputs
from atelier.server.schemas import ERRORS, Point, Strict

router = APIRouter(prefix="/v1/masks", tags=["masks"])


class MaskBody(Strict):
    image: str = Field(..., min_length=1, description="an asset id of yours (img_...) or the image file in base64 "
                                                      "(or a data: URL)")
    kind: Literal["background", "subject"] = Field(..., description="the area replace_background or "
                                                                    "replace_subject would redraw")
    which: int | Point | None = Field(None, description="kind subject: one object, by index (0 the largest) "
                                                        "or an (x, y) point on it")


@router.post("", responses=ERRORS)
async def automatic_mask(body: MaskBody, principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """{"mask": a PNG in base64 of the image's size, white = the area to redraw; "objects": how many the
    segmenter found}."""
    try:
        picture, _ = await run_in_threadpool(open_inputs, "mask", {"image": body.image},
                                             lambda asset_id: service.read_asset(services, principal, asset_id))
    except ImageInputError as error:
        raise APIError(400, str(error), "image", "invalid_image") from None
    pipe = services.pipeline
    try:
        found = await services.model_thread.run(lambda: pipe.automatic_region(picture, body.kind, body.which))
    except NoSubjectError:
        raise APIError(400, "No subject was found in this image, so there is no automatic mask. Paint the area "
                            "to replace with the brush instead.", "image", "no_subject") from None
    except ValueError as error:          # an object index out of range, a point on no object
        raise APIError(400, str(error)[:1].upper() + str(error)[1:] + ".", "which", "invalid_value") from None
    buffer = io.BytesIO()
    Image.fromarray(found.region.astype(np.uint8) * 255).save(buffer, format="PNG")
    return {"object": "mask", "kind": body.kind, "mask": base64.b64encode(buffer.getvalue()).decode(),
            "width": picture.width, "height": picture.height, "objects": found.objects}
