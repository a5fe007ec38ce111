"""Reading one view of a 3D object from its pixels and its known camera.

Segmentation subtracts the fitted background (atelier.evaluate.background). Colour is the
palette colour that best explains the lit half of the object's pixels up to a brightness
scale, since shading darkens every colour by the same factor per pixel; a small prior
towards bright shades keeps white apart from grey and grey from black, which differ by
brightness alone. Shape is read by rendering each solid's silhouette from the view's own
camera at a grid of turns and keeping the best overlap (IoU) with the object's mask: the
camera is known, so the silhouettes are exact, not learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from atelier.evaluate.background import BackgroundReading, read_background
from atelier.evaluate.detect import to_float
from atelier.world import vocab
from atelier.world.objects.camera import Camera
from atelier.world.objects.primitives import SHAPES_3D, primitive
from atelier.world.objects.scene import AMBIENT, SCALES, Pose, silhouette

ANALYSIS_SIZE = 64  # views of other sizes are resampled to this before reading
FOREGROUND_FLOOR = 0.1  # RGB distance (0..1) from the background under which a pixel is background
EDGE_SHARE = 0.5  # a rim pixel is object when at least this share of its neighbour's contrast
MIN_AREA = 0.004  # of the view: smaller specks are not the object
MIN_SHAPE_IOU = 0.6  # below this the mask is no solid of the world
YAW_STEP = math.radians(7.5)  # turns tried, up to each solid's symmetry
TEMPLATE_SCALE = SCALES["medium"]  # templates are drawn at this scale and zoomed to the mask's area
TEMPLATE_SUPERSAMPLE = 2
LIT_SHARE = 0.5  # colour is read from the brightest half of the object's inner pixels
SHADE_RANGE = (AMBIENT * 0.9, 1.1)  # brightness scales a pixel may show of its colour
SHADE_PRIOR = 0.1  # cost per unit of darkening: of two colours that fit, the brighter shade wins
RESIDUAL_CAP = 0.3


@dataclass(frozen=True)
class PoseFit:
    """The best turn and scale of one solid for a view's mask, and its IoU."""

    shape: str
    yaw: float
    scale: float
    iou: float

    @property
    def pose(self) -> Pose:
        return Pose(self.shape, self.yaw, min(1.0, self.scale))


@dataclass(frozen=True)
class ViewReading:
    shape: str | None
    colour: str | None
    size: str | None
    mask: np.ndarray  # bool [ANALYSIS_SIZE, ANALYSIS_SIZE], the object's pixels
    fits: dict[str, PoseFit]  # best pose of every solid
    background: BackgroundReading | None

    @property
    def shape_iou(self) -> float:
        return self.fits[self.shape].iou if self.shape else max((f.iou for f in self.fits.values()), default=0.0)


def size_class(scale: float) -> str:
    """Size class of a scale: classes split halfway between one class's smallest scale
    (after the world's jitter) and the next class's largest."""
    names = vocab.SIZE_NAMES
    for smaller, larger in zip(names, names[1:]):
        boundary = (SCALES[smaller] + SCALES[larger] * (1 - vocab.SIZE_JITTER)) / 2
        if scale < boundary:
            return smaller
    return names[-1]


def _resampled(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[0] == ANALYSIS_SIZE:
        return pixels
    from PIL import Image

    resample = Image.BOX if pixels.shape[0] > ANALYSIS_SIZE else Image.BILINEAR
    channels = [Image.fromarray(pixels[:, :, c].astype(np.float32), mode="F")
                .resize((ANALYSIS_SIZE, ANALYSIS_SIZE), resample) for c in range(3)]
    return np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0.0, 1.0).astype(np.float64)


def segment(pixels: np.ndarray, background: BackgroundReading) -> np.ndarray:
    """The object's pixels. Inside, anything off the background; on the rim (next to a
    background pixel), pixels at least EDGE_SHARE as far from the background as their
    farthest neighbour, i.e. pixels more than half covered, as the world's masks are."""
    distance = background.distance(pixels)
    off = distance > FOREGROUND_FLOOR
    rim = off & ndimage.binary_dilation(~off)
    neighbour = ndimage.maximum_filter(distance, size=3)
    mask = off & (~rim | (distance >= EDGE_SHARE * neighbour))
    labels, count = ndimage.label(mask)
    if count:
        areas = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        keep = np.flatnonzero(areas >= MIN_AREA * mask.size) + 1
        mask = np.isin(labels, keep)
    return mask


def read_colour(pixels: np.ndarray, mask: np.ndarray) -> str | None:
    """The palette colour that best explains the lit inner pixels, each up to a brightness
    scale within SHADE_RANGE."""
    inner = ndimage.binary_erosion(mask)
    chosen = pixels[inner] if inner.sum() >= 8 else pixels[mask]
    if not len(chosen):
        return None
    brightness = chosen.sum(axis=1)
    lit = chosen[brightness >= np.quantile(brightness, 1 - LIT_SHARE)]
    best = None
    for name in vocab.COLOUR_NAMES:
        colour = np.asarray(vocab.colour_unit(name))
        shade = np.clip(lit @ colour / (colour @ colour), *SHADE_RANGE)
        residual = np.linalg.norm(lit - shade[:, None] * colour, axis=1)
        score = np.minimum(residual, RESIDUAL_CAP).mean() + SHADE_PRIOR * (1 - np.minimum(shade, 1)).mean()
        if best is None or score < best[0]:
            best = (score, name)
    return best[1]


def _yaws(shape: str) -> np.ndarray:
    period = primitive(shape).symmetry
    return np.zeros(1) if period == 0 else np.arange(0, period - 1e-9, YAW_STEP)


@lru_cache(maxsize=256)
def _templates(camera: Camera, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Silhouettes [Y, S, S] (float32) of a solid at TEMPLATE_SCALE and every turn tried, and
    their areas. Cached for the last 32 cameras (about 30 MB): the suite reads all samples
    of a case, under every condition, before moving to the next case."""
    stack = np.stack([silhouette(Pose(shape, float(yaw), TEMPLATE_SCALE), camera, ANALYSIS_SIZE, TEMPLATE_SUPERSAMPLE)
                      for yaw in _yaws(shape)])
    stack.setflags(write=False)
    return stack, stack.sum(axis=(1, 2))


def _zoom_matrices(factors: np.ndarray, size: int) -> np.ndarray:
    """[N, size, size] matrices W with W @ T @ W.T the image T scaled by each factor about its
    centre (bilinear; scaling is separable, so it is two small matrix products)."""
    centre = (size - 1) / 2
    source = (np.arange(size)[None, :] - centre) / factors[:, None] + centre  # [N, size]
    low = np.floor(source).astype(np.int64)
    frac = source - low
    out = np.zeros((len(factors), size, size), dtype=np.float32)
    rows = np.broadcast_to(np.arange(size), low.shape)
    batch = np.broadcast_to(np.arange(len(factors))[:, None], low.shape)
    for index, weight in ((low, 1 - frac), (low + 1, frac)):
        ok = (index >= 0) & (index < size)
        out[batch[ok], rows[ok], index[ok]] += weight[ok]
    return out


def fit_shapes(mask: np.ndarray, camera: Camera) -> dict[str, PoseFit]:
    """Best turn and scale of every solid for a mask seen from `camera`: each template is
    scaled about the image centre (where the world's origin projects) to the mask's area,
    which is the silhouette of the scaled solid up to perspective, small since templates are
    drawn near the right scale."""
    area = float(mask.sum())
    flat = mask.reshape(-1).astype(np.float32)
    fits = {}
    for shape in SHAPES_3D:
        if area == 0:
            fits[shape] = PoseFit(shape, 0.0, TEMPLATE_SCALE, 0.0)
            continue
        stack, areas = _templates(camera, shape)
        factors = np.sqrt(area / np.maximum(areas, 1.0))
        zoom = _zoom_matrices(factors, mask.shape[0])
        zoomed = ((zoom @ stack @ zoom.transpose(0, 2, 1)) >= 0.5).reshape(len(stack), -1).astype(np.float32)
        inter = zoomed @ flat
        ious = inter / (zoomed.sum(axis=1) + area - inter)
        best = int(ious.argmax())
        fits[shape] = PoseFit(shape=shape, yaw=float(_yaws(shape)[best]), scale=TEMPLATE_SCALE * float(factors[best]),
                              iou=float(ious[best]))
    return fits


def read_view(image, camera: Camera) -> ViewReading:
    """Everything the oracle sees in one view: shape, colour and size (None where it cannot
    tell), the object's mask and every solid's best fit."""
    pixels = _resampled(to_float(image))
    background = read_background(pixels)
    empty = np.zeros((ANALYSIS_SIZE, ANALYSIS_SIZE), dtype=bool)
    if background is None:
        return ViewReading(None, None, None, empty, fit_shapes(empty, camera), None)
    mask = segment(pixels, background)
    fits = fit_shapes(mask, camera)
    best = max(fits.values(), key=lambda f: f.iou)
    shape = best.shape if best.iou >= MIN_SHAPE_IOU else None
    return ViewReading(shape=shape, colour=read_colour(pixels, mask), size=size_class(best.scale) if shape else None,
                       mask=mask, fits=fits, background=background)
