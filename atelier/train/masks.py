"""Edit regions for keep-mask training: what part of an image the model learns to fill in.

Every region is a pixel mask (True = to generate) drawn from one (seed-determined) random
generator, so a resumed run draws the same regions. The kinds cover what users ask of an
editor: rectangles and free-form blobs (inpainting), brush strokes (a designer's mask), the whole
background or whole objects (replace background or subject, from the world's exact masks) and
the border of the canvas (outpainting). `keep_mask` turns a region into the latent keep-mask.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("box", "blob", "brush", "background", "objects", "outpaint")


def box(rng: np.random.Generator, size: int) -> np.ndarray:
    """A rectangle covering roughly 5% to 50% of the image."""
    side_w, side_h = (rng.uniform(0.2, 0.7, 2) * size).astype(int) + 1
    x0, y0 = rng.integers(0, size - side_w + 1), rng.integers(0, size - side_h + 1)
    region = np.zeros((size, size), dtype=bool)
    region[y0:y0 + side_h, x0:x0 + side_w] = True
    return region


def blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth free-form region: a few overlapping ellipses, blurred and thresholded."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    centre = rng.uniform(0.2, 0.8, 2) * size
    for _ in range(rng.integers(2, 5)):
        cx, cy = centre + rng.normal(0, 0.12, 2) * size
        rx, ry = rng.uniform(0.08, 0.25, 2) * size
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    smooth = canvas.filter(ImageFilter.GaussianBlur(size / 32))
    return np.asarray(smooth) >= 128


def brush(rng: np.random.Generator, size: int) -> np.ndarray:
    """One to three strokes of a round brush along a wandering path, like a mask painted by hand."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(1, 4)):
        width = max(2, int(rng.uniform(0.05, 0.15) * size))
        point = rng.uniform(0.1, 0.9, 2) * size
        angle = rng.uniform(0, 2 * math.pi)
        path = [tuple(point)]
        for _ in range(rng.integers(3, 8)):
            angle += rng.normal(0, 0.8)
            point = np.clip(point + rng.uniform(0.08, 0.2) * size * np.array([math.cos(angle), math.sin(angle)]),
                            0, size - 1)
            path.append(tuple(point))
        draw.line(path, fill=255, width=width, joint="curve")
        for x, y in (path[0], path[-1]):
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=255)
    return np.asarray(canvas) >= 128


def background(object_masks: np.ndarray, size: int, margin: int = 1) -> np.ndarray:
    """Everything but the objects (grown by `margin` pixels, so their anti-aliased rims stay)."""
    return ~_grow(object_masks.any(axis=0) if len(object_masks) else np.zeros((size, size), bool), margin)


def objects(rng: np.random.Generator, object_masks: np.ndarray, size: int, margin: int = 2) -> np.ndarray:
    """One or more whole objects, grown by `margin` pixels so nothing of them is left outside."""
    if not len(object_masks):
        return box(rng, size)
    count = rng.integers(1, len(object_masks) + 1)
    chosen = rng.choice(len(object_masks), size=count, replace=False)
    return _grow(object_masks[chosen].any(axis=0), margin)


def outpaint(rng: np.random.Generator, size: int) -> np.ndarray:
    """The border of the canvas: an inner rectangle of 40% to 80% per side is kept."""
    region = np.ones((size, size), dtype=bool)
    keep_w, keep_h = (rng.uniform(0.4, 0.8, 2) * size).astype(int)
    x0, y0 = rng.integers(0, size - keep_w + 1), rng.integers(0, size - keep_h + 1)
    region[y0:y0 + keep_h, x0:x0 + keep_w] = False
    return region


def edit_region(kind: str, rng: np.random.Generator, size: int, object_masks: np.ndarray | None = None) -> np.ndarray:
    """A [size, size] bool region of the given kind (True = to generate)."""
    if kind not in KINDS:
        raise ValueError(f"unknown edit region {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in ("background", "objects"):
        if object_masks is None:
            raise ValueError(f"a {kind!r} region needs the scene's object masks")
        return background(object_masks, size) if kind == "background" else objects(rng, object_masks, size)
    return {"box": box, "blob": blob, "brush": brush, "outpaint": outpaint}[kind](rng, size)


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=pixels)
