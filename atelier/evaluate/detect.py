"""Reading objects: segment what differs from the fitted background, then read each
connected region's shape (best template overlap), size, colour (the palette colour whose
line to its texture shade best explains the pixels), texture (where that shade lies) and
position."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from atelier.evaluate.background import BackgroundReading, read_background
from atelier.evaluate.colour import object_colour
from atelier.world import vocab
from atelier.world.shapes import rasterise, shape_frame

FOREGROUND_DISTANCE = 0.2  # RGB distance (0..1) from the background model
MIN_AREA = 0.0025  # of the image: smaller specks are not objects
MIN_SHAPE_IOU = 0.6  # below this a region is not any shape of the world
# Coverage is measured along the line from background to object colour in two spaces: plain
# RGB, and one that weighs brightness over hue (Y, Cb, Cr with chroma at 0.15), which keeps
# edges sharp where colour has been blurred more than brightness (JPEG's 4:2:0, decoders).
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.169, -0.331, 0.5], [0.5, -0.419, -0.081]])
COVERAGE_SPACES = (np.eye(3), _YCBCR.T @ np.diag([1.0, 0.15, 0.15]))


@dataclass(frozen=True)
class Detection:
    shape: str | None
    colour: str | None
    size: str | None
    texture: str | None
    region: int
    centre: tuple[float, float]  # fractions of the image
    diameter: float  # fraction of the image width
    shape_iou: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (end-exclusive)


@dataclass(frozen=True)
class Reading:
    background: BackgroundReading | None
    objects: tuple[Detection, ...]


def size_class(diameter: float) -> str:
    """Size class of a diameter: classes split halfway between one class's largest diameter
    and the next class's smallest (see vocab.size_name)."""
    return vocab.size_name(diameter)


def _fit_shape(alphas: list[np.ndarray]) -> tuple[str | None, float, float]:
    """Best shape for a region given estimates of its soft coverage (window with a margin):
    each shape is placed by matching an estimate's area and centroid, then scored by soft
    IoU, keeping the best estimate. Returns the shape (None when nothing fits), its IoU and
    its radius (half diameter) in pixels."""
    height, width = alphas[0].shape
    ys, xs = np.mgrid[0:height, 0:width]
    best: tuple[str | None, float, float] = (None, 0.0, float(np.sqrt(alphas[0].sum() / np.pi)))
    for alpha in alphas:
        area = float(alpha.sum())
        if area <= 0:   # an estimate with no coverage (a model's flat region) places no template
            continue
        mean_x = float((alpha * (xs + 0.5)).sum() / area)
        mean_y = float((alpha * (ys + 0.5)).sum() / area)
        for shape in vocab.SHAPES:
            frame = shape_frame(shape)
            radius = float(np.sqrt(area / frame.area))
            cx = mean_x - frame.centroid[0] * radius
            cy = mean_y + frame.centroid[1] * radius
            template = rasterise(shape, cx, cy, radius, height, width, supersample=4)
            iou = float(np.minimum(alpha, template).sum() / np.maximum(alpha, template).sum())
            if iou > best[1]:
                best = (shape, iou, radius)
    if best[1] < MIN_SHAPE_IOU:
        return None, best[1], best[2]
    return best


def _texture(pixels_rgb: np.ndarray, mask: np.ndarray, depth: np.ndarray, colour: str,
             primary: np.ndarray, image_size: int) -> str:
    """Classify the texture from where pixels of the secondary shade lie: a band along the
    edge (outlined), diagonal lines (striped), scattered spots (dotted) or nowhere (solid)."""
    secondary = np.asarray(vocab.secondary_shade(tuple(primary), colour))
    axis = secondary - primary
    t = ((pixels_rgb - primary) @ axis) / max(float(axis @ axis), 1e-6)
    shaded = (t > 0.5) & mask
    outline = vocab.OUTLINE_WIDTH * image_size
    core = depth > 1
    if not core.any() or shaded[core].mean() < 0.08:
        return "solid"
    along = core[1:, :-1] & core[:-1, 1:]  # neighbours along a stripe: (y, x) and (y - 1, x + 1)
    across = core[:-1, :-1] & core[1:, 1:]
    agree_along = (shaded[1:, :-1] == shaded[:-1, 1:])[along].mean() if along.any() else 0.0
    agree_across = (shaded[:-1, :-1] == shaded[1:, 1:])[across].mean() if across.any() else 0.0
    if agree_along - agree_across > 0.15:
        return "striped"
    band = core & (depth <= outline + 0.5)
    inner = depth > outline + 1
    f_inner = shaded[inner].mean() if inner.sum() >= 3 else 0.0
    if band.any() and shaded[band].mean() >= 0.5 and f_inner <= 0.25:
        return "outlined"
    return "dotted"


def _colour(pixels_rgb: np.ndarray, mask: np.ndarray, depth: np.ndarray, image_size: int) -> tuple[str, np.ndarray]:
    """The object's colour name and primary RGB, read from its inner pixels: the rim mixes
    with the background."""
    chosen = mask
    for threshold in (vocab.OUTLINE_WIDTH * image_size + 0.5, 1.0):
        inner = depth > threshold
        if inner.sum() >= 5:
            chosen = inner
            break
    return object_colour(pixels_rgb[chosen])


def read_objects(image: np.ndarray, background: BackgroundReading,
                 alphas_out: list[list[np.ndarray]] | None = None) -> tuple[Detection, ...]:
    """Every object on the background. When `alphas_out` is a list, each detection's soft
    coverage estimates (its window, with a margin of 2 pixels) are appended to it in order, for
    readers that fit more than the upright shapes (atelier.evaluate.orientation)."""
    size = image.shape[1]
    labels, _ = ndimage.label(background.foreground(image, FOREGROUND_DISTANCE))
    detections = []
    pad = 2
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        region_mask = labels[box] == index
        if region_mask.sum() < MIN_AREA * size * size:
            continue
        y0, x0 = box[0].start - pad, box[1].start - pad
        y1, x1 = box[0].stop + pad, box[1].stop + pad
        window = _crop(image, y0, y1, x0, x1)
        window_labels = _crop(labels, y0, y1, x0, x1)
        mask = window_labels == index
        depth = ndimage.distance_transform_edt(mask)  # the window's margin is background
        colour, primary = _colour(window, mask, depth, size)
        texture = _texture(window, mask, depth, colour, primary, size)
        rim = ndimage.binary_dilation(mask) & (window_labels == 0) | mask
        inside = ndimage.binary_erosion(mask)
        model = _crop(background.model, y0, y1, x0, x1)
        inks = [primary]
        if texture != "solid":
            inks.append(np.asarray(vocab.secondary_shade(tuple(primary), colour)))
        alphas = [_coverage(window, model, inks, space, rim, inside) for space in COVERAGE_SPACES]
        shape, iou, radius = _fit_shape(alphas)
        if alphas_out is not None:
            alphas_out.append(alphas)
        cx = (box[1].start + box[1].stop) / 2 / size
        cy = (box[0].start + box[0].stop) / 2 / size
        diameter = 2 * radius / size
        detections.append(Detection(
            shape=shape, colour=colour, size=size_class(diameter), texture=texture,
            region=vocab.region_of(cx, cy), centre=(cx, cy), diameter=diameter, shape_iou=iou,
            box=(box[1].start, box[0].start, box[1].stop, box[0].stop),
        ))
    return tuple(detections)


def _coverage(window: np.ndarray, model: np.ndarray, inks: list[np.ndarray], space: np.ndarray,
              rim: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Soft coverage: 1 inside; on the rim, how far each pixel lies from the background
    towards the ink (the object's colour or its texture's shade) that best explains it,
    which recovers the anti-aliasing the renderer, or a model, drew. Measured in `space`."""
    offset = (window - model) @ space
    best_share = np.zeros(window.shape[:2])
    best_residual = np.full(window.shape[:2], np.inf)
    for ink in inks:
        towards = (ink - model) @ space
        share = np.clip((offset * towards).sum(-1) / np.maximum((towards * towards).sum(-1), 1e-6), 0, 1)
        residual = np.linalg.norm(offset - share[..., None] * towards, axis=-1)
        better = residual < best_residual
        best_share[better], best_residual[better] = share[better], residual[better]
    alpha = np.where(rim, best_share, 0.0)
    alpha[inside] = 1.0
    return alpha


def _crop(array: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """array[y0:y1, x0:x1] where the window may hang over the edge (filled with zeros)."""
    height, width = array.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + array.shape[2:], dtype=array.dtype)
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(height, y1), min(width, x1)
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


MIN_SIDE = 32


def to_float(image) -> np.ndarray:
    """An image as [H, W, 3] float in 0..1: a PIL image, or an array of uint8, uint16, or
    float in 0..1; grey or RGB, with an alpha channel only if fully opaque; square, at least
    MIN_SIDE pixels. Anything else is refused with the reason, never guessed at."""
    if hasattr(image, "convert"):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            image = np.asarray(image, dtype=np.float64) / (65535.0 if image.mode.startswith("I;16") else 1.0)
        elif "A" in image.getbands() or "transparency" in image.info:
            image = np.asarray(image.convert("RGBA"))
        else:
            image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected a grey or RGB image, got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        array = array.astype(np.float64) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float64) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("a float image must hold finite values in 0..1")
    else:
        raise ValueError(f"unsupported pixel type {array.dtype}; use uint8, uint16 or float in 0..1")
    if array.shape[2] in (2, 4):
        if (array[:, :, -1] < 1.0).any():
            raise ValueError("the image has transparent pixels; the oracle reads opaque images")
        array = array[:, :, :-1]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    height, width = array.shape[:2]
    if height != width:
        raise ValueError(f"the oracle reads square images, got {width}x{height}")
    if width < MIN_SIDE:
        raise ValueError(f"the oracle reads images of at least {MIN_SIDE} pixels, got {width}x{height}")
    return array


def read(image) -> Reading:
    """Everything the oracle sees in an image."""
    pixels = to_float(image)
    background = read_background(pixels)
    if background is None:
        return Reading(background=None, objects=())
    return Reading(background=background, objects=read_objects(pixels, background))
