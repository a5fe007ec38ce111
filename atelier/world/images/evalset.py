"""The fixed public evaluation set of image prompts, balanced over nine categories.

Each prompt belongs to exactly one subset: `seen` (facts and words the training stream
uses), `held_out_pairs` (a colour-shape pair never drawn in training), `held_out_combos` (a
count or relation combination never drawn), or `held_out_phrasings` (seen facts said with at
least one word no training caption contains). The set is generated from a fixed seed and
committed as data/eval_images.jsonl; a test checks the two agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from atelier.world import vocab
from atelier.world.images.caption import held_out_words, say, words
from atelier.world.images.query import BackgroundQuery, ObjectQuery, Query, RelationQuery
from atelier.world.images.scene import realize
from atelier.world.jsonl import read_jsonl, write_jsonl
from atelier.world.splits import HELD_OUT_COUNTS, HELD_OUT_PAIRS, HELD_OUT_RELATIONS

CATEGORIES: tuple[str, ...] = (
    "single_object", "two_objects", "counting", "colours", "position",
    "colour_attribution", "size", "texture", "background",
)
SUBSETS: tuple[str, ...] = ("seen", "held_out_pairs", "held_out_combos", "held_out_phrasings")
PROMPTS_PER_CATEGORY = 72
# Prompts per held-out subset within a category; the rest are seen.
COMPOSITION: dict[str, dict[str, int]] = {
    category: {"held_out_phrasings": 8} for category in CATEGORIES
}
COMPOSITION["colours"]["held_out_pairs"] = 24
COMPOSITION["colour_attribution"]["held_out_pairs"] = 24
COMPOSITION["counting"]["held_out_combos"] = 20
COMPOSITION["position"]["held_out_combos"] = 20
SEED = 2026
DATA_FILE = Path(__file__).parents[1] / "data" / "eval_images.jsonl"


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    category: str
    subset: str
    text: str
    query: Query

    def to_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "subset": self.subset, "text": self.text,
                "query": self.query.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> EvalPrompt:
        return cls(id=data["id"], category=data["category"], subset=data["subset"], text=data["text"],
                   query=Query.from_dict(data["query"]))


def _pair(rng: random.Random, held_out: bool) -> tuple[str, str]:
    if held_out:
        return rng.choice(sorted(HELD_OUT_PAIRS))
    while True:
        pair = (rng.choice(vocab.COLOUR_NAMES), rng.choice(vocab.SHAPES))
        if pair not in HELD_OUT_PAIRS:
            return pair


def _single_object(rng, subset):
    return Query((ObjectQuery(rng.choice(vocab.SHAPES)),))


def _two_objects(rng, subset):
    a, b = rng.sample(vocab.SHAPES, 2)
    return Query((ObjectQuery(a), ObjectQuery(b)))


def _counting(rng, subset):
    if subset == "held_out_combos":
        count, shape = rng.choice(sorted(HELD_OUT_COUNTS))
    else:
        while (count := rng.randint(2, 4), shape := rng.choice(vocab.SHAPES)) in HELD_OUT_COUNTS:
            pass
    return Query((ObjectQuery(shape, count=count),))


def _colours(rng, subset):
    colour, shape = _pair(rng, subset == "held_out_pairs")
    return Query((ObjectQuery(shape, colour=colour),))


def _position(rng, subset):
    if subset == "held_out_combos":
        a, relation, b = rng.choice(sorted(HELD_OUT_RELATIONS))
    elif rng.random() < 0.25:
        return Query((ObjectQuery(rng.choice(vocab.SHAPES), region=rng.choice(vocab.REGIONS)),))
    else:
        while True:
            (a, b), relation = rng.sample(vocab.SHAPES, 2), rng.choice(vocab.RELATIONS)
            if (a, relation, b) not in HELD_OUT_RELATIONS:
                break
    return Query((ObjectQuery(a), ObjectQuery(b)), relations=(RelationQuery(0, relation, 1),))


def _colour_attribution(rng, subset):
    while True:
        first = _pair(rng, subset == "held_out_pairs")
        second = _pair(rng, False)
        if first[0] != second[0] and first[1] != second[1]:
            break
    return Query((ObjectQuery(first[1], colour=first[0]), ObjectQuery(second[1], colour=second[0])))


def _size(rng, subset):
    if rng.random() < 0.5:
        return Query((ObjectQuery(rng.choice(vocab.SHAPES), size=rng.choice(vocab.SIZE_NAMES)),))
    (a, b), (size_a, size_b) = rng.sample(vocab.SHAPES, 2), rng.sample(vocab.SIZE_NAMES, 2)
    return Query((ObjectQuery(a, size=size_a), ObjectQuery(b, size=size_b)))


_TEXTURABLE = tuple(s for s in vocab.SHAPES if len(vocab.textures_for(s)) > 1)


def _texture(rng, subset):
    if rng.random() < 0.5:
        shape = rng.choice(_TEXTURABLE)
        return Query((ObjectQuery(shape, texture=rng.choice(vocab.textures_for(shape))),))
    a, b = rng.sample(_TEXTURABLE, 2)
    while (ta := rng.choice(vocab.textures_for(a))) == (tb := rng.choice(vocab.textures_for(b))):
        pass
    return Query((ObjectQuery(a, texture=ta), ObjectQuery(b, texture=tb)))


def _background(rng, subset):
    kind = rng.choice(vocab.BACKGROUNDS)
    colours = tuple(rng.sample(vocab.COLOUR_NAMES, 1 if kind == "solid" else 2))
    direction = rng.choice(vocab.GRADIENT_DIRECTIONS) if kind == "gradient" and rng.random() < 0.3 else None
    return Query((ObjectQuery(rng.choice(vocab.SHAPES)),),
                 background=BackgroundQuery(kind, colours, direction))


_GENERATORS: dict[str, Callable[[random.Random, str], Query]] = {
    "single_object": _single_object, "two_objects": _two_objects, "counting": _counting,
    "colours": _colours, "position": _position, "colour_attribution": _colour_attribution,
    "size": _size, "texture": _texture, "background": _background,
}


def build(seed: int = SEED) -> list[EvalPrompt]:
    """Generate the evaluation set (deterministic for a seed)."""
    rng = random.Random(seed)
    reserved = held_out_words()
    prompts: list[EvalPrompt] = []
    for category in CATEGORIES:
        plan = dict(COMPOSITION[category])
        plan["seen"] = PROMPTS_PER_CATEGORY - sum(plan.values())
        texts: set[str] = set()
        for subset in SUBSETS:
            made = 0
            while made < plan.get(subset, 0):
                query_subset = "seen" if subset == "held_out_phrasings" else subset
                query = _GENERATORS[category](rng, query_subset)
                text = say(query, rng, held_out=subset == "held_out_phrasings")
                if text in texts:
                    continue
                if (subset == "held_out_phrasings") != bool(set(words(text)) & reserved):
                    continue
                try:
                    realize(query, random.Random(0))
                except ValueError:
                    continue
                texts.add(text)
                prompts.append(EvalPrompt(id=f"{len(prompts):04d}", category=category, subset=subset,
                                          text=text, query=query))
                made += 1
    return prompts


def write(path: Path = DATA_FILE, seed: int = SEED) -> Path:
    return write_jsonl(path, build(seed))


@lru_cache(maxsize=1)
def load(path: Path = DATA_FILE) -> tuple[EvalPrompt, ...]:
    """The committed evaluation set."""
    return read_jsonl(path, EvalPrompt.from_dict)


def subset_sizes(prompts: tuple[EvalPrompt, ...] | list[EvalPrompt]) -> dict[str, int]:
    return {subset: sum(p.subset == subset for p in prompts) for subset in SUBSETS}
