"""Visual hulls: what a set of silhouettes from known cameras says about occupancy.

A voxel survives carving when its centre projects inside the silhouette in every view
(Laurentini 1994). The hull holds the object but can hold more: concavities no silhouette
sees (a torus's hole from low cameras, the space under a cone's rim seen from above) never
carve, so the hull of the truth's own views is the ceiling an occupancy score can reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from atelier.world.objects.camera import Camera
from atelier.world.objects.scene import voxel_centres


def carve(masks: Sequence[np.ndarray], cameras: Sequence[Camera], resolution: int) -> np.ndarray:
    """The visual hull, bool [R, R, R] on the world's occupancy grid (indexed [x, y, z]), of
    square bool masks seen from `cameras`. Voxels projecting outside a view are carved."""
    if len(masks) != len(cameras):
        raise ValueError(f"{len(masks)} silhouettes for {len(cameras)} cameras")
    hull = np.ones((resolution,) * 3, dtype=bool)
    for mask, camera in zip(masks, cameras):
        seen, row, column = _footprint(camera, mask.shape[0], resolution)
        inside = np.zeros_like(hull)
        inside[seen] = mask[row, column]
        hull &= inside
    return hull


@lru_cache(maxsize=1024)
def _footprint(camera: Camera, size: int, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which voxel centres a camera sees in a size x size view, and their pixels' rows and
    columns (cached: every sample of a case is carved from the same cameras)."""
    pixels, in_front = camera.project(voxel_centres(resolution), size)
    column = np.floor(pixels[..., 0]).astype(np.int64)
    row = np.floor(pixels[..., 1]).astype(np.int64)
    seen = in_front & (column >= 0) & (column < size) & (row >= 0) & (row < size)
    for array in (seen, row, column):
        array.setflags(write=False)
    return seen, row[seen], column[seen]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two occupancy grids (0 when both are empty)."""
    if a.shape != b.shape:
        raise ValueError(f"occupancy grids of different shapes: {a.shape} and {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
