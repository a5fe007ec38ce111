"""The training recipe per preset: the defaults of `atelier train model`, chosen by measurement.

One file, read by the CLI, the GPU script (scripts/gpu_checks.sh runs `atelier train model` with
only the preset, budget and device flags) and the recipe benchmark (atelier.bench.recipe), so a
recipe lives in exactly one place. docs/recipe.md holds the arms that were measured, their
scores and why these values won. Torch-free: the CLI reads it before importing anything heavy.
"""

from __future__ import annotations

from typing import Any

# TrainConfig fields per preset; a preset without an entry takes TrainConfig's own defaults.
RECIPES: dict[str, dict[str, Any]] = {
    "tiny": {"lr": 1e-3, "warmup": 100, "batch": 32, "ema_decay": 0.999},
}

# How a freshly trained model samples by default (written into its folder's model_index.json);
# a fine-tuned model keeps the defaults of the model it started from.
SAMPLING: dict[str, Any] = {"steps": 10, "sampler": "multistep", "guidance": 4.0}


def recipe(preset: str) -> dict[str, Any]:
    """The TrainConfig fields the recipe sets for `preset` (a copy: callers may update it)."""
    return {key: (dict(value) if isinstance(value, dict) else value)
            for key, value in RECIPES.get(preset, {}).items()}
