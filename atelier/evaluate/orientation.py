"""Reading turned shapes: which shape an object is at any angle, and at what angle.

The image oracle fits upright templates; a spinning square at 30 degrees fits none of them.
Here each object's soft coverage (the same estimate the image oracle fits, from
`detect.read_objects`) is centred on its centroid, scaled to a fixed area and compared at once
with a bank of every shape turned in ANGLE_STEP steps over its period of symmetry (soft IoU,
as `detect._fit_shape` scores). The best few shapes are then checked at the object's own
resolution, held to the image oracle's MIN_SHAPE_IOU, and the angle refined by a parabola
through the bank's scores. Angles are degrees anticlockwise, modulo the shape's period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from atelier.evaluate.detect import MIN_SHAPE_IOU
from atelier.world import vocab
from atelier.world.clips.motion import rotation_period
from atelier.world.shapes import rasterise, shape_frame

BANK_SIDE = 40  # pixels of a bank template
BANK_RADIUS = 8.0  # every template has the area of a circle of this radius
ANGLE_STEP = 3.0  # degrees between turned templates
BANK_SUPERSAMPLE = 2
SHORTLIST = 3  # shapes checked at the object's own resolution


@dataclass(frozen=True)
class TurnedShape:
    shape: str | None  # None when no shape of the world fits at any angle
    angle: float  # degrees anticlockwise, in [0, period); 0 for round shapes
    iou: float
    diameter: float  # pixels, from the area and the shape


@cache
def _bank() -> tuple[tuple[tuple[str, float], ...], np.ndarray]:
    """(shape, angle) of every template and the templates, [n, BANK_SIDE * BANK_SIDE]."""
    entries, templates = [], []
    area = math.pi * BANK_RADIUS**2
    for shape in vocab.SHAPES:
        frame = shape_frame(shape)
        radius = math.sqrt(area / frame.area)
        cx = BANK_SIDE / 2 - frame.centroid[0] * radius  # turning about the centroid keeps it here
        cy = BANK_SIDE / 2 + frame.centroid[1] * radius
        period = rotation_period(shape)
        for angle in np.arange(0.0, period, ANGLE_STEP) if period else (0.0,):
            entries.append((shape, float(angle)))
            template = rasterise(shape, cx, cy, radius, BANK_SIDE, BANK_SIDE, BANK_SUPERSAMPLE, float(angle))
            templates.append(template.ravel())
    bank = np.stack(templates).astype(np.float32)
    bank.setflags(write=False)
    return tuple(entries), bank


def _centroid(alpha: np.ndarray) -> tuple[float, float, float]:
    ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
    area = float(alpha.sum())
    return area, float((alpha * (xs + 0.5)).sum() / area), float((alpha * (ys + 0.5)).sum() / area)


def _normalised(alpha: np.ndarray) -> np.ndarray:
    """The coverage resampled onto the bank's grid: centroid at the centre, area the bank's."""
    from scipy.ndimage import map_coordinates

    area, mean_x, mean_y = _centroid(alpha)
    scale = math.sqrt(area / (math.pi * BANK_RADIUS**2))  # object pixels per bank pixel
    grid = (np.arange(BANK_SIDE) + 0.5 - BANK_SIDE / 2) * scale
    ys, xs = np.meshgrid(mean_y + grid - 0.5, mean_x + grid - 0.5, indexing="ij")
    return map_coordinates(alpha, [ys, xs], order=1, cval=0.0).astype(np.float32).ravel()


def _soft_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.minimum(a, b).sum(-1) / np.maximum(np.maximum(a, b).sum(-1), 1e-6)


def fit_turned(alphas: list[np.ndarray]) -> TurnedShape:
    """Best (shape, angle) for an object given estimates of its soft coverage."""
    entries, bank = _bank()
    best = TurnedShape(None, 0.0, 0.0, 2 * math.sqrt(alphas[0].sum() / math.pi))
    for alpha in alphas:
        if alpha.sum() < 1:
            continue
        scores = _soft_iou(bank, _normalised(alpha)[None, :])
        per_shape: dict[str, int] = {}
        for index, (shape, _) in enumerate(entries):
            if shape not in per_shape or scores[index] > scores[per_shape[shape]]:
                per_shape[shape] = index
        shortlist = sorted(per_shape.values(), key=lambda i: -scores[i])[:SHORTLIST]
        area, mean_x, mean_y = _centroid(alpha)
        height, width = alpha.shape
        for index in shortlist:
            shape = entries[index][0]
            angle = _refined(entries, scores, index)
            frame = shape_frame(shape)
            radius = math.sqrt(area / frame.area)
            template = rasterise(shape, mean_x - frame.centroid[0] * radius, mean_y + frame.centroid[1] * radius,
                                 radius, height, width, 4, angle)
            iou = float(_soft_iou(alpha.ravel(), template.ravel()))
            if iou > best.iou:
                best = TurnedShape(shape, angle, iou, 2 * radius)
    if best.iou < MIN_SHAPE_IOU:
        return TurnedShape(None, 0.0, best.iou, best.diameter)
    return best


def _refined(entries, scores: np.ndarray, index: int) -> float:
    """The template's angle moved to the peak of a parabola through it and its neighbours
    (the bank wraps round each shape's period)."""
    shape, angle = entries[index]
    period = rotation_period(shape)
    if not period:
        return 0.0
    count = round(period / ANGLE_STEP)
    first = index - round(angle / ANGLE_STEP)
    left = scores[first + (index - first - 1) % count]
    right = scores[first + (index - first + 1) % count]
    curve = left - 2 * scores[index] + right
    shift = 0.0 if curve >= 0 else float(np.clip(0.5 * (left - right) / curve, -0.5, 0.5))
    return (angle + shift * ANGLE_STEP) % period
