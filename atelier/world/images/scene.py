"""Scenes: the structured truth of one image, and the two ways to draw one at random.

`sample_scene` draws from the training distribution (or everything, split="all");
`realize` draws a scene that satisfies a given query, with everything it leaves free random.
Both take a `random.Random`, whose sequence Python keeps stable across versions and
platforms, so the same seed gives the same scene everywhere.
"""

from __future__ import annotations

import math
import numbers
import random
from dataclasses import dataclass, replace

from atelier.world import vocab
from atelier.world.images.query import Query
from atelier.world.shapes import sprite_window
from atelier.world.splits import allowed_in, check_split

MIN_SIZE, MAX_SIZE = 32, 256
# Colour distance (RGB in 0..1, Euclidean) an object keeps from every background colour.
PRIMARY_CONTRAST = 0.40
SECONDARY_CONTRAST = 0.40
PATTERN_CONTRAST = 0.35  # between the two colours of a gradient or pattern
COLOUR_JITTER = 0.03
BACKGROUND_WEIGHTS = {"solid": 0.45, "gradient": 0.25, "checkered": 0.15, "stripes": 0.15}

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    texture: str
    region: int  # index into vocab.REGIONS
    centre: tuple[float, float]  # fractions of the image, x right, y down
    diameter: float  # fraction of the image width
    rgb: RGB  # the colour actually drawn (named colour plus jitter), 0..1
    angle: float = 0.0  # degrees anticlockwise about the centroid; only clips turn objects

    def pixel_origin(self, image_size: int) -> tuple[int, int, int]:
        """Top-left corner and side of this object's sprite window, in pixels."""
        diameter_px = self.diameter * image_size
        window = sprite_window(diameter_px)
        x0 = round(self.centre[0] * image_size - window / 2)
        y0 = round(self.centre[1] * image_size - window / 2)
        return x0, y0, window


@dataclass(frozen=True)
class Background:
    kind: str
    colours: tuple[str, ...]
    rgbs: tuple[RGB, ...]
    direction: str | None = None  # gradients: "horizontal" runs left to right, "vertical" top to bottom


@dataclass(frozen=True)
class Scene:
    size: int
    background: Background
    objects: tuple[SceneObject, ...]

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "background": {"kind": self.background.kind, "colours": list(self.background.colours),
                           "direction": self.background.direction},
            "objects": [
                {"shape": o.shape, "colour": o.colour, "size": o.size, "texture": o.texture,
                 "region": vocab.REGIONS[o.region], "centre": [round(c, 4) for c in o.centre],
                 "diameter": round(o.diameter, 4)} | ({"angle": round(o.angle, 4)} if o.angle else {})
                for o in self.objects
            ],
        }


def check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"image size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    return int(size)


def _distance(a: RGB, b: RGB) -> float:
    return math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2)


def distance_to_segment(p: RGB, a: RGB, b: RGB) -> float:
    ab = [b[i] - a[i] for i in range(3)]
    denom = sum(x * x for x in ab) or 1.0
    t = max(0.0, min(1.0, sum((p[i] - a[i]) * ab[i] for i in range(3)) / denom))
    return _distance(p, tuple(a[i] + t * ab[i] for i in range(3)))


def _distance_to_background(rgb: RGB, background: Background) -> float:
    if background.kind == "gradient":
        return distance_to_segment(rgb, background.rgbs[0], background.rgbs[1])
    return min(_distance(rgb, c) for c in background.rgbs)


def contrasts(obj: SceneObject, background: Background) -> bool:
    """Whether the object, and its texture's shade, stand out from the whole background."""
    if _distance_to_background(obj.rgb, background) < PRIMARY_CONTRAST:
        return False
    if obj.texture != "solid":
        return _distance_to_background(vocab.secondary_shade(obj.rgb, obj.colour), background) >= SECONDARY_CONTRAST
    return True


def jitter_colour(rng: random.Random, name: str) -> RGB:
    base = vocab.colour_unit(name)
    return tuple(min(1.0, max(0.0, c + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER))) for c in base)


def place(rng: random.Random, region: int, diameter: float, image_size: int) -> tuple[float, float]:
    """A centre in the region's cell, jittered but keeping clear of neighbouring cells, and
    snapped so that the sprite sits on whole pixels."""
    cell = 1 / vocab.GRID
    row, col = divmod(region, vocab.GRID)
    room = vocab.POSITION_JITTER * max(0.0, cell - diameter)
    cx = (col + 0.5) * cell + rng.uniform(-room, room)
    cy = (row + 0.5) * cell + rng.uniform(-room, room)
    window = sprite_window(diameter * image_size)
    x0 = round(cx * image_size - window / 2)
    y0 = round(cy * image_size - window / 2)
    return ((x0 + window / 2) / image_size, (y0 + window / 2) / image_size)


def _diameter(rng: random.Random, size: str, image_size: int) -> float:
    """Diameter as a fraction of the width, quantised to quarter pixels for the sprite cache."""
    raw = vocab.SIZES[size] * (1 - rng.uniform(0, vocab.SIZE_JITTER)) * image_size
    return round(raw * 4) / 4 / image_size


def make_object(rng: random.Random, image_size: int, region: int, shape: str, colour: str,
                size: str, texture: str) -> SceneObject:
    """An object sized, placed in a region's cell and coloured as the world draws one."""
    diameter = _diameter(rng, size, image_size)
    return SceneObject(shape=shape, colour=colour, size=size, texture=texture, region=region,
                       centre=place(rng, region, diameter, image_size), diameter=diameter,
                       rgb=jitter_colour(rng, colour))


def random_background(rng: random.Random, kind: str | None = None, colours: tuple[str, ...] = (),
                      direction: str | None = None) -> Background:
    """A background drawn as the world draws one, optionally of a given kind, colours and direction."""
    if kind is None:
        kind = rng.choices(list(BACKGROUND_WEIGHTS), weights=list(BACKGROUND_WEIGHTS.values()))[0]
    n = 1 if kind == "solid" else 2
    named = [vocab.colour_unit(c) for c in colours]
    if n == 2 and named and _distance(named[0], named[1]) < PATTERN_CONTRAST:
        raise ValueError(f"background colours {colours} are too alike to draw a {kind}")
    while True:  # named colours that are far enough apart stay so after a few jitters
        names = colours or tuple(rng.sample(vocab.COLOUR_NAMES, n))
        rgbs = tuple(jitter_colour(rng, c) for c in names)
        if n == 1 or _distance(rgbs[0], rgbs[1]) >= PATTERN_CONTRAST:
            break
    if kind == "gradient" and direction is None:
        direction = rng.choice(vocab.GRADIENT_DIRECTIONS)
    return Background(kind=kind, colours=names, rgbs=rgbs, direction=direction if kind == "gradient" else None)


def sample_scene(rng: random.Random, size: int = 64, split: str = "train",
                 max_objects: int = vocab.MAX_OBJECTS) -> Scene:
    """A random scene of 1 to `max_objects` (at most 4) objects. A third of multi-object scenes
    repeat one object type so that counts ("three green stars") are common. split="train" never
    yields a held-out fact (see atelier.world.splits)."""
    check_size(size)
    check_split(split)
    if not 1 <= max_objects <= vocab.MAX_OBJECTS:
        raise ValueError(f"max_objects must be from 1 to {vocab.MAX_OBJECTS}, got {max_objects}")
    while True:
        n = rng.randint(1, max_objects)
        regions = rng.sample(range(vocab.GRID * vocab.GRID), n)
        repeats = rng.randint(2, n) if n >= 2 and rng.random() < 0.35 else 1
        kinds = []
        for index in range(n):
            if index < repeats and kinds:
                kinds.append(kinds[0])
                continue
            shape, size_name = rng.choice(vocab.SHAPES), rng.choice(vocab.SIZE_NAMES)
            kinds.append((shape, rng.choice(vocab.COLOUR_NAMES), size_name,
                          rng.choice(vocab.textures_for(shape, size_name))))
        objects = tuple(make_object(rng, size, region, *kind) for region, kind in zip(regions, kinds))
        if not allowed_in(split, objects):
            continue
        for _ in range(20):
            background = random_background(rng)
            if all(contrasts(o, background) for o in objects):
                return Scene(size=size, background=background, objects=objects)


def realize(query: Query, rng: random.Random, size: int = 64, attempts: int = 2000) -> Scene:
    """A random scene that satisfies `query`, holding only the objects it asks for."""
    check_size(size)
    for group in query.objects:
        sizes = [group.size] if group.size else list(vocab.SIZE_NAMES)
        if group.texture and not any(group.texture in vocab.textures_for(group.shape, s) for s in sizes):
            raise ValueError(f"the world draws no {' '.join(filter(None, (group.size, group.texture, group.shape)))}")
    bg_query = query.background
    for _ in range(attempts):
        specs = []  # (shape, colour, size, texture, region or None), one per object
        for group in query.objects:
            for _copy in range(group.count):
                sizes = [s for s in vocab.SIZE_NAMES
                         if group.texture is None or group.texture in vocab.textures_for(group.shape, s)]
                size_name = group.size or rng.choice(sizes)
                texture = group.texture or rng.choice(vocab.textures_for(group.shape, size_name))
                specs.append((group.shape, group.colour or rng.choice(vocab.COLOUR_NAMES),
                              size_name, texture, group.region))
        fixed = {vocab.REGIONS.index(s[4]) for s in specs if s[4] is not None}
        free = [r for r in range(vocab.GRID * vocab.GRID) if r not in fixed]
        rng.shuffle(free)
        objects = []
        for shape, colour, size_name, texture, region in specs:
            cell = vocab.REGIONS.index(region) if region is not None else free.pop()
            objects.append(make_object(rng, size, cell, shape, colour, size_name, texture))
        if bg_query is None:
            background = random_background(rng)
        else:
            background = random_background(rng, bg_query.kind, bg_query.colours, bg_query.direction)
        objects = [o if contrasts(o, background) else _recolour_free(rng, o, background, query) for o in objects]
        if any(o is None for o in objects):
            continue
        scene = Scene(size=size, background=background, objects=tuple(objects))
        if query.satisfied_by(scene.objects, background):
            return scene
    raise ValueError(f"no scene of the world satisfies {query.to_dict()}")


def _recolour_free(rng: random.Random, obj: SceneObject, background: Background,
                   query: Query) -> SceneObject | None:
    """Give an object a colour that stands out, unless the query fixed its colour."""
    if any(g.matches(obj) and g.colour is not None for g in query.objects):
        return None
    return recoloured(obj, background, rng)


def recoloured(obj: SceneObject, background: Background, rng: random.Random,
               avoid: tuple[str, ...] = ()) -> SceneObject | None:
    """The object in a random colour (not in `avoid`) that stands out from the background,
    or None when no colour does."""
    for colour in rng.sample(vocab.COLOUR_NAMES, len(vocab.COLOUR_NAMES)):
        if colour in avoid:
            continue
        candidate = replace(obj, colour=colour, rgb=jitter_colour(rng, colour))
        if contrasts(candidate, background):
            return candidate
    return None

