"""The training stream: an endless, shardable sequence of captioned scenes.

Sample i of a stream depends only on (seed, i), so any worker or rank can produce any slice
of it and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from atelier.world import vocab
from atelier.world.images.caption import describe, say
from atelier.world.images.query import Query
from atelier.world.images.render import object_boxes, object_masks, render
from atelier.world.images.scene import Scene, check_size, sample_scene
from atelier.world.splits import check_split

INDEX_BITS = 40  # a stream holds 2^40 (about 10^12) samples


def scene_rng(seed: int, index: int) -> random.Random:
    if seed < 0 or not 0 <= index < 1 << INDEX_BITS:
        raise ValueError(f"seed must be non-negative and index in [0, 2^{INDEX_BITS}), got {seed}, {index}")
    return random.Random((seed << INDEX_BITS) | index)


@dataclass(frozen=True)
class Sample:
    index: int
    image: np.ndarray  # [size, size, 3] uint8
    caption: str
    query: Query  # what the caption asserts, true of the scene
    scene: Scene  # the full structured truth

    @cached_property
    def masks(self) -> np.ndarray:
        """Per-object pixel masks, [n, size, size] bool; computed on first use."""
        return object_masks(self.scene)

    @cached_property
    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Per-object bounding boxes (x0, y0, x1, y1), end-exclusive, of the masks."""
        return object_boxes(self.scene, self.masks)


def make_sample(seed: int, index: int, size: int = 64, split: str = "train",
                max_objects: int = vocab.MAX_OBJECTS) -> Sample:
    rng = scene_rng(seed, index)
    scene = sample_scene(rng, size=size, split=split, max_objects=max_objects)
    query = describe(scene, rng)
    return Sample(index=index, image=render(scene), caption=say(query, rng), query=query, scene=scene)


class WorldStream:
    """Iterates samples start, start + step, ... (endless unless `limit` is given).

    `shard(rank, world_size)` gives one rank's disjoint share of the same stream.
    """

    def __init__(self, seed: int = 0, size: int = 64, split: str = "train", start: int = 0,
                 step: int = 1, limit: int | None = None):
        self.seed = seed
        self.size = check_size(size)
        self.split = check_split(split)
        self.start, self.step, self.limit = start, step, limit

    def shard(self, rank: int, world_size: int) -> WorldStream:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        limit = None if self.limit is None else len(range(rank, self.limit, world_size))
        return WorldStream(self.seed, self.size, self.split, self.start + rank * self.step,
                           self.step * world_size, limit)

    def __iter__(self) -> Iterator[Sample]:
        index, produced = self.start, 0
        while self.limit is None or produced < self.limit:
            yield make_sample(self.seed, index, self.size, self.split)
            index += self.step
            produced += 1
