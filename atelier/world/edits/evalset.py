"""The fixed public evaluation set of edits: CASES_PER_KIND cases of each edit kind.

A case is an edit pair named by (seed, index, kind), which determines its source scene, mask
and instruction exactly at any image size; the file also keeps the instruction, caption,
region query and both scenes so that a reader can see what each case asks without running
code. Drawn from the training split: the suite measures editing, not generalisation to
held-out facts (the image suite does that). Committed as data/eval_edits.jsonl; a test
checks the file and build() agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from atelier.world.edits.pairs import KINDS, EditPair, RegionQuery, make_edit_pair
from atelier.world.jsonl import read_jsonl, write_jsonl

CATEGORIES: tuple[str, ...] = KINDS
CASES_PER_KIND = 24
SEED = 2026
SPLIT = "train"
DATA_FILE = Path(__file__).parents[1] / "data" / "eval_edits.jsonl"


@dataclass(frozen=True)
class EditCase:
    id: str
    category: str  # the edit kind
    seed: int
    index: int
    instruction: str
    caption: str
    region_query: RegionQuery
    source: dict  # Scene.to_dict() of the source at 64 pixels, for reading
    target: dict

    def pair(self, size: int = 64) -> EditPair:
        """The case's edit pair drawn at `size` pixels (the same edit at every size)."""
        pair = make_edit_pair(self.seed, self.index, size=size, split=SPLIT, kind=self.category)
        if pair.instruction != self.instruction:
            raise ValueError(f"edit case {self.id} no longer matches the world ({pair.instruction!r} != "
                             f"{self.instruction!r}); rebuild the set with atelier.world.edits.evalset.write()")
        return pair

    def to_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "seed": self.seed, "index": self.index,
                "instruction": self.instruction, "caption": self.caption,
                "region_query": self.region_query.to_dict(), "source": self.source, "target": self.target}

    @classmethod
    def from_dict(cls, data: dict) -> EditCase:
        return cls(id=data["id"], category=data["category"], seed=data["seed"], index=data["index"],
                   instruction=data["instruction"], caption=data["caption"],
                   region_query=RegionQuery.from_dict(data["region_query"]), source=data["source"],
                   target=data["target"])


def build(seed: int = SEED) -> list[EditCase]:
    """Generate the evaluation set (deterministic for a seed): pair indices k * 1000 + j of
    the stream `seed` for kind k, skipping a pair whose instruction an earlier case used."""
    cases: list[EditCase] = []
    for k, kind in enumerate(KINDS):
        instructions: set[str] = set()
        j = 0
        while len(instructions) < CASES_PER_KIND:
            pair = make_edit_pair(seed, k * 1000 + j, split=SPLIT, kind=kind)
            j += 1
            if pair.instruction.lower() in instructions:
                continue
            instructions.add(pair.instruction.lower())
            cases.append(EditCase(
                id=f"{len(cases):04d}", category=kind, seed=seed, index=pair.index, instruction=pair.instruction,
                caption=pair.caption, region_query=pair.region_query, source=pair.source.to_dict(),
                target=pair.target.to_dict(),
            ))
    return cases


def write(path: Path = DATA_FILE, seed: int = SEED) -> Path:
    return write_jsonl(path, build(seed))


@lru_cache(maxsize=1)
def load(path: Path = DATA_FILE) -> tuple[EditCase, ...]:
    """The committed evaluation set."""
    return read_jsonl(path, EditCase.from_dict)
