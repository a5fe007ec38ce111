"""Clips: scenes in motion, exactly known in every frame.

A clip is a start scene (the world's ordinary Scene) plus one Motion per object (None: the
object stays still) and a frame count. Motions are functions of progress p = t / (frames - 1),
so the same clip can be drawn at any length; `frame_scene(clip, t)` is the exact truth of
frame t and `render_clip` draws every frame with the image world's own renderer.

Centres are snapped each frame so that sprites sit on whole pixels, as `scene.place` does:
what a frame's truth says is exactly what its pixels show.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from atelier.world import vocab
from atelier.world.images.scene import RGB, Scene, SceneObject
from atelier.world.shapes import inside, rotation_pad, sprite_window

MOTIONS: tuple[str, ...] = ("move", "bounce", "rotate", "grow", "shrink", "recolour", "appear")
# Unit steps in image axes (x right, y down); diagonals travel at 45 degrees.
DIRECTIONS: dict[str, tuple[int, int]] = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
    "up left": (-1, -1), "up right": (1, -1), "down left": (-1, 1), "down right": (1, 1),
}
# A bounce reverses one axis off one edge; diagonal bounces would be two motions in one.
BOUNCE_DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
SPINS: tuple[str, ...] = ("clockwise", "anticlockwise")
# Shapes whose turning cannot be seen.
ROUND_SHAPES = frozenset({"circle", "ring"})
ROTATING_SHAPES: tuple[str, ...] = tuple(s for s in vocab.SHAPES if s not in ROUND_SHAPES)
# Textures that narrow parts hide at some angles (an outline filling a thin half circle, dots
# falling between a cross's arms): turning objects are not drawn in them, as `vocab` keeps
# textures off objects too small to show them.
TURN_HIDDEN_TEXTURES = frozenset({("semicircle", "outlined"), ("diamond", "outlined"), ("cross", "dotted"),
                                  ("arrow", "dotted")})
DEFAULT_FRAMES = 16
MIN_FRAMES = 2
MIN_BOUNCE_FRAMES = 3  # a bounce needs a frame at the edge between its first and last


@dataclass(frozen=True)
class Motion:
    """How one object changes over a clip. Only the fields of its kind are used:

    move: `direction`, `distance` (path length, fraction of the width);
    bounce: `direction` it heads first, `distance` to the edge, `turn_at` (progress at the edge);
    rotate: `spin`, `turn` (degrees over the clip);
    grow / shrink: `scale` (last diameter over first);
    recolour: `colour` and `rgb` it turns to at progress `onset`;
    appear: absent before progress `onset`, then present where the start scene has it.
    """

    kind: str
    direction: str | None = None
    distance: float = 0.0
    turn_at: float = 0.5
    spin: str | None = None
    turn: float = 0.0
    scale: float = 1.0
    colour: str | None = None
    rgb: RGB | None = None
    onset: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in MOTIONS:
            raise ValueError(f"unknown motion {self.kind!r}; expected one of {', '.join(MOTIONS)}")
        if self.kind == "move" and self.direction not in DIRECTIONS:
            raise ValueError(f"a move needs a direction from {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if self.kind == "bounce" and self.direction not in BOUNCE_DIRECTIONS:
            raise ValueError(f"a bounce heads {', '.join(BOUNCE_DIRECTIONS)}, got {self.direction!r}")
        if self.kind == "bounce" and not 0 < self.turn_at < 1:
            raise ValueError(f"a bounce reaches the edge strictly inside the clip, got turn_at={self.turn_at}")
        if self.kind == "rotate" and self.spin not in SPINS:
            raise ValueError(f"a rotation spins {' or '.join(SPINS)}, got {self.spin!r}")
        if self.kind == "grow" and not self.scale > 1 or self.kind == "shrink" and not 0 < self.scale < 1:
            raise ValueError(f"a {self.kind} needs scale {'> 1' if self.kind == 'grow' else 'in (0, 1)'}, "
                             f"got {self.scale}")
        if self.kind == "recolour" and (self.colour not in vocab.COLOURS or self.rgb is None):
            raise ValueError(f"a recolour needs a target colour from {', '.join(vocab.COLOUR_NAMES)} and its rgb")
        if self.kind in ("recolour", "appear") and not 0 < self.onset <= 1:
            raise ValueError(f"a {self.kind} happens at an onset in (0, 1], got {self.onset}")


@dataclass(frozen=True)
class Clip:
    """A start scene, one motion (or None) per object, and a length. An object that appears
    is in the start scene where it will appear; frame_scene leaves it out until its onset."""

    start: Scene
    motions: tuple[Motion | None, ...]
    frames: int = DEFAULT_FRAMES

    def __post_init__(self) -> None:
        check_frames(self.frames)
        if len(self.motions) != len(self.start.objects):
            raise ValueError(f"a clip gives one motion (or None) per object: {len(self.start.objects)} objects, "
                             f"{len(self.motions)} motions")
        if self.frames < MIN_BOUNCE_FRAMES and any(m is not None and m.kind == "bounce" for m in self.motions):
            raise ValueError(f"a bounce needs at least {MIN_BOUNCE_FRAMES} frames, got {self.frames}")

    @property
    def size(self) -> int:
        return self.start.size

    def to_dict(self) -> dict:
        motions = []
        for motion in self.motions:
            if motion is None:
                motions.append(None)
                continue
            fields = {"kind": motion.kind}
            if motion.kind in ("move", "bounce"):
                fields |= {"direction": motion.direction, "distance": round(motion.distance, 4)}
            if motion.kind == "bounce":
                fields["turn_at"] = round(motion.turn_at, 4)
            if motion.kind == "rotate":
                fields |= {"spin": motion.spin, "turn": round(motion.turn, 2)}
            if motion.kind in ("grow", "shrink"):
                fields["scale"] = round(motion.scale, 4)
            if motion.kind == "recolour":
                fields["colour"] = motion.colour
            if motion.kind in ("recolour", "appear"):
                fields["onset"] = round(motion.onset, 4)
            motions.append(fields)
        return {"frames": self.frames, "start": self.start.to_dict(), "motions": motions}


def turning_textures(shape: str, size: str | None = None) -> tuple[str, ...]:
    """The textures the world draws on a turning shape (of a size, when given)."""
    return tuple(t for t in vocab.textures_for(shape, size) if (shape, t) not in TURN_HIDDEN_TEXTURES)


def check_frames(frames: int) -> int:
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames < MIN_FRAMES:
        raise ValueError(f"a clip has an integer number of frames, at least {MIN_FRAMES}, got {frames!r}")
    return int(frames)


def progress(t: int, frames: int) -> float:
    if not 0 <= t < frames:
        raise ValueError(f"frame {t} is outside a clip of {frames} frames")
    return t / (frames - 1)


def switched(motion: Motion, t: int, frames: int) -> bool:
    """Whether a recolour or appearance has happened by frame t."""
    return t >= motion.onset * (frames - 1) - 1e-9


def unit(direction: str) -> tuple[float, float]:
    dx, dy = DIRECTIONS[direction]
    norm = math.hypot(dx, dy)
    return dx / norm, dy / norm


def travel(motion: Motion, p: float) -> float:
    """Distance along the motion's direction at progress p (move and bounce)."""
    if motion.kind == "move":
        return motion.distance * p
    speed = motion.distance / motion.turn_at
    return speed * p if p <= motion.turn_at else motion.distance - speed * (p - motion.turn_at)


def quantise_diameter(diameter: float, image_size: int) -> float:
    """Quarter pixels, as the world draws diameters (the sprite cache relies on it)."""
    return round(diameter * image_size * 4) / 4 / image_size


def snap(centre: tuple[float, float], diameter: float, image_size: int) -> tuple[float, float]:
    """The centre moved to where the sprite's window sits on whole pixels."""
    window = sprite_window(diameter * image_size)
    x0 = round(centre[0] * image_size - window / 2)
    y0 = round(centre[1] * image_size - window / 2)
    return ((x0 + window / 2) / image_size, (y0 + window / 2) / image_size)


def _state(obj: SceneObject, motion: Motion | None, t: int, frames: int, image_size: int) -> SceneObject | None:
    """The object as frame t shows it (None while it has not yet appeared)."""
    if motion is None:
        return obj
    p = progress(t, frames)
    if motion.kind in ("move", "bounce"):
        ux, uy = unit(motion.direction)
        s = travel(motion, p)
        centre = snap((obj.centre[0] + ux * s, obj.centre[1] + uy * s), obj.diameter, image_size)
        return replace(obj, centre=centre, region=vocab.region_of(*centre))
    if motion.kind == "rotate":
        sign = -1.0 if motion.spin == "clockwise" else 1.0
        return replace(obj, angle=float(round(sign * motion.turn * p)))  # whole degrees: sprites cache
    if motion.kind in ("grow", "shrink"):
        diameter = quantise_diameter(obj.diameter * (1 + (motion.scale - 1) * p), image_size)
        centre = snap(obj.centre, diameter, image_size)
        return replace(obj, diameter=diameter, size=vocab.size_name(diameter), centre=centre,
                       region=vocab.region_of(*centre))
    if motion.kind == "recolour":
        return replace(obj, colour=motion.colour, rgb=motion.rgb) if switched(motion, t, frames) else obj
    return obj if switched(motion, t, frames) else None  # appear


def frame_scene(clip: Clip, t: int) -> Scene:
    """The exact scene of frame t (0-based)."""
    states = (_state(obj, motion, t, clip.frames, clip.size) for obj, motion in zip(clip.start.objects, clip.motions))
    return replace(clip.start, objects=tuple(s for s in states if s is not None))


def frame_scenes(clip: Clip) -> list[Scene]:
    return [frame_scene(clip, t) for t in range(clip.frames)]


def render_clip(clip: Clip) -> np.ndarray:
    """Every frame drawn by the image world's renderer, [frames, size, size, 3] uint8."""
    from atelier.world.images.render import render

    return np.stack([render(scene) for scene in frame_scenes(clip)])


def clip_masks(clip: Clip) -> list[np.ndarray]:
    """Per-frame object masks, one [n_t, size, size] bool array per frame, in the order of the
    frame's objects (an object not yet appeared has none)."""
    from atelier.world.images.render import object_masks

    return [object_masks(scene) for scene in frame_scenes(clip)]


def window_box(obj: SceneObject, image_size: int) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1) an object's sprite window covers, a turned one's included;
    windows keep a pixel of margin round the shape, so disjoint windows never touch."""
    x0, y0, window = obj.pixel_origin(image_size)
    pad = rotation_pad(obj.shape, obj.diameter * image_size) if obj.angle else 0
    return x0 - pad, y0 - pad, x0 + window + pad, y0 + window + pad


@cache
def rotation_period(shape: str) -> float:
    """Degrees after which a turning shape looks the same again (about its centroid): 90 for a
    square, 72 for a star, 360 for a heart; 0 for shapes that look the same at every angle."""
    if shape in ROUND_SHAPES:
        return 0.0
    axis = np.linspace(-1.6, 1.6, 321)
    u, v = np.meshgrid(axis, axis)
    base = inside(shape, u, v)
    for period in (60.0, 72.0, 90.0, 120.0, 180.0):
        turned = inside(shape, u, v, period)
        if (base & turned).sum() / (base | turned).sum() > 0.98:
            return period
    return 360.0
