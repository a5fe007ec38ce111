"""Reading the background: fit each kind the world draws (solid, gradient, checkered,
stripes) robustly, so the objects on top count as outliers, and keep the one that explains
the most pixels. Its per-pixel model is what object segmentation subtracts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from atelier.evaluate.colour import name
from atelier.world import vocab
from atelier.world.images.render import pattern_mask

INLIER_DISTANCE = 0.12  # RGB distance (0..1) within which a pixel counts as background
MIN_INLIERS = 0.5  # below this no model explains the image: nothing can be read
MIN_SPREAD = 0.15  # a gradient or pattern whose two colours are closer than this is solid
KEEP_FRACTION = 0.6  # share of pixels kept by each trimmed refit
COMPLEXITY_PENALTY = {"solid": 0.0, "gradient": 0.01, "checkered": 0.01, "stripes": 0.01}


@dataclass(frozen=True)
class BackgroundReading:
    kind: str
    colours: tuple[str, ...]
    direction: str | None
    model: np.ndarray  # [H, W, 3] float, the fitted background image
    inliers: float  # fraction of pixels the model explains
    # Patterns only: the pixels beside a boundary between cells, and the two colours.
    seams: np.ndarray | None = None
    pair: tuple[np.ndarray, np.ndarray] | None = None

    def distance(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel RGB distance of an image from this background, [H, W]."""
        return np.linalg.norm(image - self.model, axis=-1)

    def foreground(self, image: np.ndarray, threshold: float) -> np.ndarray:
        """Pixels that are not background, [H, W] bool. On a pattern's seams a blend of its
        two colours (blur, compression) is background, unless it continues an object from
        off the seam: an object whose colour happens to lie between the two stays whole."""
        outside = self.distance(image) > threshold
        if self.seams is None:
            return outside
        first, second = self.pair
        axis = second - first
        t = np.clip((image - first) @ axis / max(float(axis @ axis), 1e-6), 0, 1)
        blend = np.linalg.norm(image - (first + t[..., None] * axis), axis=-1) <= threshold
        off_seam = outside & ~self.seams
        continued = ndimage.binary_dilation(off_seam, iterations=2)  # seams are two pixels wide
        return off_seam | (outside & self.seams & (~blend | continued))


def _inliers(image: np.ndarray, model: np.ndarray) -> float:
    return float((np.linalg.norm(image - model, axis=-1) < INLIER_DISTANCE).mean())


def _fit_solid(pixels: np.ndarray) -> np.ndarray:
    """The dominant colour: the fullest bin of a coarse histogram, refined by a median."""
    bins = np.clip((pixels * 16).astype(np.int64), 0, 15)
    keys = bins[:, 0] * 256 + bins[:, 1] * 16 + bins[:, 2]
    mode = np.bincount(keys).argmax()
    members = pixels[keys == mode]
    centre = np.median(members, axis=0)
    close = pixels[np.linalg.norm(pixels - centre, axis=1) < INLIER_DISTANCE]
    return np.median(close, axis=0) if len(close) else centre


def _fit_gradient(image: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trimmed least squares of colour = start + (end - start) * t along the direction."""
    height, width, _ = image.shape
    if direction == "horizontal":
        t = np.broadcast_to(np.linspace(0, 1, width)[None, :], (height, width))
    else:
        t = np.broadcast_to(np.linspace(0, 1, height)[:, None], (height, width))
    t = t.reshape(-1)
    pixels = image.reshape(-1, 3)
    design = np.stack([1 - t, t], axis=1)  # colour = start * (1 - t) + end * t
    keep = np.ones(len(t), dtype=bool)
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(design[keep], pixels[keep], rcond=None)
        residual = np.linalg.norm(design @ coef - pixels, axis=1)
        keep = residual <= np.quantile(residual, KEEP_FRACTION)
    model = (design @ coef).reshape(height, width, 3)
    return coef[0], coef[1], model


def _phase(profile: np.ndarray, period: int) -> int:
    """Phase of a pattern from a profile of colour change between neighbouring rows or
    columns: the boundaries of its cells are where the change peaks."""
    scores = np.zeros(period)
    for boundary, strength in enumerate(profile, start=1):  # change between boundary-1 and boundary
        scores[(-boundary) % period] += strength
    return int(scores.argmax())


def _fit_pattern(image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two colours on the world's pattern grid, at whatever phase the image has it, the
    model image and the seams (pixels beside a cell boundary)."""
    size = image.shape[0]
    period = max(1, round(vocab.PATTERN_PERIOD * size))
    rows = np.abs(np.diff(image, axis=0)).sum(axis=(1, 2))
    phase_y = _phase(rows, period)
    phase_x = _phase(np.abs(np.diff(image, axis=1)).sum(axis=(0, 2)), period) if kind == "checkered" else 0
    first = pattern_mask(size, kind, phase_x, phase_y)
    a = np.median(image[first], axis=0)
    b = np.median(image[~first], axis=0)
    change_y = first[1:] != first[:-1]
    change_x = first[:, 1:] != first[:, :-1]
    seams = np.zeros_like(first)
    seams[1:] |= change_y
    seams[:-1] |= change_y
    seams[:, 1:] |= change_x
    seams[:, :-1] |= change_x
    return a, b, np.where(first[:, :, None], a, b), seams


def read_background(image: np.ndarray) -> BackgroundReading | None:
    """Fit the background of a square [H, W, 3] float image in 0..1; None when no kind of
    background explains at least half of it (noise, or something the world never draws)."""
    candidates = []
    solid = _fit_solid(image.reshape(-1, 3))
    solid_model = np.broadcast_to(solid, image.shape)
    # (kind, colour names, direction, model image, seams, pattern colours)
    candidates.append(("solid", (name(solid),), None, solid_model, None, None))
    for direction in vocab.GRADIENT_DIRECTIONS:
        start, end, model = _fit_gradient(image, direction)
        if np.linalg.norm(start - end) >= MIN_SPREAD:
            colours = (name(np.clip(start, 0, 1)), name(np.clip(end, 0, 1)))
            candidates.append(("gradient", colours, direction, model, None, None))
    for kind in ("checkered", "stripes"):
        first, second, model, seams = _fit_pattern(image, kind)
        if np.linalg.norm(first - second) >= MIN_SPREAD:
            candidates.append((kind, (name(first), name(second)), None, model, seams, (first, second)))
    scored = [(_inliers(image, c[3]) - COMPLEXITY_PENALTY[c[0]], c) for c in candidates]
    _, (kind, colours, direction, model, seams, pair) = max(scored, key=lambda item: item[0])
    inliers = _inliers(image, model)
    if inliers < MIN_INLIERS:
        return None
    return BackgroundReading(kind=kind, colours=colours, direction=direction, inliers=inliers,
                             model=np.asarray(model, dtype=np.float64), seams=seams, pair=pair)
