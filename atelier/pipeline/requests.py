"""What a generation asks for and the limits it is held to: `GenerationRequest`, the settings'
ranges, and `check_request`, the one place they are checked. It needs only a model folder's
model_index.json (`model_settings`), so the CLI refuses a bad setting before any weights load,
and the pipeline, the editor and the server check with the same words."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from atelier.bundle import read_index
from atelier.weights import shipped

DEFAULT_MODEL = shipped("default")
MAX_IMAGES = 16           # per request
MAX_STEPS = 1000
MAX_GUIDANCE = 30.0
SEED_RANGE = 2 ** 32      # seeds are 0 .. 2^32 - 1, as in most tools (a seed + k must stay in range)

Progress = Callable[[int, int], None]  # (sampling steps done, total) over the whole call


class SettingError(ValueError):
    """A setting out of its range: `setting` (the parameter's name), what it must be, and the value given."""

    def __init__(self, setting: str, rule: str, value: Any):
        super().__init__(f"{setting} {rule}, got {value!r}")
        self.setting, self.rule, self.value = setting, rule, value


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt's images; settings left None take the model's defaults (model_index.json)."""

    prompt: str
    negative_prompt: str | None = None
    n: int = 1
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    size: int | None = None
    sampler: str | None = None


def model_settings(path: str | Path | None = None) -> tuple[dict[str, Any], str]:
    """(defaults, name) of the model folder at `path` (default DEFAULT_MODEL), read from its
    model_index.json without loading any weights: what check_request needs."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    return read_index(path)["defaults"], path.resolve().name


def supported_sizes(defaults: dict[str, Any]) -> tuple[int, ...]:
    """The image sides a model makes, from its defaults (model_index.json)."""
    return tuple(defaults.get("sizes") or [defaults["size"]])


def check_request(request: GenerationRequest, defaults: dict[str, Any], model: str) -> GenerationRequest:
    """The request with `defaults` (a model's, model_index.json) filled in and every setting checked:
    SettingError for the first out of range. The prompts are stripped; a missing seed is drawn."""
    from atelier.flow.samplers import SAMPLERS

    if not isinstance(request.prompt, str):
        raise ValueError(f"the prompt must be a string, got {type(request.prompt).__name__}")
    if request.negative_prompt is not None and not isinstance(request.negative_prompt, str):
        raise ValueError("the negative prompt must be a string")
    steps = defaults["steps"] if request.steps is None else request.steps
    guidance = defaults["guidance"] if request.guidance is None else request.guidance
    size = defaults["size"] if request.size is None else request.size
    sampler = defaults["sampler"] if request.sampler is None else request.sampler
    seed = random.randrange(SEED_RANGE - MAX_IMAGES) if request.seed is None else request.seed
    if not _integer(request.n) or not 1 <= request.n <= MAX_IMAGES:
        raise SettingError("n", f"must be a whole number from 1 to {MAX_IMAGES}", request.n)
    if not _integer(steps) or not 1 <= steps <= MAX_STEPS:
        raise SettingError("steps", f"must be a whole number from 1 to {MAX_STEPS}", steps)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) \
            or not 0 <= guidance <= MAX_GUIDANCE:
        raise SettingError("guidance", f"must be a number from 0 to {MAX_GUIDANCE:g}", guidance)
    sizes = supported_sizes(defaults)
    if size not in sizes:
        allowed = ", ".join(map(str, sizes))
        raise SettingError("size", f"must be one of the sizes the model {model!r} makes: {allowed}", size)
    if sampler not in SAMPLERS:
        raise SettingError("sampler", f"must be one of {', '.join(SAMPLERS)}", sampler)
    if not _integer(seed) or not 0 <= seed <= SEED_RANGE - request.n:
        raise SettingError("seed", f"must be a whole number from 0 to {SEED_RANGE - request.n}", seed)
    return replace(request, prompt=request.prompt.strip(), negative_prompt=(request.negative_prompt or "").strip(),
                   seed=seed, steps=steps, guidance=float(guidance), size=size, sampler=sampler)


def _integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def progress_bar(total: int) -> Progress:
    """A tqdm bar over `total` sampling steps, as a Progress callback (closed when done)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="step", desc="sampling", leave=False, dynamic_ncols=True)

    def report(done: int, _: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return report
