"""The memory-capacity benchmark's scoring, on fake models: no training, no sampling."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from atelier.world.glyphs import MIN_SEPARATION, make_glyphs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("memory_capacity", ROOT / "bench" / "memory_capacity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def glyphs():
    return make_glyphs(64, seed=1)


def lookup(glyphs, images):
    """A fake model: caption -> the image at that entity's position in `images`."""
    row = {g.caption: i for i, g in enumerate(glyphs)}
    return lambda captions: images[[row[c] for c in captions]]


def test_a_model_that_returns_the_templates_reproduces_all(bench, glyphs):
    templates = np.stack([g.image for g in glyphs])
    result = bench.evaluate(lookup(glyphs, templates), glyphs, batch=10)
    assert (result.reproduced, result.nearest_right, result.entities) == (64, 64, 64)
    assert result.median_distance == 0 and result.threshold == MIN_SEPARATION / 2


def test_noise_and_swapped_icons_reproduce_nothing(bench, glyphs):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    assert bench.evaluate(lookup(glyphs, noise), glyphs).reproduced == 0
    swapped = np.stack([g.image for g in glyphs])[::-1].copy()   # each caption gets another entity's icon
    result = bench.evaluate(lookup(glyphs, swapped), glyphs)
    assert result.reproduced == 0 and result.nearest_right == 0


def test_the_threshold_separates_close_from_far_copies(bench, glyphs):
    templates = np.stack([g.image for g in glyphs]).astype(np.float64)
    grey = np.full_like(templates, 128.0)

    def blend(weight):  # RMS distance to the template grows linearly with the weight of the grey
        return np.clip(np.round((1 - weight) * templates + weight * grey), 0, 255).astype(np.uint8)

    distance = np.sqrt(np.mean(((templates - grey) / 255) ** 2, axis=(1, 2, 3)))  # per entity, at weight 1
    half = bench.THRESHOLD
    # Within 0.8 of the threshold everywhere: all reproduced. Twice the threshold away: none.
    inside = bench.evaluate(lookup(glyphs, blend(0.8 * half / distance.max())), glyphs)
    assert inside.reproduced == 64
    outside = blend(np.minimum(2 * half / distance, 1.0)[:, None, None, None])
    result = bench.evaluate(lookup(glyphs, outside), glyphs)
    assert result.reproduced == 0 and result.median_distance > half


def test_a_model_that_answers_one_icon_for_every_caption_reproduces_one(bench, glyphs):
    same = np.repeat(glyphs[7].image[None], 64, axis=0)
    result = bench.evaluate(lookup(glyphs, same), glyphs)
    assert result.reproduced == 1 and result.nearest_right == 1


def test_the_two_variants_cost_the_same_flops(bench):
    infos = bench.flops_check(latent_channels=8, latent_side=8)
    ratio = infos["memory"]["gflop_per_sample"] / infos["dense"]["gflop_per_sample"]
    assert abs(ratio - 1) <= bench.FLOP_TOLERANCE
    assert infos["dense"]["memory_parameters"] == 0 and infos["memory"]["memory_parameters"] == 128 ** 2 * 192
