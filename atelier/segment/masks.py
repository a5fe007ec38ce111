"""Masks for edits, from any image: the subject (every object), its objects one by one, and the
object a caller means by an index or a point.

Images come in as RGB uint8 arrays [H, W, 3] (grey [H, W] and RGBA are read too; alpha is
dropped) or PIL images of any size and aspect; masks come out as numpy arrays of the same H x W.

Working resolution: the net runs with the image's longest side scaled into the segmenter's
[min_side, max_side] (64..128 px for the shipped one, the sides it was trained at), aspect kept,
so a 64 px world image runs as it is, a 32 px one at 64 and a 512 x 384 photo at 128 x 96; the
probabilities are resized back to H x W bilinearly.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from atelier.segment.model import Segmenter

MIN_AREA = 0.002  # split_objects drops components under this share of the image (8 px at 64 x 64)
NEAR = 0.05  # pick_object by point: nearest object within this share of the longer side


def as_rgb(image) -> np.ndarray:
    """An RGB uint8 array [H, W, 3] from a PIL image or a uint8 / float-in-0..1 array [H, W],
    [H, W, 3] or [H, W, 4]; anything else is refused with what was received."""
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ValueError(f"expected an RGB image [H, W, 3] (or grey / RGBA), got an array of shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("a float image must hold finite values in 0..1")
        array = (array * 255 + 0.5).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {array.dtype}; use uint8 or float in 0..1")
    array = array[:, :, :3]
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def working_size(height: int, width: int, min_side: int, max_side: int) -> tuple[int, int]:
    """(height, width) with the longest side scaled into [min_side, max_side], aspect kept
    (each side at least 1 px)."""
    longest = max(height, width)
    scale = min(max(longest, min_side), max_side) / longest
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Tensors [B, C, h, w] -> [B, C, *size], bilinear and antialiased when shrinking: how images go
    to the working resolution and probabilities come back."""
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def subject_probability(segmenter: Segmenter, image) -> np.ndarray:
    """The probability that each pixel belongs to an object: float32 [H, W] in 0..1 for an
    image of H x W pixels, run at the working resolution (module docstring)."""
    import torch

    pixels = as_rgb(image)
    height, width = pixels.shape[:2]
    config = segmenter.config
    work = working_size(height, width, config.min_side, config.max_side)
    device = next(segmenter.parameters()).device
    with torch.inference_mode():
        x = torch.from_numpy(pixels.astype(np.float32)).to(device)  # [H, W, 3] (a copy: PIL's arrays are read-only)
        x = resize(x.permute(2, 0, 1)[None].div(127.5).sub(1), work)  # [1, 3, h, w] in [-1, 1]
        probability = resize(torch.sigmoid(segmenter(x)), (height, width))  # [1, 1, H, W]
    return probability[0, 0].clamp(0, 1).cpu().numpy().astype(np.float32)


def subject_mask(segmenter: Segmenter, image, threshold: float = 0.5) -> np.ndarray:
    """Where the subject (the union of the objects) is: bool [H, W], probability > threshold."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
    return subject_probability(segmenter, image) > threshold


def split_objects(subject: np.ndarray, min_area: float = MIN_AREA) -> list[np.ndarray]:
    """The subject's objects: its 4-connected components as bool masks [H, W], largest first
    (index 0 is the largest object; equal areas keep top-to-bottom, left-to-right order of their
    first pixel). Components smaller than `min_area` of the image are specks and are dropped.

    The world never draws an object in two pieces nor lets two touch (measured: components equal
    objects on 400 held-out scenes), so a component is an object; touching objects elsewhere
    would come out as one."""
    from scipy import ndimage

    subject = np.asarray(subject)
    if subject.ndim != 2 or subject.dtype != bool:
        raise ValueError(f"expected a bool mask [H, W], got {subject.dtype} of shape {subject.shape}")
    if not 0 <= min_area < 1:
        raise ValueError(f"min_area is a share of the image, from 0 up to 1; got {min_area!r}")
    labels, count = ndimage.label(subject)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = [label for label in range(1, count + 1) if areas[label - 1] >= max(1, min_area * subject.size)]
    keep.sort(key=lambda label: -areas[label - 1])  # stable: ties stay in label (raster) order
    return [labels == label for label in keep]


def pick_object(objects: Sequence[np.ndarray], which: int | tuple[float, float], near: float = NEAR) -> np.ndarray:
    """One mask of `objects` (as split_objects orders them): `which` is an index (0 the largest;
    negative counts from the end as in Python, -1 the smallest) or an (x, y) point in pixels,
    x rightwards and y downwards from the top-left corner (pixel [row, col] spans x in
    [col, col + 1)): the object holding it, its holes filled so the middle of a ring picks the
    ring, else the nearest one within `near` of the image's longer side. Raises ValueError when
    there are no objects, an index is out of range, or no object is at or near the point."""
    from scipy.ndimage import binary_fill_holes

    if len(objects) == 0:
        raise ValueError("no objects were found in the image, so there is none to pick")
    if isinstance(which, numbers.Integral) and not isinstance(which, bool):
        if not -len(objects) <= which < len(objects):
            raise ValueError(f"object index {which} is out of range: found {len(objects)} object"
                             f"{'s' if len(objects) != 1 else ''} (indices 0..{len(objects) - 1}, "
                             f"or -{len(objects)}..-1 from the smallest)")
        return objects[int(which)]
    if isinstance(which, np.ndarray):
        which = tuple(which.tolist())
    if (not isinstance(which, Sequence) or isinstance(which, str) or len(which) != 2
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in which)):
        raise ValueError(f"which must be an object index (int) or an (x, y) point in pixels, got {which!r}")
    height, width = objects[0].shape
    x, y = float(which[0]), float(which[1])
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"point ({x:g}, {y:g}) is outside the {width} x {height} image")
    for mask in objects:
        if binary_fill_holes(mask)[int(y), int(x)]:
            return mask
    distances = []
    for mask in objects:
        ys, xs = np.nonzero(mask)
        distances.append(float(np.sqrt(((xs + 0.5 - x) ** 2 + (ys + 0.5 - y) ** 2).min())) if len(xs) else math.inf)
    best = int(np.argmin(distances))
    limit = near * max(height, width)
    if distances[best] > limit:
        raise ValueError(f"no object is at or near point ({x:g}, {y:g}): the nearest of {len(objects)} is "
                         f"{distances[best]:.1f} px away, more than {limit:.1f} px ({near:g} of the longer side)")
    return objects[best]
