"""The fixed public evaluation set of clip prompts, balanced over six motion categories.

Each prompt asks for one subject in one motion, sometimes with a still companion of another
shape and a named background; motion parameters (direction, spin, grow or shrink) are
balanced within a category, so prompts shuffled within a category disagree. Prompts use only
seen facts (no held-out colour-shape pair): the clip suite measures motion, and the image
suite already measures generalisation. Generated from a fixed seed and committed as
data/eval_clips.jsonl; a test checks the two agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from atelier.world import vocab
from atelier.world.clips.caption import say_clip
from atelier.world.clips.motion import (
    BOUNCE_DIRECTIONS,
    DEFAULT_FRAMES,
    DIRECTIONS,
    ROTATING_SHAPES,
    SPINS,
    turning_textures,
)
from atelier.world.clips.query import ClipQuery, MotionQuery
from atelier.world.clips.staging import realize_clip
from atelier.world.images.query import BackgroundQuery, ObjectQuery, Query
from atelier.world.jsonl import read_jsonl, write_jsonl
from atelier.world.splits import HELD_OUT_PAIRS

CATEGORIES: tuple[str, ...] = ("direction", "bounce", "rotate", "size_change", "colour_change", "appear")
PROMPTS_PER_CATEGORY = 24
SEED = 2026
DATA_FILE = Path(__file__).parents[1] / "data" / "eval_clips.jsonl"
COMPANION = 0.35  # chance of a still second object
NAME_BACKGROUND = 0.4


@dataclass(frozen=True)
class ClipPrompt:
    id: str
    category: str
    text: str
    query: ClipQuery
    frames: int = DEFAULT_FRAMES

    def to_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "text": self.text, "frames": self.frames,
                "query": self.query.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ClipPrompt:
        return cls(id=data["id"], category=data["category"], text=data["text"], frames=data["frames"],
                   query=ClipQuery.from_dict(data["query"]))


def _colour(rng: random.Random, shape: str, avoid: tuple[str, ...] = ()) -> str:
    return rng.choice([c for c in vocab.COLOUR_NAMES if (c, shape) not in HELD_OUT_PAIRS and c not in avoid])


def _subject(rng: random.Random, kind: str, shapes: tuple[str, ...] = vocab.SHAPES) -> ObjectQuery:
    shape = rng.choice(shapes)
    in_place = kind not in ("move", "bounce")
    resizes = kind in ("grow", "shrink")
    size = rng.choice(vocab.SIZE_NAMES) if not resizes and rng.random() < 0.25 else None
    textures = turning_textures(shape, size) if kind == "rotate" else vocab.textures_for(shape, size)
    texture = rng.choice(textures) if not resizes and len(textures) > 1 and rng.random() < 0.2 else None
    region_chance = 0.6 if kind == "appear" else 0.3 if in_place else 0.0
    return ObjectQuery(
        shape=shape,
        colour=_colour(rng, shape) if kind != "recolour" and rng.random() < 0.8 else None,
        size=size, texture=texture,
        region=rng.choice(vocab.REGIONS) if rng.random() < region_chance else None,
    )


def _query(rng: random.Random, subject: ObjectQuery, motion: MotionQuery) -> ClipQuery:
    groups = [subject]
    if rng.random() < COMPANION:
        shape = rng.choice([s for s in vocab.SHAPES if s != subject.shape])
        groups.append(ObjectQuery(shape, colour=_colour(rng, shape) if rng.random() < 0.7 else None))
    background = None
    if rng.random() < NAME_BACKGROUND:
        kind = rng.choice(vocab.BACKGROUNDS)
        background = BackgroundQuery(kind, tuple(rng.sample(vocab.COLOUR_NAMES, 1 if kind == "solid" else 2)))
    return ClipQuery(Query(tuple(groups), background=background), (motion,))


def _direction(rng, n):
    direction = tuple(DIRECTIONS)[n % len(DIRECTIONS)]
    return _query(rng, _subject(rng, "move"), MotionQuery(0, "move", direction=direction))


def _bounce(rng, n):
    direction = BOUNCE_DIRECTIONS[n % len(BOUNCE_DIRECTIONS)]
    return _query(rng, _subject(rng, "bounce"), MotionQuery(0, "bounce", direction=direction))


def _rotate(rng, n):
    spin = SPINS[n % len(SPINS)]
    return _query(rng, _subject(rng, "rotate", ROTATING_SHAPES), MotionQuery(0, "rotate", spin=spin))


def _size_change(rng, n):
    kind = ("grow", "shrink")[n % 2]
    return _query(rng, _subject(rng, kind), MotionQuery(0, kind))


def _colour_change(rng, n):
    subject = _subject(rng, "recolour")
    start = _colour(rng, subject.shape)
    end = _colour(rng, subject.shape, avoid=(start,))
    return _query(rng, subject, MotionQuery(0, "recolour", colours=(start, end)))


def _appear(rng, n):
    return _query(rng, _subject(rng, "appear"), MotionQuery(0, "appear"))


_GENERATORS: dict[str, Callable[[random.Random, int], ClipQuery]] = {
    "direction": _direction, "bounce": _bounce, "rotate": _rotate, "size_change": _size_change,
    "colour_change": _colour_change, "appear": _appear,
}


def build(seed: int = SEED, per_category: int = PROMPTS_PER_CATEGORY) -> list[ClipPrompt]:
    """Generate the evaluation set (deterministic for a seed). The n-th prompt of a category
    takes the n-th motion parameter in turn, so they are balanced."""
    rng = random.Random(seed)
    prompts: list[ClipPrompt] = []
    texts: set[str] = set()
    for category in CATEGORIES:
        made = 0
        while made < per_category:
            query = _GENERATORS[category](rng, made)
            text = say_clip(query, rng)
            if text in texts:
                continue
            try:
                realize_clip(query, random.Random(0), frames=DEFAULT_FRAMES)
            except ValueError:
                continue
            texts.add(text)
            prompts.append(ClipPrompt(id=f"{len(prompts):04d}", category=category, text=text, query=query))
            made += 1
    return prompts


def write(path: Path = DATA_FILE, seed: int = SEED) -> Path:
    return write_jsonl(path, build(seed))


@lru_cache(maxsize=1)
def load(path: Path = DATA_FILE) -> tuple[ClipPrompt, ...]:
    """The committed evaluation set."""
    return read_jsonl(path, ClipPrompt.from_dict)
