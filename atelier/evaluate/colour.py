"""Naming colours: nearest palette colour in CIELAB, where distance follows perception."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from atelier.world import vocab

OFF_LINE_CAP = 0.3  # RGB distance beyond which a pixel counts as simply unexplained
SHADE_WEIGHT = 0.15  # cost of a pixel sitting at the shade's end rather than the colour's


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] sRGB in 0..1 to CIELAB (D65)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


@lru_cache(maxsize=1)
def _palette_lab() -> np.ndarray:
    return srgb_to_lab(np.array([vocab.colour_unit(n) for n in vocab.COLOUR_NAMES]))


def name_indices(rgb: np.ndarray) -> np.ndarray:
    """Index into vocab.COLOUR_NAMES of the nearest palette colour, per pixel ([...])."""
    lab = srgb_to_lab(rgb)
    distance = ((lab[..., None, :] - _palette_lab()) ** 2).sum(-1)
    return distance.argmin(-1)


def name(rgb) -> str:
    return vocab.COLOUR_NAMES[int(name_indices(np.asarray(rgb, dtype=np.float64)))]


def object_colour(pixels: np.ndarray) -> tuple[str, np.ndarray]:
    """Name an object's colour from its pixels ([N, 3] RGB in 0..1), allowing for the second
    shade its texture may draw. Each palette colour is a hypothesis: pixels should lie on
    the line from it to its texture shade (anti-aliasing blends along that line) and mostly
    near its own end. Returns the best name and the median of the pixels at its own end
    (the object's primary colour as drawn)."""
    best = None
    for name in vocab.COLOUR_NAMES:
        primary = np.asarray(vocab.colour_unit(name))
        axis = np.asarray(vocab.secondary_shade(tuple(primary), name)) - primary
        t = np.clip((pixels - primary) @ axis / (axis @ axis), 0.0, 1.0)
        off_line = np.linalg.norm(pixels - (primary + t[:, None] * axis), axis=1)
        score = np.minimum(off_line, OFF_LINE_CAP).mean() + SHADE_WEIGHT * t.mean()
        if best is None or score < best[0]:
            best = (score, name, t)
    _, name, t = best
    own = t < 0.5
    primary = np.median(pixels[own], axis=0) if own.any() else np.asarray(vocab.colour_unit(name))
    return name, primary
