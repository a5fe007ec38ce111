"""Full-resolution editing with a model that draws small squares: crop, fit, generate, paste back.

The model sees a square window around the edit region with some context (as in
AUTOMATIC1111's "inpaint only masked" and diffusers' `padding_mask_crop`), scaled to its
canvas; its output is scaled back and pasted into the original only inside the region, with a
feather that lies wholly inside the region, so every pixel outside it stays exactly as it was.
A window may reach past the image (a thin image, or an outpainted canvas): that part is padded
by repeating the edge and treated as part of the region, since the model must not take the
padding for real context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

CONTEXT = 0.5      # the window adds this fraction of the region's longer side on each side


@dataclass(frozen=True)
class Window:
    """A square of `side` pixels whose top left corner is at (left, top) in image coordinates
    (negative, or past the far edge, where it reaches beyond the image)."""

    left: int
    top: int
    side: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.left + self.side, self.top + self.side


def region_box(region: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end-exclusive, of the True pixels of a non-empty region."""
    ys, xs = np.nonzero(region)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def find_window(region: np.ndarray, canvas: int, context: float = CONTEXT) -> Window:
    """The window for editing `region` [H, W] on a model canvas of `canvas` pixels: the region's
    box grown by `context` of its longer side each way, at least `canvas` pixels (never magnify
    the image's own pixels past the model's) and at most the image's longer side, centred on the
    region and moved inside the image wherever the image is wide (tall) enough."""
    height, width = region.shape
    x0, y0, x1, y1 = region_box(region)
    longest = max(x1 - x0, y1 - y0)
    side = min(max(math.ceil(longest * (1 + 2 * context)), canvas), max(width, height))
    return Window(_place(x0, x1, side, width), _place(y0, y1, side, height), side)


def _place(low: int, high: int, side: int, length: int) -> int:
    """Where a window of `side` starts on an axis of `length` so that it holds [low, high)."""
    if side >= length:                          # wider than the image: centre the image in it
        return -((side - length) // 2)
    start = min(max(round((low + high - side) / 2), 0), length - side)
    return int(min(max(start, high - side), low))


def crop(pixels: np.ndarray, region: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """The window's pixels [side, side, 3] (the image's edge repeated where it reaches beyond it)
    and its region [side, side] bool, True beyond the image too."""
    height, width = region.shape
    pad_left, pad_top = max(0, -window.left), max(0, -window.top)
    pad_right = max(0, window.left + window.side - width)
    pad_bottom = max(0, window.top + window.side - height)
    x0, y0 = max(0, window.left), max(0, window.top)
    x1, y1 = min(width, window.left + window.side), min(height, window.top + window.side)
    padding = ((pad_top, pad_bottom), (pad_left, pad_right))
    window_pixels = np.pad(pixels[y0:y1, x0:x1], padding + ((0, 0),), mode="edge")
    window_region = np.pad(region[y0:y1, x0:x1], padding, mode="constant", constant_values=True)
    return window_pixels, window_region


def fit_pixels(pixels: np.ndarray, side: int) -> np.ndarray:
    """An RGB array [s, s, 3] scaled to [side, side, 3] (Lanczos both ways)."""
    if pixels.shape[0] == side:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.LANCZOS))


def fit_region(region: np.ndarray, side: int) -> np.ndarray:
    """A region [s, s] scaled to [side, side], True wherever any covered pixel is True, so a thin
    stroke never vanishes when the window shrinks to the model's canvas."""
    if region.shape[0] == side:
        return region
    coverage = Image.fromarray(region.astype(np.float32)).resize((side, side), Image.Resampling.BOX)
    return np.asarray(coverage) > 0


def feather(region: np.ndarray, width: float) -> np.ndarray:
    """Paste weights [H, W] float: 0 outside the region, rising inside it to 1 at `width`
    pixels from its edge, so the seam is soft yet nothing outside the region changes."""
    if width <= 1:
        return region.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    inside = distance_transform_edt(np.pad(region, 1, constant_values=True))[1:-1, 1:-1]   # the canvas edge is no seam
    return np.clip(inside / width, 0, 1).astype(np.float32) * region


def paste(original: np.ndarray, generated: np.ndarray, region: np.ndarray, window: Window,
          feather_width: float) -> np.ndarray:
    """`original` [H, W, 3] uint8 with the window's `generated` pixels [side, side, 3] pasted in
    where `region` [H, W] is True, feathered inside it; pixels outside the region are the original's."""
    height, width = region.shape
    x0, y0 = max(0, window.left), max(0, window.top)
    x1, y1 = min(width, window.left + window.side), min(height, window.top + window.side)
    inside = generated[y0 - window.top:y1 - window.top, x0 - window.left:x1 - window.left]
    margin = math.ceil(feather_width) + 1     # the feather only looks this far: no need to transform the whole image
    ya, xa = max(0, y0 - margin), max(0, x0 - margin)
    around = feather(region[ya:min(height, y1 + margin), xa:min(width, x1 + margin)], feather_width)
    weight = around[y0 - ya:y1 - ya, x0 - xa:x1 - xa, None]
    out = original.copy()
    blended = weight * inside.astype(np.float32) + (1 - weight) * original[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.where(region[y0:y1, x0:x1, None], np.clip(blended + 0.5, 0, 255).astype(np.uint8),
                                 original[y0:y1, x0:x1])
    return out
