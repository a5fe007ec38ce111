"""The inference layer users and the server call: `Atelier.from_pretrained(...)` with one method
per task (atelier.pipeline.atelier, editing), the requests and their limits (requests), what
users hand in (inputs, window), and what every output carries: its settings (metadata) and an
invisible watermark (provenance). The server imports this package and nothing below it."""

from atelier.pipeline.atelier import Atelier
from atelier.pipeline.editing import EditResult, NoSubjectError
from atelier.pipeline.requests import (
                                       DEFAULT_MODEL,
                                       MAX_GUIDANCE,
                                       MAX_IMAGES,
                                       MAX_STEPS,
                                       SEED_RANGE,
                                       GenerationRequest,
                                       Progress,
                                       SettingError,
                                       check_request,
                                       model_settings,
)

__all__ = ["DEFAULT_MODEL", "MAX_GUIDANCE", "MAX_IMAGES", "MAX_STEPS", "SEED_RANGE", "Atelier", "EditResult",
           "GenerationRequest", "NoSubjectError", "Progress", "SettingError", "check_request", "model_settings"]
