"""Cameras of the 3D world: a pinhole on a sphere around the origin, looking at it, z up.

Angles are the model's (atelier.model.embed.camera_vector): azimuth about the vertical axis
from +x towards +y, elevation above the horizon, so the camera sits at
distance * (cos e cos a, cos e sin a, sin e). Distance is in world units, where every object
fits in the cube [-1, 1]^3.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

DEFAULT_DISTANCE = 3.2
MIN_DISTANCE = 1.8  # outside the ball around the world cube's content, so no ray starts inside an object
TAN_HALF_FOV = 0.42  # half the image spans tan(22.8 degrees): the largest object fills about 90% of it
CAMERA_FEATURES = 6  # direction (3), sin and cos of the azimuth, distance


@dataclass(frozen=True)
class Camera:
    azimuth: float  # radians
    elevation: float  # radians, in (-pi/2, pi/2)
    distance: float = DEFAULT_DISTANCE

    def __post_init__(self) -> None:
        for name in ("azimuth", "elevation", "distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"camera {name} must be a finite number, got {value!r}")
        if not -math.pi / 2 < self.elevation < math.pi / 2:
            raise ValueError(f"camera elevation must lie strictly between -pi/2 and pi/2 radians, got {self.elevation}")
        if self.distance < MIN_DISTANCE:
            raise ValueError(f"camera distance must be at least {MIN_DISTANCE} world units, got {self.distance}")

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from the origin towards the camera."""
        ce = math.cos(self.elevation)
        return np.array([ce * math.cos(self.azimuth), ce * math.sin(self.azimuth), math.sin(self.elevation)])

    @property
    def position(self) -> np.ndarray:
        return self.distance * self.direction

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, forward) unit vectors of the image plane and the viewing direction."""
        forward = -self.direction
        right = np.array([-math.sin(self.azimuth), math.cos(self.azimuth), 0.0])  # forward x z, normalised
        up = np.cross(right, forward)
        return right, up, forward

    def vector(self, dim: int = 8) -> np.ndarray:
        """The camera as the model sees it, float32 [dim]: equal to
        atelier.model.embed.camera_vector for the same angles and distance."""
        if dim < CAMERA_FEATURES:
            raise ValueError(f"camera_dim {dim} is smaller than the {CAMERA_FEATURES} camera features")
        features = np.zeros(dim, dtype=np.float32)
        features[:3] = self.direction
        features[3:6] = (math.sin(self.azimuth), math.cos(self.azimuth), self.distance)
        return features

    def rays(self, size: int, supersample: int = 1, span: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Origin [3] and directions [n, n, 3] (not unit length: forward plus the image-plane
        offset) through sub-pixel centres, row 0 at the top; n = size * supersample, or only
        the rows and columns in `span` (see `span_of`)."""
        n = size * supersample
        offsets = ((np.arange(n) + 0.5) / n * 2 - 1) * TAN_HALF_FOV
        if span is not None:
            offsets = offsets[span]
        right, up, forward = self.basis()
        directions = (forward + offsets[None, :, None] * right - offsets[:, None, None] * up)
        return self.position, directions

    def span_of(self, radius: float, size: int, supersample: int = 1) -> slice:
        """The rows (and, the same, columns) of sub-pixels that can see a ball of `radius`
        about the origin, which the camera looks straight at."""
        n = size * supersample
        if radius >= self.distance:
            return slice(0, n)
        half = radius / math.sqrt(self.distance ** 2 - radius ** 2) / TAN_HALF_FOV  # in half-images
        return slice(max(0, math.floor((1 - half) / 2 * n)), min(n, math.ceil((1 + half) / 2 * n)))

    def project(self, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (x right, y down; pixel (0, 0) spans [0, 1)^2) of [..., 3] world
        points, and whether each lies in front of the camera."""
        right, up, forward = self.basis()
        rel = points - self.position
        depth = rel @ forward
        safe = np.where(depth > 1e-9, depth, 1e-9)
        u = (rel @ right) / safe / TAN_HALF_FOV
        v = (rel @ up) / safe / TAN_HALF_FOV
        return np.stack([(u + 1) / 2 * size, (1 - v) / 2 * size], axis=-1), depth > 1e-9

    def to_list(self) -> list[float]:
        return [round(self.azimuth, 6), round(self.elevation, 6), round(self.distance, 6)]

    @classmethod
    def from_list(cls, values) -> Camera:
        if len(values) != 3:
            raise ValueError(f"a camera is [azimuth, elevation, distance], got {values!r}")
        return cls(float(values[0]), float(values[1]), float(values[2]))


def orbit(count: int, azimuth: float = 0.0, elevation: float = math.radians(20),
          distance: float = DEFAULT_DISTANCE) -> tuple[Camera, ...]:
    """`count` cameras evenly spaced in azimuth from `azimuth`, at one elevation and distance."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"an orbit needs a positive whole number of views, got {count!r}")
    return tuple(Camera((azimuth + 2 * math.pi * k / count) % (2 * math.pi), elevation, distance)
                 for k in range(count))
