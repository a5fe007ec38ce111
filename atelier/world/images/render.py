"""Scene to pixels: background, then each object's cached sprite composited in place."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from atelier.world import vocab
from atelier.world.images.scene import Background, Scene, SceneObject
from atelier.world.shapes import sprite


@lru_cache(maxsize=64)
def _ramp(size: int, direction: str) -> np.ndarray:
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    ramp = t[None, :, None] if direction == "horizontal" else t[:, None, None]
    out = np.ascontiguousarray(np.broadcast_to(ramp, (size, size, 1)))
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def pattern_mask(size: int, kind: str, phase_x: int = 0, phase_y: int = 0) -> np.ndarray:
    """Where a checkered or striped background shows its first colour ([size, size] bool)."""
    period = max(1, round(vocab.PATTERN_PERIOD * size))
    cells_y = (np.arange(size) + phase_y) // period
    cells_x = (np.arange(size) + phase_x) // period
    if kind == "checkered":
        mask = (cells_y[:, None] + cells_x[None, :]) % 2 == 0
    elif kind == "stripes":
        mask = np.repeat((cells_y % 2 == 0)[:, None], size, axis=1)
    else:
        raise ValueError(f"{kind!r} is not a patterned background")
    mask.setflags(write=False)  # cached: shared by every caller
    return mask


def render_background(background: Background, size: int) -> np.ndarray:
    """[size, size, 3] float32 in 0..1."""
    first = np.asarray(background.rgbs[0], dtype=np.float32)
    if background.kind == "solid":
        return np.broadcast_to(first, (size, size, 3)).copy()
    second = np.asarray(background.rgbs[1], dtype=np.float32)
    if background.kind == "gradient":
        return first + (second - first) * _ramp(size, background.direction)
    return np.where(pattern_mask(size, background.kind)[:, :, None], first, second).astype(np.float32)


def _placed_sprite(obj: SceneObject, size: int):
    """The object's sprite and its window's top-left corner and side; a turned sprite's larger
    window is centred where the object's own window is."""
    spr = sprite(obj.shape, obj.diameter * size, obj.texture, size, obj.angle)
    x0, y0, window = obj.pixel_origin(size)
    pad = (spr.coverage.shape[0] - window) // 2
    return spr, x0 - pad, y0 - pad, window + 2 * pad


def _clip(x0: int, y0: int, window: int, size: int) -> tuple[slice, slice, slice, slice]:
    """Image and sprite slices for a window that may hang over the image's edge."""
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(size, x0 + window), min(size, y0 + window)
    return (slice(iy0, iy1), slice(ix0, ix1), slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))


def render(scene: Scene) -> np.ndarray:
    """The scene's image, [size, size, 3] uint8. Deterministic: same scene, same bytes."""
    size = scene.size
    image = render_background(scene.background, size)
    for obj in scene.objects:
        spr, x0, y0, window = _placed_sprite(obj, size)
        iy, ix, sy, sx = _clip(x0, y0, window, size)
        coverage = spr.coverage[sy, sx, None]
        shade = spr.shade[sy, sx, None]
        primary = np.asarray(obj.rgb, dtype=np.float32)
        secondary = np.asarray(vocab.secondary_shade(obj.rgb, obj.colour), dtype=np.float32)
        region = image[iy, ix]
        image[iy, ix] = region + coverage * (primary - region) + shade * (secondary - primary)
    return (image * 255.0 + 0.5).astype(np.uint8)


def object_coverage(scene: Scene, index: int) -> np.ndarray:
    """Anti-aliased coverage (0..1 float32, [size, size]) of one object."""
    size = scene.size
    spr, x0, y0, window = _placed_sprite(scene.objects[index], size)
    iy, ix, sy, sx = _clip(x0, y0, window, size)
    out = np.zeros((size, size), dtype=np.float32)
    out[iy, ix] = spr.coverage[sy, sx]
    return out


def object_masks(scene: Scene) -> np.ndarray:
    """Pixel masks of every object, [n, size, size] bool (coverage at least one half)."""
    if not scene.objects:
        return np.zeros((0, scene.size, scene.size), dtype=bool)
    return np.stack([object_coverage(scene, i) >= 0.5 for i in range(len(scene.objects))])


def object_boxes(scene: Scene, masks: np.ndarray | None = None) -> list[tuple[int, int, int, int]]:
    """Bounding box (x0, y0, x1, y1), end-exclusive, of each object's pixel mask."""
    boxes = []
    for mask in object_masks(scene) if masks is None else masks:
        ys, xs = np.nonzero(mask)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return boxes
