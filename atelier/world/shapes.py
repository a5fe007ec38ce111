"""Shape geometry and anti-aliased sprites.

Each shape is an inside test on a plane with u to the right and v up. Its geometry is
normalised so that its bounding box is centred on the origin and its larger side spans
[-1, 1]: an object's diameter is then the larger side of its bounding box, whatever the shape.

Sprites (coverage plus the share of each pixel drawn in the texture's secondary shade) are
rendered once by 8x8 supersampling and cached, which is what makes the world fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from atelier.world import vocab

SUPERSAMPLE = 8


def _polygon_inside(u: np.ndarray, v: np.ndarray, vertices: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd crossing test against a closed polygon."""
    inside = np.zeros(np.broadcast(u, v).shape, dtype=bool)
    n = len(vertices)
    for i in range(n):
        (u1, v1), (u2, v2) = vertices[i], vertices[(i + 1) % n]
        if v1 == v2:
            continue
        crosses = (v1 > v) != (v2 > v)
        u_at = u1 + (v - v1) * (u2 - u1) / (v2 - v1)
        inside ^= crosses & (u < u_at)
    return inside


def _regular(n: int, start_deg: float, radius: float = 1.0) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(math.radians(start_deg + 360 * k / n)),
         radius * math.sin(math.radians(start_deg + 360 * k / n)))
        for k in range(n)
    ]


def _star_vertices(points: int = 5, inner: float = 0.47) -> list[tuple[float, float]]:
    outer = _regular(points, 90)
    inner_v = _regular(points, 90 + 180 / points, inner)
    return [v for pair in zip(outer, inner_v) for v in pair]


_TRIANGLE = [(0.0, 0.866), (-1.0, -0.866), (1.0, -0.866)]
_STAR = _star_vertices()
_HEXAGON = _regular(6, 0)
_ARROW = [(-1.0, -0.28), (0.1, -0.28), (0.1, -0.72), (1.0, 0.0), (0.1, 0.72), (0.1, 0.28), (-1.0, 0.28)]
_CROSS_ARM = 0.34


def _raw_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    if shape == "circle":
        return r2 <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "triangle":
        return _polygon_inside(u, v, _TRIANGLE)
    if shape == "star":
        return _polygon_inside(u, v, _STAR)
    if shape == "heart":
        # The classic heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, lobes up, tip down.
        return (r2 - 1.0) ** 3 - u * u * v ** 3 <= 0.0
    if shape == "hexagon":
        return _polygon_inside(u, v, _HEXAGON)
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.5 ** 2)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= _CROSS_ARM) & (av <= 1.0)) | ((av <= _CROSS_ARM) & (au <= 1.0))
    if shape == "diamond":
        return np.abs(u) / 0.75 + np.abs(v) <= 1.0
    if shape == "crescent":
        return (r2 <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.85 ** 2)
    if shape == "semicircle":
        return (r2 <= 1.0) & (v >= 0.0)
    if shape == "arrow":
        return _polygon_inside(u, v, _ARROW)
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(vocab.SHAPES)}")


@dataclass(frozen=True)
class ShapeFrame:
    """How a shape's raw geometry maps onto the normalised box."""

    centre_u: float
    centre_v: float
    scale: float  # raw units per normalised unit
    area: float  # normalised units squared
    centroid: tuple[float, float]  # normalised (u, v), relative to the box centre


@cache
def shape_frame(shape: str) -> ShapeFrame:
    n = 1200
    axis = np.linspace(-1.5, 1.5, n)
    u, v = np.meshgrid(axis, axis)
    inside = _raw_inside(shape, u, v)
    us, vs = u[inside], v[inside]
    step = axis[1] - axis[0]
    u0, u1 = us.min() - step / 2, us.max() + step / 2
    v0, v1 = vs.min() - step / 2, vs.max() + step / 2
    scale = max(u1 - u0, v1 - v0) / 2
    centre_u, centre_v = (u0 + u1) / 2, (v0 + v1) / 2
    return ShapeFrame(
        centre_u=float(centre_u), centre_v=float(centre_v), scale=float(scale),
        area=float(inside.sum() * step * step / scale**2),
        centroid=(float((us.mean() - centre_u) / scale), float((vs.mean() - centre_v) / scale)),
    )


def inside(shape: str, u: np.ndarray, v: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """Inside test in normalised coordinates (bounding box centred, larger side [-1, 1]), of the
    shape turned `angle` degrees anticlockwise about its centroid, so a spinning shape stays put."""
    frame = shape_frame(shape)
    if angle:
        cu, cv = frame.centroid
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        du, dv = u - cu, v - cv
        u, v = cu + cos * du + sin * dv, cv - sin * du + cos * dv
    return _raw_inside(shape, frame.centre_u + u * frame.scale, frame.centre_v + v * frame.scale)


@cache
def rotation_reach(shape: str) -> float:
    """How far (normalised units) the shape reaches from its box centre at any angle: its
    centroid's offset plus its farthest point from the centroid."""
    axis = np.linspace(-1.0, 1.0, 801)
    u, v = np.meshgrid(axis, axis)
    hit = inside(shape, u, v)
    cu, cv = shape_frame(shape).centroid
    return float(math.hypot(cu, cv) + np.sqrt((u[hit] - cu) ** 2 + (v[hit] - cv) ** 2).max())


def rotation_pad(shape: str, diameter: float) -> int:
    """Pixels added on every side of a turned sprite's window so any angle fits; the same for
    every angle, so the window's centre (and the object's) never moves as it turns."""
    return int(math.ceil(diameter * (rotation_reach(shape) - 1) / 2)) + 1


def rasterise(shape: str, cx: float, cy: float, radius: float, height: int, width: int,
              supersample: int = 1, angle: float = 0.0) -> np.ndarray:
    """Coverage (0..1, float32) of a shape centred at pixel coordinates (cx, cy) with half
    diameter `radius` on a height x width grid whose pixel (0, 0) spans [0, 1)^2, turned
    `angle` degrees anticlockwise about its centroid."""
    offsets = (np.arange(supersample) + 0.5) / supersample
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)
    ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)
    u = (xs[None, :] - cx) / radius
    v = -(ys[:, None] - cy) / radius
    hit = inside(shape, u, v, angle).astype(np.float32)
    if supersample == 1:
        return hit
    return hit.reshape(height, supersample, width, supersample).mean(axis=(1, 3))


@dataclass(frozen=True)
class Sprite:
    """A shape drawn in a square window: `coverage` of the shape per pixel and `shade`, the
    share of each pixel drawn in the texture's secondary shade (shade <= coverage)."""

    coverage: np.ndarray  # float32 [S, S]
    shade: np.ndarray  # float32 [S, S]


def sprite_window(diameter: float) -> int:
    return int(math.ceil(diameter)) + 2


@lru_cache(maxsize=8192)
def sprite(shape: str, diameter: float, texture: str, image_width: int, angle: float = 0.0) -> Sprite:
    """Anti-aliased sprite of a shape with the given diameter in pixels, centred in its window.

    Texture geometry is measured in fractions of the image width and anchored to the sprite,
    so a striped star looks the same wherever it stands. A turned sprite (`angle` degrees
    anticlockwise, about the centroid) has a window larger by `rotation_pad` on each side, the
    same centre, and its texture stays anchored as at angle 0: only the silhouette turns, so
    the oracle reads stripes, dots and outlines the same at every angle.
    """
    if texture not in vocab.TEXTURES:
        raise ValueError(f"unknown texture {texture!r}; expected one of {', '.join(vocab.TEXTURES)}")
    pad = rotation_pad(shape, diameter) if angle else 0
    size = sprite_window(diameter) + 2 * pad
    ss = SUPERSAMPLE
    centre = size / 2
    coords = (np.arange(size * ss) + 0.5) / ss  # sample positions in sprite pixels
    x = coords[None, :]
    y = coords[:, None]
    hit = inside(shape, (x - centre) / (diameter / 2), -(y - centre) / (diameter / 2), angle)
    if pad:
        x, y = x - pad, y - pad
    period = vocab.TEXTURE_PERIOD * image_width
    if texture == "solid":
        secondary = np.zeros_like(hit)
    elif texture == "striped":
        secondary = np.mod(x + y, period) < vocab.STRIPE_DUTY * period
    elif texture == "dotted":
        dx = np.mod(x, period) - period / 2
        dy = np.mod(y, period) - period / 2
        secondary = dx * dx + dy * dy < (vocab.DOT_RADIUS * period) ** 2
    else:  # outlined
        from scipy.ndimage import distance_transform_edt

        depth = distance_transform_edt(np.pad(hit, 1))[1:-1, 1:-1] / ss
        secondary = depth < vocab.OUTLINE_WIDTH * image_width
    coverage = hit.reshape(size, ss, size, ss).mean(axis=(1, 3)).astype(np.float32)
    shade = (hit & secondary).reshape(size, ss, size, ss).mean(axis=(1, 3)).astype(np.float32)
    coverage.setflags(write=False)
    shade.setflags(write=False)
    return Sprite(coverage=coverage, shade=shade)
