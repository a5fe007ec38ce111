"""The fixed public evaluation set of 3D object prompts, each with the cameras its views are
asked from, balanced over five categories:

- shape: the prompt names only a shape ("a cone");
- colour: only a colour ("a red object");
- colour_shape: a colour-shape pair the training stream draws;
- size: a shape and a size class;
- held_out_pairs: a colour-shape pair the training stream never draws (HELD_OUT_PAIRS_3D).

Generated from a fixed seed and committed as data/eval_objects.jsonl; a test checks the two
agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from atelier.world import vocab
from atelier.world.jsonl import read_jsonl, write_jsonl
from atelier.world.objects.camera import Camera
from atelier.world.objects.caption import say_object
from atelier.world.objects.primitives import SHAPES_3D
from atelier.world.objects.query import Object3DQuery
from atelier.world.objects.scene import HELD_OUT_PAIRS_3D, default_cameras

CATEGORIES_3D: tuple[str, ...] = ("shape", "colour", "colour_shape", "size", "held_out_pairs")
SUBSETS_3D: tuple[str, ...] = ("seen", "held_out_pairs")
VIEWS = 4
SEED = 2027
DATA_FILE = Path(__file__).parents[1] / "data" / "eval_objects.jsonl"


@dataclass(frozen=True)
class ObjectCase:
    id: str
    category: str
    subset: str
    text: str
    query: Object3DQuery
    cameras: tuple[Camera, ...]

    def to_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "subset": self.subset, "text": self.text,
                "query": self.query.to_dict(), "cameras": [c.to_list() for c in self.cameras]}

    @classmethod
    def from_dict(cls, data: dict) -> ObjectCase:
        return cls(id=data["id"], category=data["category"], subset=data["subset"], text=data["text"],
                   query=Object3DQuery.from_dict(data["query"]),
                   cameras=tuple(Camera.from_list(c) for c in data["cameras"]))


def _queries(rng: random.Random) -> list[tuple[str, str, Object3DQuery]]:
    """(category, subset, query) of every case, in order."""
    seen_pairs = [(c, s) for c in vocab.COLOUR_NAMES for s in SHAPES_3D if (c, s) not in HELD_OUT_PAIRS_3D]
    out = [("shape", "seen", Object3DQuery(shape=s)) for s in SHAPES_3D * 3]
    out += [("colour", "seen", Object3DQuery(colour=c)) for c in vocab.COLOUR_NAMES * 2]
    out += [("colour_shape", "seen", Object3DQuery(shape=s, colour=c)) for c, s in rng.sample(seen_pairs, 24)]
    out += [("size", "seen", Object3DQuery(shape=s, size=z)) for s in SHAPES_3D for z in vocab.SIZE_NAMES]
    out += [("held_out_pairs", "held_out_pairs", Object3DQuery(shape=s, colour=c))
            for c, s in sorted(HELD_OUT_PAIRS_3D) * 2]
    return out


def build(seed: int = SEED) -> list[ObjectCase]:
    """Generate the evaluation set (deterministic for a seed): 112 prompts, four views each
    on an orbit at 15 to 30 degrees of elevation."""
    rng = random.Random(seed)
    cases = []
    for category, subset, query in _queries(rng):
        cameras = tuple(Camera.from_list(c.to_list()) for c in default_cameras(rng, VIEWS))  # as stored
        cases.append(ObjectCase(id=f"{len(cases):04d}", category=category, subset=subset,
                                text=say_object(query, rng), query=query, cameras=cameras))
    return cases


def write(path: Path = DATA_FILE, seed: int = SEED) -> Path:
    return write_jsonl(path, build(seed))


@lru_cache(maxsize=1)
def load(path: Path = DATA_FILE) -> tuple[ObjectCase, ...]:
    """The committed evaluation set."""
    return read_jsonl(path, ObjectCase.from_dict)
