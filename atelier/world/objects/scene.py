"""The procedural world in 3D: one solid (atelier.world.objects.primitives) in a world colour, turned
about the vertical axis and scaled to a size class, on a solid background; its views from
any camera (atelier.world.objects.camera), its voxel occupancy, and captioned multi-view samples.

World coordinates: x and y horizontal, z up, the object's bounding box centred on the
origin, every object inside the cube [-1, 1]^3 at any turn.

Shading is Lambert with ambient light, from a light fixed relative to the camera (above,
left, in front; a studio key light, as if the object turned on a turntable). A light fixed
in the world would leave some views showing only the object's dark side, where no colour
can be told apart from a darker one; this way every view shows lit surfaces.

Held out of training, as atelier.world.splits does for the image world: one colour-shape
pair per shape (HELD_OUT_PAIRS_3D), which the evaluation set asks for.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from atelier.world import vocab
from atelier.world.images.scene import PRIMARY_CONTRAST, Background, check_size, distance_to_segment, jitter_colour
from atelier.world.images.stream import scene_rng
from atelier.world.objects.camera import Camera, orbit
from atelier.world.objects.caption import describe_object, say_object
from atelier.world.objects.primitives import SHAPES_3D, primitive
from atelier.world.objects.query import Object3DQuery
from atelier.world.splits import check_split

# Scale of the unit solid per size class; the world shrinks each object by up to vocab.SIZE_JITTER.
SCALES: dict[str, float] = {"small": 0.6, "medium": 0.8, "large": 1.0}
AMBIENT = 0.45  # share of an object's colour on surfaces facing away from the light
LIGHT = (-0.45, 0.55, 0.70)  # towards the light in camera axes (right, up, towards the camera)
SUPERSAMPLE = 3  # rays per pixel side for anti-aliasing
ELEVATIONS = (math.radians(15), math.radians(30))  # range of the default orbit's elevation
OCCUPANCY_RESOLUTION = 32
WORLD_HALF = 1.0  # occupancy grids cover the cube [-1, 1]^3

HELD_OUT_PAIRS_3D: frozenset[tuple[str, str]] = frozenset({
    ("blue", "sphere"), ("red", "cube"), ("yellow", "cylinder"), ("green", "cone"),
    ("pink", "torus"), ("cyan", "pyramid"), ("orange", "octahedron"), ("purple", "prism"),
})

RGB = tuple[float, float, float]


class Posed(Protocol):
    """Anything placed in the world: which solid, turned by `yaw` about z, scaled by `scale`."""

    shape: str
    yaw: float
    scale: float


@dataclass(frozen=True)
class Pose:
    shape: str
    yaw: float  # radians, about the vertical axis
    scale: float

    def __post_init__(self) -> None:
        primitive(self.shape)  # refuses unknown shapes
        if not (math.isfinite(self.yaw) and math.isfinite(self.scale)) or not 0 < self.scale <= 1:
            raise ValueError(f"a pose needs a finite yaw and a scale in (0, 1], got {self.yaw}, {self.scale}")


@dataclass(frozen=True)
class Object3D:
    shape: str
    colour: str
    size: str
    yaw: float
    scale: float
    rgb: RGB  # the colour drawn (named colour plus jitter), 0..1
    background: Background

    @property
    def pose(self) -> Pose:
        return Pose(self.shape, self.yaw, self.scale)

    def to_dict(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "yaw": round(self.yaw, 6),
                "scale": round(self.scale, 6), "background": list(self.background.colours)}


def stands_out(rgb: RGB, background: Background) -> bool:
    """The contrast rule of atelier.world.images.scene, over every shade the lighting draws: the
    segment from the darkest shade to the full colour keeps PRIMARY_CONTRAST from the
    background."""
    dark = tuple(AMBIENT * c for c in rgb)
    return all(distance_to_segment(bg, dark, rgb) >= PRIMARY_CONTRAST for bg in background.rgbs)


def _background(rng: random.Random, rgb: RGB, colour: str) -> Background | None:
    """A solid background the object stands out from, or None when no colour works."""
    for name in rng.sample(vocab.COLOUR_NAMES, len(vocab.COLOUR_NAMES)):
        if name == colour:
            continue
        background = Background(kind="solid", colours=(name,), rgbs=(jitter_colour(rng, name),))
        if stands_out(rgb, background):
            return background
    return None


def _make(rng: random.Random, shape: str, colour: str, size: str) -> Object3D:
    while True:
        rgb = jitter_colour(rng, colour)
        background = _background(rng, rgb, colour)
        if background is not None:
            scale = SCALES[size] * (1 - rng.uniform(0, vocab.SIZE_JITTER))
            return Object3D(shape=shape, colour=colour, size=size, yaw=rng.uniform(0, 2 * math.pi), scale=scale,
                            rgb=rgb, background=background)


def sample_object(rng: random.Random, split: str = "train") -> Object3D:
    """A random object; split="train" never draws a held-out colour-shape pair."""
    check_split(split)
    while True:
        shape, colour = rng.choice(SHAPES_3D), rng.choice(vocab.COLOUR_NAMES)
        if split == "all" or (colour, shape) not in HELD_OUT_PAIRS_3D:
            return _make(rng, shape, colour, rng.choice(vocab.SIZE_NAMES))


def realize_object(query: Object3DQuery, rng: random.Random) -> Object3D:
    """A random object satisfying the prompt, everything it leaves free drawn at random."""
    return _make(rng, query.shape or rng.choice(SHAPES_3D), query.colour or rng.choice(vocab.COLOUR_NAMES),
                 query.size or rng.choice(vocab.SIZE_NAMES))


def _turn(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate [..., 3] points by `angle` about z."""
    c, s = math.cos(angle), math.sin(angle)
    x, y = points[..., 0], points[..., 1]
    return np.stack([c * x - s * y, s * x + c * y, points[..., 2]], axis=-1)


def _trace(pose: Posed, camera: Camera, size: int, supersample: int):
    """Hit mask [n, n] and world normals [n, n, 3] of rays through sub-pixel centres.

    Turning the object by yaw and scaling it by s looks exactly like the unit object seen
    from a camera turned back by yaw at distance / s, so rays are cast in object coordinates."""
    local = Camera(camera.azimuth - pose.yaw, camera.elevation, camera.distance / pose.scale)
    solid = primitive(pose.shape)
    n = size * supersample
    span = local.span_of(solid.bound, size, supersample)  # only rays that meet the solid's bounding ball
    # are cast: about a third of them
    origin, directions = local.rays(size, supersample, span)
    block = directions.shape[0]
    directions = directions.reshape(-1, 3)
    along = directions @ origin
    near = along * along - (directions * directions).sum(1) * (origin @ origin - solid.bound ** 2) > 0
    hit = solid.intersect(np.broadcast_to(origin, (int(near.sum()), 3)), directions[near])
    block_mask = np.zeros(block * block, dtype=bool)
    block_mask[near] = hit.mask
    block_normals = np.zeros((block * block, 3))
    block_normals[near] = _turn(hit.normal, pose.yaw)
    mask = np.zeros((n, n), dtype=bool)
    mask[span, span] = block_mask.reshape(block, block)
    normals = np.zeros((n, n, 3))
    normals[span, span] = block_normals.reshape(block, block, 3)
    return mask, normals


def _check_supersample(supersample: int) -> int:
    if isinstance(supersample, bool) or not isinstance(supersample, int) or not 1 <= supersample <= 8:
        raise ValueError(f"supersample must be an integer from 1 to 8, got {supersample!r}")
    return supersample


def silhouette(pose: Posed, camera: Camera, size: int = 64, supersample: int = 2) -> np.ndarray:
    """Coverage of the object in each pixel, float32 [size, size] in 0..1."""
    check_size(size)
    ss = _check_supersample(supersample)
    mask, _ = _trace(pose, camera, size, ss)
    return mask.reshape(size, ss, size, ss).mean(axis=(1, 3)).astype(np.float32)


def render_view(obj: Object3D, camera: Camera, size: int = 64, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """The object seen from `camera`, uint8 [size, size, 3]. Deterministic: same object and
    camera, same bytes."""
    check_size(size)
    ss = _check_supersample(supersample)
    mask, normals = _trace(obj, camera, size, ss)
    right, up, forward = camera.basis()
    light = LIGHT[0] * right + LIGHT[1] * up - LIGHT[2] * forward
    light /= np.linalg.norm(light)
    shade = AMBIENT + (1 - AMBIENT) * np.clip(normals @ light, 0.0, 1.0)
    colour = np.where(mask[..., None], shade[..., None] * np.asarray(obj.rgb), np.asarray(obj.background.rgbs[0]))
    image = colour.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    return (image * 255.0 + 0.5).astype(np.uint8)


def voxel_centres(resolution: int = OCCUPANCY_RESOLUTION) -> np.ndarray:
    """World coordinates [R, R, R, 3] of the occupancy grid's voxel centres, indexed [x, y, z]."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 4 <= resolution <= 256:
        raise ValueError(f"occupancy resolution must be an integer from 4 to 256, got {resolution!r}")
    axis = (np.arange(resolution) + 0.5) / resolution * 2 * WORLD_HALF - WORLD_HALF
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def occupancy(obj: Posed, resolution: int = OCCUPANCY_RESOLUTION) -> np.ndarray:
    """Ground-truth occupancy, bool [R, R, R] indexed [x, y, z]: whether each voxel's centre
    lies inside the object, on the fixed grid over the world cube [-1, 1]^3."""
    local = _turn(voxel_centres(resolution), -obj.yaw) / obj.scale
    return primitive(obj.shape).inside(local)


def default_cameras(rng: random.Random, views: int) -> tuple[Camera, ...]:
    """An orbit: `views` azimuths evenly spaced from a random start, one elevation of 15 to 30 degrees."""
    if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= 64:
        raise ValueError(f"views must be an integer from 1 to 64, got {views!r}")
    return orbit(views, azimuth=rng.uniform(0, 2 * math.pi / views), elevation=rng.uniform(*ELEVATIONS))


@dataclass(frozen=True)
class ObjectSample:
    index: int
    views: np.ndarray  # [V, size, size, 3] uint8
    cameras: tuple[Camera, ...]
    camera_vectors: np.ndarray  # [V, 8] float32, atelier.model.embed.camera_vector of each camera
    caption: str
    query: Object3DQuery  # what the caption asserts, true of the object
    object: Object3D  # the full structured truth

    def occupancy(self, resolution: int = OCCUPANCY_RESOLUTION) -> np.ndarray:
        """Ground-truth occupancy, bool [R, R, R] (computed on demand)."""
        return occupancy(self.object, resolution)


def make_object_sample(seed: int, index: int, size: int = 64, views: int = 4, split: str = "train",
                       cameras: tuple[Camera, ...] | None = None) -> ObjectSample:
    """Sample `index` of the 3D stream `seed`: it depends on (seed, index) only. Views come
    from an orbit (default_cameras) unless `cameras` are given."""
    check_size(size)
    scene_rng(seed, index)  # validates seed and index
    rng = random.Random(f"objects3d/{seed}/{index}")  # str seeds hash with SHA-512: stable everywhere
    obj = sample_object(rng, split)
    query = describe_object(obj, rng)
    caption = say_object(query, rng)
    rig = default_cameras(rng, views) if cameras is None else tuple(cameras)
    if not rig:
        raise ValueError("a sample needs at least one camera")
    return ObjectSample(index=index, views=np.stack([render_view(obj, c, size) for c in rig]), cameras=rig,
                        camera_vectors=np.stack([c.vector() for c in rig]), caption=caption, query=query, object=obj)
