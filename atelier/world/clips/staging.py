"""Staging clips: who moves how, from where, so that every frame is a valid scene of the world.

`sample_clip` draws from the training distribution; `realize_clip` draws a clip that
satisfies a ClipQuery, everything it leaves free random. A staged clip is kept only if, in
every frame, every object lies wholly inside the image, no two objects' sprite windows meet
(so objects never touch), every object stands out from the background (a recolouring object
in both its colours), and, for split="train", no held-out fact is shown.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from atelier.world import vocab
from atelier.world.clips.motion import (
    BOUNCE_DIRECTIONS,
    DEFAULT_FRAMES,
    DIRECTIONS,
    MIN_BOUNCE_FRAMES,
    ROTATING_SHAPES,
    SPINS,
    Clip,
    Motion,
    check_frames,
    frame_scene,
    quantise_diameter,
    snap,
    turning_textures,
    unit,
    window_box,
)
from atelier.world.clips.query import ClipQuery
from atelier.world.images.scene import (
    Background,
    Scene,
    SceneObject,
    check_size,
    contrasts,
    jitter_colour,
    make_object,
    random_background,
    recoloured,
)
from atelier.world.shapes import sprite_window
from atelier.world.splits import allowed_in, check_split

# Motion ranges, in fractions of the width, degrees and progress; each clears the prompt's
# thresholds (atelier.world.clips.query) by a wide margin.
TRAVEL = (0.3, 0.55)  # path length of a move
BOUNCE_REACH = (0.25, 0.5)  # from the start to the edge
BOUNCE_TURN = (0.4, 0.6)  # progress at the edge
TURN = (90.0, 180.0)  # degrees over the clip
TURN_STEP_CAP = 18.0  # degrees per frame at most, so short clips still read unambiguously
SMALL_END = (0.13, 0.16)  # diameter of a growing object at its smallest
SCALE = (1.7, 2.1)  # its largest over its smallest diameter
ONSET = (0.3, 0.7)  # progress at which a colour changes or an object appears
# Training clips: how often each motion is drawn, and the chance a further object moves.
MOTION_WEIGHTS = {"move": 3.0, "bounce": 1.5, "rotate": 1.5, "grow": 1.0, "shrink": 1.0, "recolour": 1.5,
                  "appear": 1.5}
MAX_OBJECTS = 3
EXTRA_MOVER = 0.3
STAGING_TRIES = 12  # stagings of one cast before a new cast is drawn


@dataclass(frozen=True)
class _Part:
    """One object to stage: its look, an optional fixed region, and its motion's free choices."""

    shape: str
    colour: str
    size: str | None  # None: grows or shrinks
    texture: str
    region: int | None = None
    kind: str | None = None
    direction: str | None = None
    spin: str | None = None
    target: str | None = None  # recolour: the colour it turns to (None: any that stands out)


def _centre_range(diameter: float, image_size: int) -> tuple[float, float]:
    """Where a centre may lie so that the object's window stays inside the image."""
    half = sprite_window(diameter * image_size) / 2 / image_size
    return half, 1 - half


def _stage_traveller(rng: random.Random, part: _Part, image_size: int,
                     frames: int) -> tuple[SceneObject, Motion] | None:
    """A move or bounce whose whole path keeps the object inside the image."""
    # Drawn as the world draws any object (its cell is replaced by the path's start below).
    obj = make_object(rng, image_size, 4, part.shape, part.colour, part.size, part.texture)
    lo, hi = _centre_range(obj.diameter, image_size)
    room = hi - lo
    ux, uy = unit(part.direction)
    if part.kind == "move":
        longest = min(TRAVEL[1], room / max(abs(ux), abs(uy)))
        if longest < TRAVEL[0]:
            return None
        distance = rng.uniform(TRAVEL[0], longest)
        start = [rng.uniform(lo - min(0.0, u * distance), hi - max(0.0, u * distance)) for u in (ux, uy)]
        motion = Motion("move", direction=part.direction, distance=distance)
    else:
        turn_frame = min(frames - 2, max(1, round(rng.uniform(*BOUNCE_TURN) * (frames - 1))))
        turn_at = turn_frame / (frames - 1)
        longest = min(BOUNCE_REACH[1], room, room / max(1e-9, 1 / turn_at - 1))
        if longest < BOUNCE_REACH[0]:
            return None
        distance = rng.uniform(BOUNCE_REACH[0], longest)
        start = [rng.uniform(lo, hi) for _ in range(2)]
        for axis, u in enumerate((ux, uy)):
            if u:
                start[axis] = (lo if u < 0 else hi) - u * distance
        motion = Motion("bounce", direction=part.direction, distance=distance, turn_at=turn_at)
    centre = snap(tuple(start), obj.diameter, image_size)
    return replace(obj, centre=centre, region=vocab.region_of(*centre)), motion


def _stage_in_place(rng: random.Random, part: _Part, region: int, background: Background, image_size: int,
                    frames: int) -> tuple[SceneObject, Motion | None] | None:
    """An object that stays in its cell: still, turning, growing or shrinking (its largest
    size must fit), changing colour (to one that stands out) or appearing."""
    if part.kind in ("grow", "shrink"):
        small = rng.uniform(*SMALL_END)
        ratio = rng.uniform(*SCALE)
        first = small if part.kind == "grow" else small * ratio
        diameter = quantise_diameter(first, image_size)
        cell = 1 / vocab.GRID
        row, col = divmod(region, vocab.GRID)
        lo, hi = _centre_range(small * ratio, image_size)
        jitter = vocab.POSITION_JITTER * cell / 2
        centre = tuple(min(hi, max(lo, (k + 0.5) * cell + rng.uniform(-jitter, jitter))) for k in (col, row))
        centre = snap(centre, diameter, image_size)
        obj = SceneObject(shape=part.shape, colour=part.colour, size=vocab.size_name(diameter), texture=part.texture,
                          region=vocab.region_of(*centre), centre=centre, diameter=diameter,
                          rgb=jitter_colour(rng, part.colour))
        return obj, Motion(part.kind, scale=ratio if part.kind == "grow" else 1 / ratio)
    obj = make_object(rng, image_size, region, part.shape, part.colour, part.size, part.texture)
    if part.kind is None:
        return obj, None
    if part.kind == "rotate":
        turn = min(rng.uniform(*TURN), TURN_STEP_CAP * (frames - 1))
        return obj, Motion("rotate", spin=part.spin or rng.choice(SPINS), turn=turn)
    onset = rng.uniform(*ONSET)
    if part.kind == "appear":
        return obj, Motion("appear", onset=onset)
    if part.target is None:
        turned = recoloured(obj, background, rng, avoid=(obj.colour,))
    else:
        turned = replace(obj, colour=part.target, rgb=jitter_colour(rng, part.target))
    if turned is None or not contrasts(turned, background):
        return None
    return obj, Motion("recolour", colour=turned.colour, rgb=turned.rgb, onset=onset)


def _stage(rng: random.Random, parts: list[_Part], background: Background, image_size: int, frames: int,
           split: str) -> Clip | None:
    """Place and time every part; None when the result breaks a rule of the world."""
    fixed = {p.region for p in parts if p.region is not None}
    free = [r for r in range(vocab.GRID * vocab.GRID) if r not in fixed]
    rng.shuffle(free)
    objects, motions = [], []
    for part in parts:
        if part.kind in ("move", "bounce"):
            staged = _stage_traveller(rng, part, image_size, frames)
        else:
            region = part.region if part.region is not None else free.pop()
            staged = _stage_in_place(rng, part, region, background, image_size, frames)
        if staged is None:
            return None
        objects.append(staged[0])
        motions.append(staged[1])
    clip = Clip(Scene(size=image_size, background=background, objects=tuple(objects)), tuple(motions), frames)
    return clip if _valid(clip, split) else None


def _valid(clip: Clip, split: str) -> bool:
    size = clip.size
    for t in range(clip.frames):
        scene = frame_scene(clip, t)
        boxes = [window_box(o, size) for o in scene.objects]
        if any(x0 < 0 or y0 < 0 or x1 > size or y1 > size for x0, y0, x1, y1 in boxes):
            return False
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    return False
        if not all(contrasts(o, scene.background) for o in scene.objects):
            return False
        if not allowed_in(split, scene.objects):
            return False
    return True


def _check(size: int, frames: int) -> None:
    check_size(size)
    check_frames(frames)


def sample_clip(rng: random.Random, size: int = 64, frames: int = DEFAULT_FRAMES, split: str = "train") -> Clip:
    """A random clip of 1 to 3 objects, at least one of them moving. Movers have shapes no
    other object has, so a caption can always single them out."""
    _check(size, frames)
    check_split(split)
    kinds = [k for k in MOTION_WEIGHTS if k != "bounce" or frames >= MIN_BOUNCE_FRAMES]
    weights = [MOTION_WEIGHTS[k] for k in kinds]
    while True:
        n = rng.randint(1, MAX_OBJECTS)
        movers = [rng.choices(kinds, weights)[0]] + [rng.choices(kinds, weights)[0] if rng.random() < EXTRA_MOVER
                                                      else None for _ in range(n - 1)]
        movers.sort(key=lambda k: k is None)  # movers first, so that a caption's subjects lead
        taken: set[str] = set()
        parts = []
        for kind in movers:
            if kind is None:  # still objects may share a shape with each other, never with a mover
                shape = rng.choice([s for s in vocab.SHAPES if s not in taken])
            else:
                shape = rng.choice([s for s in (ROTATING_SHAPES if kind == "rotate" else vocab.SHAPES)
                                    if s not in taken])
                taken.add(shape)
            size_name = None if kind in ("grow", "shrink") else rng.choice(vocab.SIZE_NAMES)
            textures = turning_textures if kind == "rotate" else vocab.textures_for
            texture = "solid" if size_name is None else rng.choice(textures(shape, size_name))
            direction = None
            if kind == "move":
                direction = rng.choice(tuple(DIRECTIONS))
            elif kind == "bounce":
                direction = rng.choice(BOUNCE_DIRECTIONS)
            parts.append(_Part(shape, rng.choice(vocab.COLOUR_NAMES), size_name, texture, kind=kind,
                               direction=direction))
        for _ in range(STAGING_TRIES):
            clip = _stage(rng, parts, random_background(rng), size, frames, split)
            if clip is not None:
                return clip


def realize_clip(query: ClipQuery, rng: random.Random, size: int = 64, frames: int = DEFAULT_FRAMES,
                 attempts: int = 500) -> Clip:
    """A random clip that satisfies `query`, holding only the objects it asks for."""
    _check(size, frames)
    motions = {m.subject: m for m in query.motions}
    if frames < MIN_BOUNCE_FRAMES and any(m.kind == "bounce" for m in query.motions):
        raise ValueError(f"a bounce needs at least {MIN_BOUNCE_FRAMES} frames, got {frames}")
    for index, motion in motions.items():
        group = query.scene.objects[index]
        if motion.kind in ("grow", "shrink") and group.texture not in (None, "solid"):
            raise ValueError(f"the world draws objects that {motion.kind} solid only, not {group.texture}")
    bg = query.scene.background
    for _ in range(attempts):
        parts = []
        for index, group in enumerate(query.scene.objects):
            motion = motions.get(index)
            kind = motion.kind if motion else None
            for _copy in range(group.count):
                if kind in ("grow", "shrink"):
                    size_name, texture = None, "solid"
                else:
                    textures = turning_textures if kind == "rotate" else vocab.textures_for
                    sizes = [s for s in vocab.SIZE_NAMES if group.texture is None
                             or group.texture in textures(group.shape, s)]
                    if not sizes:
                        raise ValueError(f"the world draws no {group.texture} {group.shape}")
                    size_name = group.size or rng.choice(sizes)
                    texture = group.texture or rng.choice(textures(group.shape, size_name))
                colour = motion.colours[0] if kind == "recolour" else group.colour or rng.choice(vocab.COLOUR_NAMES)
                region = vocab.REGIONS.index(group.region) if group.region is not None else None
                parts.append(_Part(group.shape, colour, size_name, texture, region, kind,
                                   motion.direction if motion else None, motion.spin if motion else None,
                                   motion.colours[1] if kind == "recolour" else None))
        background = random_background(rng) if bg is None else random_background(rng, bg.kind, bg.colours,
                                                                                  bg.direction)
        clip = _stage(rng, parts, background, size, frames, "all")
        if clip is None:
            continue
        truth = [(s.objects, s.background) for s in (frame_scene(clip, t) for t in range(frames))]
        if not query.failures(truth):
            return clip
    raise ValueError(f"no clip of the world satisfies {query.to_dict()} in {attempts} attempts")
