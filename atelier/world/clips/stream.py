"""The clip stream: captioned clips, each a function of (seed, index) alone, so any worker
or rank can produce any slice of it and a resumed run continues exactly where it stopped."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from atelier.world.clips.caption import describe_clip, say_clip
from atelier.world.clips.motion import DEFAULT_FRAMES, Clip, clip_masks, frame_scenes, render_clip
from atelier.world.clips.query import ClipQuery
from atelier.world.clips.staging import sample_clip
from atelier.world.images.scene import Scene
from atelier.world.images.stream import INDEX_BITS


def clip_rng(seed: int, index: int) -> random.Random:
    """The generator of clip `index` of a stream: its own, never the image stream's of the same
    (seed, index), so clips and images drawn side by side are not alike."""
    if seed < 0 or not 0 <= index < 1 << INDEX_BITS:
        raise ValueError(f"seed must be non-negative and index in [0, 2^{INDEX_BITS}), got {seed}, {index}")
    return random.Random(f"atelier clip {seed} {index}")


@dataclass(frozen=True)
class ClipSample:
    index: int
    frames: np.ndarray  # [F, size, size, 3] uint8
    caption: str
    query: ClipQuery  # what the caption asserts, true of the clip
    clip: Clip  # the full structured truth

    @cached_property
    def scenes(self) -> list[Scene]:
        """The exact scene of every frame; computed on first use."""
        return frame_scenes(self.clip)

    @cached_property
    def masks(self) -> list[np.ndarray]:
        """Per-frame object masks, one [n_t, size, size] bool array per frame (ordered as that
        frame's scene objects); computed on first use."""
        return clip_masks(self.clip)


def make_clip_sample(seed: int, index: int, size: int = 64, frames: int = DEFAULT_FRAMES,
                     split: str = "train") -> ClipSample:
    """Clip `index` of the stream `seed`: the same (seed, index, size, frames, split) gives the
    same bytes and caption everywhere."""
    rng = clip_rng(seed, index)
    clip = sample_clip(rng, size=size, frames=frames, split=split)
    query = describe_clip(clip, rng)
    return ClipSample(index=index, frames=render_clip(clip), caption=say_clip(query, rng), query=query, clip=clip)
