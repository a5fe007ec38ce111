"""Edit pairs: a source scene, one edit of it, and the exact truth of that edit.

The model edits by keep-mask conditioning (README, The model): it is shown the pixels outside a region
and asked to fill in the region so that the whole image fits a caption. An edit pair gives
the trainer and the evaluator that situation exactly: `edit_mask` (True = the region the edit
may change; the `region` argument of atelier.train.masks.keep_mask) covers every pixel that
differs, so source and target are byte-identical outside it, and `region_query` states what
must hold inside the region of the target, which the oracle checks from pixels alone.

Five kinds, the product's edits in miniature: replace the background, change an object's
colour, change its shape, remove it, add one in an empty cell of the grid. Pair i depends
only on (seed, i, kind), like the image stream, and both scenes keep the world's contrast and
split rules, so a training pair never shows a held-out fact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from atelier.world import vocab
from atelier.world.images.caption import describe, say, speaker
from atelier.world.images.query import BackgroundQuery, ObjectQuery, Observed, ObservedBackground, Query
from atelier.world.images.render import object_coverage, render
from atelier.world.images.scene import (
    Scene,
    SceneObject,
    check_size,
    contrasts,
    jitter_colour,
    make_object,
    random_background,
    sample_scene,
)
from atelier.world.images.stream import scene_rng
from atelier.world.splits import allowed_in, check_split

KINDS: tuple[str, ...] = ("background", "colour", "shape", "remove", "add")
# How far an object's edit region reaches past its pixels, as a fraction of the image side
# (2 pixels at 64): room for a model to redraw the edge, and always more than the one pixel
# of anti-aliased rim the renderer draws beyond a shape's half-covered pixels.
MASK_MARGIN = 1 / 32
CAPTION_TRIES = 200  # describe() mentions what an edit needs more often than not


@dataclass(frozen=True)
class RegionQuery:
    """What must hold inside an edit's region of the target.

    `objects`: the region holds exactly these objects, by the counting rules of Query
    (() = no object at all; None = objects are not asked about). `background`: what the
    whole background must read as (background edits). An object is in the region when its
    centre is, since the centre of a ring or crescent may lie off its own pixels.
    """

    objects: tuple[ObjectQuery, ...] | None = None
    background: BackgroundQuery | None = None

    def __post_init__(self) -> None:
        if self.objects is None and self.background is None:
            raise ValueError("a region query asks about the region's objects, the background, or both")
        if self.objects:
            Query(self.objects)  # the same rules as a caption's groups

    def failures(self, in_region: Sequence[Observed], background: ObservedBackground | None) -> list[str]:
        """Reasons the objects seen in the region (and the background) fail; empty when they hold."""
        out: list[str] = []
        if self.objects is not None:
            if self.objects:
                out.extend(Query(self.objects).failures(in_region, None))
            asked = sum(group.count for group in self.objects)
            if len(in_region) != asked:
                out.append(f"the region holds {len(in_region)} object(s), asked {asked}")
        if self.background is not None:
            out.extend(self.background.failures(background))
        return out

    def to_dict(self) -> dict:
        out: dict = {}
        if self.objects is not None:
            out["objects"] = Query(self.objects).to_dict()["objects"] if self.objects else []
        if self.background is not None:
            probe = ObjectQuery(vocab.SHAPES[0])  # Query needs an object to serialise a background
            out["background"] = Query((probe,), background=self.background).to_dict()["background"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RegionQuery:
        objects = data.get("objects")
        background = data.get("background")
        return cls(
            objects=None if objects is None else tuple(ObjectQuery(**g) for g in objects),
            background=None if background is None else BackgroundQuery(
                kind=background["kind"], colours=tuple(background.get("colours", ())),
                direction=background.get("direction"),
            ),
        )


@dataclass(frozen=True, eq=False)
class EditPair:
    """One edit with its exact truth. Images are rendered on first use and read-only;
    `edit_mask` is the `region` that atelier.train.masks.keep_mask turns into a keep-mask."""

    seed: int
    index: int
    kind: str
    source: Scene
    target: Scene
    edit_mask: np.ndarray  # [size, size] bool, True = the edit may change this pixel
    instruction: str  # what a user would type: "make the red star blue"
    caption: str  # the whole target's caption, what a keep-mask model is prompted with
    caption_query: Query  # what the caption asserts, true of the target
    region_query: RegionQuery  # what must hold inside the region of the target
    edited: int | None  # index into source.objects of the object edited (colour, shape, remove)
    reference: ObjectQuery | None  # how the instruction names that object (unique in the source)

    @cached_property
    def source_image(self) -> np.ndarray:
        """[size, size, 3] uint8."""
        return _read_only(render(self.source))

    @cached_property
    def target_image(self) -> np.ndarray:
        """[size, size, 3] uint8, equal to source_image wherever edit_mask is False."""
        return _read_only(render(self.target))

    @property
    def kept(self) -> tuple[SceneObject, ...]:
        """The source's objects the edit leaves alone: they must still be there afterwards."""
        return tuple(o for i, o in enumerate(self.source.objects) if i != self.edited)

    @cached_property
    def region_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), end-exclusive: the bounding box of the edit mask."""
        ys, xs = np.nonzero(self.edit_mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    def in_region(self, objects: Sequence[Observed]) -> list[Observed]:
        """The objects (true or read back) whose centre lies in the region's box."""
        x0, y0, x1, y1 = self.region_box
        size = self.source.size
        return [o for o in objects if x0 <= o.centre[0] * size < x1 and y0 <= o.centre[1] * size < y1]

    def region_failures(self, objects: Sequence[Observed], background: ObservedBackground | None) -> list[str]:
        """Whether an image's objects and background (true or read) satisfy the region query."""
        in_region = [] if self.region_query.objects is None else self.in_region(objects)
        return self.region_query.failures(in_region, background)


@dataclass(frozen=True)
class _Edit:
    target: Scene
    edited: int | None
    reference: ObjectQuery | None
    region_query: RegionQuery
    instruction: str


def make_edit_pair(seed: int, index: int, size: int = 64, split: str = "train", kind: str | None = None) -> EditPair:
    """Edit pair `index` of the stream `seed`: a source drawn as the image stream draws
    scenes, one edit of the given kind (or one drawn at random), and its exact truth."""
    check_size(size)
    check_split(split)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; expected one of {', '.join(KINDS)}")
    rng = scene_rng(seed, index)
    drawn = rng.choice(KINDS)  # always drawn, so naming the drawn kind gives the same pair
    kind = kind or drawn
    while True:
        source = sample_scene(rng, size=size, split=split)
        edit = _EDITORS[kind](source, rng, split)
        if edit is None:
            continue
        caption_query = _caption_query(kind, edit, rng)
        if caption_query is None:
            continue
        return EditPair(
            seed=seed, index=index, kind=kind, source=source, target=edit.target,
            edit_mask=_read_only(_edit_mask(kind, source, edit)), instruction=_sentence(edit.instruction, rng),
            caption=say(caption_query, rng), caption_query=caption_query, region_query=edit.region_query,
            edited=edit.edited, reference=edit.reference,
        )


def edit_pairs(seed: int = 0, count: int = 16, size: int = 64, split: str = "train",
               kind: str | None = None) -> list[EditPair]:
    """Pairs 0 .. count-1 of a stream."""
    return [make_edit_pair(seed, i, size=size, split=split, kind=kind) for i in range(count)]


# --- the edits ---------------------------------------------------------------------------


def _replace_background(source: Scene, rng: random.Random, split: str) -> _Edit | None:
    for _ in range(20):
        background = random_background(rng)
        if not all(contrasts(o, background) for o in source.objects):
            continue
        say_direction = background.kind == "gradient" and rng.random() < 0.3
        query = BackgroundQuery(background.kind, background.colours,
                                background.direction if say_direction else None)
        if not query.failures(source.background):
            continue  # the source must not already satisfy the edit
        return _Edit(target=replace(source, background=background), edited=None, reference=None,
                     region_query=RegionQuery(background=query), instruction=_background_instruction(query, rng))
    return None


def _change_colour(source: Scene, rng: random.Random, split: str) -> _Edit | None:
    i = rng.randrange(len(source.objects))
    obj = source.objects[i]
    for colour in rng.sample(vocab.COLOUR_NAMES, len(vocab.COLOUR_NAMES)):
        new = replace(obj, colour=colour, rgb=jitter_colour(rng, colour))
        target = _with_object(source, i, new)
        if colour == obj.colour or not contrasts(new, source.background) or not allowed_in(split, target.objects):
            continue
        reference = _reference(source, i, rng)
        say_ = speaker(rng)
        name, new_colour = _the(say_.object_phrase(reference)), say_.pick("colours", colour)
        instruction = rng.choice((
            f"make {name} {new_colour}", f"turn {name} {new_colour}", f"paint {name} {new_colour}",
            f"change {name} to {new_colour}", f"change the colour of {name} to {new_colour}",
            f"{name} should be {new_colour}",
        ))
        return _Edit(target=target, edited=i, reference=reference, instruction=instruction,
                     region_query=RegionQuery(objects=(ObjectQuery(obj.shape, colour=colour),)))
    return None


def _change_shape(source: Scene, rng: random.Random, split: str) -> _Edit | None:
    i = rng.randrange(len(source.objects))
    obj = source.objects[i]
    for shape in rng.sample(vocab.SHAPES, len(vocab.SHAPES)):
        if shape == obj.shape or obj.texture not in vocab.textures_for(shape, obj.size):
            continue
        target = _with_object(source, i, replace(obj, shape=shape))
        if not allowed_in(split, target.objects):
            continue
        reference = _reference(source, i, rng)
        say_ = speaker(rng)
        name = _the(say_.object_phrase(reference))
        new = say_.noun(shape, plural=False)
        new = f"{_a(new)} {new}"
        instruction = rng.choice((
            f"turn {name} into {new}", f"change {name} into {new}", f"make {name} {new}",
            f"replace {name} with {new}", f"change the shape of {name} to {new}",
        ))
        return _Edit(target=target, edited=i, reference=reference, instruction=instruction,
                     region_query=RegionQuery(objects=(ObjectQuery(shape, colour=obj.colour),)))
    return None


def _remove(source: Scene, rng: random.Random, split: str) -> _Edit | None:
    if len(source.objects) < 2:  # a scene keeps at least one object, so captions stay valid
        return None
    i = rng.randrange(len(source.objects))
    target = replace(source, objects=source.objects[:i] + source.objects[i + 1:])
    if not allowed_in(split, target.objects):  # three hearts less one is a held-out two
        return None
    reference = _reference(source, i, rng)
    name = _the(speaker(rng).object_phrase(reference))
    instruction = rng.choice((f"remove {name}", f"delete {name}", f"erase {name}", f"take away {name}",
                              f"get rid of {name}", f"take out {name}"))
    return _Edit(target=target, edited=i, reference=reference, instruction=instruction,
                 region_query=RegionQuery(objects=()))


def _add(source: Scene, rng: random.Random, split: str) -> _Edit | None:
    if len(source.objects) >= vocab.MAX_OBJECTS:
        return None
    taken = {o.region for o in source.objects}
    region = rng.choice([r for r in range(vocab.GRID * vocab.GRID) if r not in taken])
    for _ in range(20):
        shape, colour, size = rng.choice(vocab.SHAPES), rng.choice(vocab.COLOUR_NAMES), rng.choice(vocab.SIZE_NAMES)
        texture = rng.choice(vocab.textures_for(shape, size))
        new = make_object(rng, source.size, region, shape, colour, size, texture)
        target = replace(source, objects=source.objects + (new,))
        if not contrasts(new, source.background) or not allowed_in(split, target.objects):
            continue
        asked = ObjectQuery(shape, colour=colour if rng.random() < 0.9 else None,
                            size=size if rng.random() < 0.3 else None,
                            texture=texture if rng.random() < 0.2 else None)
        say_ = speaker(rng)
        thing = say_.object_phrase(asked)
        where = say_.pick("regions", vocab.REGIONS[region])
        verb = rng.choice(("add", "put", "draw", "place"))
        instruction = f"{where}, {verb} {thing}" if rng.random() < 0.25 else f"{verb} {thing} {where}"
        return _Edit(target=target, edited=None, reference=None, instruction=instruction,
                     region_query=RegionQuery(objects=(asked,)))
    return None


_EDITORS = {"background": _replace_background, "colour": _change_colour, "shape": _change_shape,
            "remove": _remove, "add": _add}


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _with_object(scene: Scene, index: int, obj: SceneObject) -> Scene:
    return replace(scene, objects=scene.objects[:index] + (obj,) + scene.objects[index + 1:])


def _reference(source: Scene, index: int, rng: random.Random) -> ObjectQuery:
    """How an instruction names one object of the source: its shape, usually its colour,
    sometimes its size, and its region whenever that is needed to make the name unique."""
    obj = source.objects[index]
    group = ObjectQuery(obj.shape, colour=obj.colour if rng.random() < 0.85 else None,
                        size=obj.size if rng.random() < 0.15 else None)
    if sum(group.matches(o) for o in source.objects) > 1 or rng.random() < 0.15:
        group = replace(group, region=vocab.REGIONS[obj.region])
    return group


def _the(phrase: str) -> str:
    """'a red star' -> 'the red star' (the grammar's phrases start with their determiner)."""
    return "the " + phrase.split(" ", 1)[1]


def _background_instruction(query: BackgroundQuery, rng: random.Random) -> str:
    """'replace the background with ...', 'make the background ...': `phrase` is a noun
    phrase (a new background), `state` what the background should be."""
    say_ = speaker(rng)
    colours = [say_.pick("colours", c) for c in query.colours]
    run = {"horizontal": " running left to right", "vertical": " running top to bottom", None: ""}[query.direction]
    if query.kind == "solid":
        state = colours[0]
        phrase = f"{_a(colours[0])} {colours[0]} one"
    elif query.kind == "gradient":
        state = f"a gradient from {colours[0]} to {colours[1]}{run}"
        phrase = rng.choice((state, f"one fading from {colours[0]} to {colours[1]}{run}"))
    else:
        state = f"{colours[0]} and {colours[1]} {say_.pick('pattern_adjectives', query.kind)}"
        phrase = f"{_a(colours[0])} {state} one"
        if query.kind == "stripes" and rng.random() < 0.3:
            phrase = f"{colours[0]} and {colours[1]} horizontal stripes"
    return rng.choice((
        f"replace the background with {phrase}", f"swap the background for {phrase}",
        f"change the background to {state}", f"make the background {state}", f"the background should be {state}",
    ))


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _sentence(text: str, rng: random.Random) -> str:
    """Capitalised half the time, as captions are."""
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def _caption_query(kind: str, edit: _Edit, rng: random.Random) -> Query | None:
    """A description of the target that names what the edit made (the new colour, shape,
    added object or background), so the caption alone asks for the edit's result."""
    target = edit.target
    for _ in range(CAPTION_TRIES):
        query = describe(target, rng)
        if kind == "background":
            wanted = edit.region_query.background
            if query.background is not None and query.background.colours == wanted.colours \
                    and query.background.kind == wanted.kind:
                return query
        elif kind == "remove":
            return query
        else:
            made = target.objects[edit.edited] if edit.edited is not None else target.objects[-1]
            if any(g.matches(made) and g.colour == made.colour for g in query.objects):
                return query
    return None


# --- the edit region ---------------------------------------------------------------------


def _edit_mask(kind: str, source: Scene, edit: _Edit) -> np.ndarray:
    from scipy.ndimage import binary_dilation, binary_fill_holes

    size = source.size
    if kind == "background":
        # Everything but the pixels the kept objects cover fully: their rims blend with the
        # background, so a new background changes them too.
        covered = np.zeros((size, size), dtype=bool)
        for i in range(len(source.objects)):
            covered |= object_coverage(source, i) >= 1.0
        return ~covered
    if kind == "add":
        added = object_coverage(edit.target, len(edit.target.objects) - 1)
        return _cell(edit.target.objects[-1].region, size) | (added > 0)
    target_index = None if kind == "remove" else edit.edited
    shape = np.zeros((size, size), dtype=bool)
    touched = np.zeros((size, size), dtype=bool)
    for scene, i in ((source, edit.edited), (edit.target, target_index)):
        if i is None:
            continue
        coverage = object_coverage(scene, i)
        shape |= coverage >= 0.5
        touched |= coverage > 0
    margin = max(1, round(MASK_MARGIN * size))
    return binary_dilation(binary_fill_holes(shape), iterations=margin) | touched


def _cell(region: int, size: int) -> np.ndarray:
    """Every pixel that overlaps a region's grid cell."""
    row, col = divmod(region, vocab.GRID)
    lo = [int(np.floor(k * size / vocab.GRID)) for k in (row, col)]
    hi = [int(np.ceil((k + 1) * size / vocab.GRID)) for k in (row, col)]
    out = np.zeros((size, size), dtype=bool)
    out[lo[0]:hi[0], lo[1]:hi[1]] = True
    return out

