"""GET /v1/models: the served model, in OpenAI's list shape, with the sizes it makes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from atelier.server.deps import PrincipalDep, ServicesDep
from atelier.server.errors import APIError
from atelier.server.schemas import ERRORS, ModelCard, ModelList
from atelier.server.state import Services

router = APIRouter(prefix="/v1/models", tags=["models"])


def _card(services: Services) -> dict[str, Any]:
    pipe = services.pipeline
    index = pipe.path / "model_index.json"
    created = int(index.stat().st_mtime) if index.exists() else 0
    return {"id": pipe.name, "object": "model", "created": created, "owned_by": "atelier",
            "sizes": services.model_sizes()}


@router.get("", response_model=ModelList, responses=ERRORS)
def list_models(_: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    return {"object": "list", "data": [_card(services)]}


@router.get("/{model_id}", response_model=ModelCard, responses=ERRORS)
def get_model(model_id: str, _: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    if model_id != services.pipeline.name:
        raise APIError(404, f"The model '{model_id}' does not exist", "model", "model_not_found")
    return _card(services)
