"""Validation of the fidelity metric: the FD of truth renders against the reference must sit
at a small floor, grow a little under the mild degradations the oracle forgives, much more
under heavy blur, wrong shapes or plain backgrounds, and most for noise; and the floor's
dependence on the number of images (FD is biased upwards at small N) must be known before a
number is read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from atelier.evaluate.fidelity import features, frechet_distance, reference_features, resolve_classifier
from atelier.evaluate.validate import DEGRADATIONS, SIMULATED_FAILURES, prompt_scenes, render_scenes
from atelier.world.images.evalset import EvalPrompt
from atelier.world.images.render import render
from atelier.world.images.scene import Background, Scene

HEAVY_BLUR_SIGMA = 2.0  # pixels at 64; scaled with the image
SAMPLE_SIZES = (250, 500, 1000, 2592)
SUBSET_DRAWS = 5


def heavy_blur(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    sigma = HEAVY_BLUR_SIGMA * image.shape[0] / 64
    return np.clip(gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma, 0)) + 0.5, 0, 255).astype(np.uint8)


def as_circles(scene: Scene) -> Scene:
    """The scene with every object drawn as a circle (same colour, size, texture, place)."""
    return replace(scene, objects=tuple(replace(o, shape="circle") for o in scene.objects))


def solid_background(scene: Scene) -> Scene:
    """The scene on a plain background of its background's first colour (which every object
    already stands out from)."""
    first = scene.background
    return replace(scene, background=Background("solid", first.colours[:1], first.rgbs[:1]))


SCENE_CHANGES: dict[str, Callable[[Scene], Scene]] = {
    "one shape only (circles)": as_circles,
    "solid backgrounds only": solid_background,
}


def validate_fidelity(prompts: Sequence[EvalPrompt], per_prompt: int = 4, size: int = 64, classifier=None,
                      sample_sizes: Sequence[int] = SAMPLE_SIZES, draws: int = SUBSET_DRAWS, seed: int = 0,
                      progress: Callable[[str], None] | None = None) -> dict:
    """FD against the reference (per_prompt renders of every prompt at reference seeds) of the truth
    renders at scored seeds, each degraded or changed, the simulated generator failures of the
    oracle's validation, and uniform noise; then the truth's FD on random subsets of each size in
    `sample_sizes` (mean and standard deviation over `draws` subsets)."""
    model = resolve_classifier(classifier)
    reference = reference_features(size, per_prompt, prompts, model)
    scenes = prompt_scenes(prompts, per_prompt, size)
    truth = [image for images in render_scenes(scenes).values() for image in images]
    rows: dict[str, float] = {}

    def record(name: str, images: Sequence[np.ndarray] | None = None, feats: np.ndarray | None = None) -> np.ndarray:
        feats = features(images, model) if feats is None else feats
        rows[name] = frechet_distance(feats, reference)
        if progress:
            progress(f"{name}: FD {rows[name]:.3f}")
        return feats

    truth_features = record("truth", truth)
    for name, degrade in DEGRADATIONS.items():
        record(name, [degrade(image) for image in truth])
    record(f"heavy blur (sigma {HEAVY_BLUR_SIGMA:g})", [heavy_blur(image) for image in truth])
    for name, change in SCENE_CHANGES.items():
        record(name, [render(change(scene)) for group in scenes.values() for scene in group])
    for name, weaken in SIMULATED_FAILURES.items():
        record(name, [image for images in render_scenes(prompt_scenes(prompts, per_prompt, size, weaken)).values()
                      for image in images])
    rng = np.random.default_rng(seed)
    record("uniform noise", [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in truth])

    by_size = {}
    for n in sample_sizes:
        n = min(int(n), len(truth_features))
        if n < 2 or n in by_size:
            continue
        fds = [frechet_distance(truth_features[rng.choice(len(truth_features), n, replace=False)], reference)
               for _ in range(draws if n < len(truth_features) else 1)]
        by_size[n] = {"mean": float(np.mean(fds)), "std": float(np.std(fds)), "draws": len(fds)}
        if progress:
            progress(f"truth at N={n}: FD {by_size[n]['mean']:.3f} +- {by_size[n]['std']:.3f}")
    return {"images": len(truth), "reference_images": len(reference), "size": size,
            "classifier": f"{model.source or 'classifier'}@{model.fingerprint}", "conditions": rows,
            "sample_sizes": by_size}


def format_fidelity_validation(table: dict) -> str:
    floor = table["conditions"]["truth"]
    lines = [f"FD against {table['reference_images']} reference renders ({table['images']} images per condition, "
             f"{table['size']} px, classifier {table['classifier']})",
             f"{'condition':<28}{'FD':>9}{'x floor':>9}"]
    for name, fd in table["conditions"].items():
        lines.append(f"{name:<28}{fd:>9.3f}{fd / floor if floor > 0 else float('inf'):>9.1f}")
    lines.append("")
    lines.append("truth vs reference by number of images (random subsets of the truth; "
                 "FD is biased upwards at small N)")
    for n, row in table["sample_sizes"].items():
        lines.append(f"  N={n:<6}{row['mean']:>9.3f} +- {row['std']:.3f}  ({row['draws']} draws)")
    return "\n".join(lines)
