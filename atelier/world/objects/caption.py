"""Captions of 3D objects, in the image world's style (atelier.world.images.caption): the same colour
and size words, shape nouns with synonyms, and a few sentence frames. Only training words:
no word of atelier.world.images.caption.held_out_words() ever occurs here (a test checks)."""

from __future__ import annotations

import random

from atelier.world.images.caption import TRAIN, article
from atelier.world.objects.query import Object3DQuery

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "sphere": ("sphere", "ball"), "cube": ("cube", "box"), "cylinder": ("cylinder",), "cone": ("cone",),
    "torus": ("torus", "doughnut"), "pyramid": ("pyramid",), "octahedron": ("octahedron",),
    "prism": ("prism", "triangular prism"),
}
# Said when a caption leaves the shape free ("a red object").
NO_SHAPE_WORDS: tuple[str, ...] = ("object", "shape", "thing")
# No "3D": the image world's split reads it as the held-out count word "3".
_FRAMES = ("", "", "", "a model of ", "a render of ", "a rendering of ", "a turntable view of ")


def describe_object(obj, rng: random.Random) -> Object3DQuery:
    """A true, possibly partial, prompt for an object (anything with shape, colour and size):
    nearly always its shape, usually its colour, sometimes its size."""
    say_shape = rng.random() < 0.92
    say_colour = not say_shape or rng.random() < 0.85
    say_size = rng.random() < 0.35
    return Object3DQuery(shape=obj.shape if say_shape else None, colour=obj.colour if say_colour else None,
                         size=obj.size if say_size else None)


def say_object(query: Object3DQuery, rng: random.Random) -> str:
    """One English phrase for the prompt."""
    adjectives = []
    if query.size:
        adjectives.append(rng.choice(TRAIN.sizes[query.size]))
    if query.colour:
        adjectives.append(rng.choice(TRAIN.colours[query.colour]))
    noun = rng.choice(SHAPE_WORDS[query.shape]) if query.shape else rng.choice(NO_SHAPE_WORDS)
    body = " ".join(adjectives + [noun])
    text = rng.choice(_FRAMES) + f"{article('a', body)} {body}"
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text
