"""Training data: captioned images addressed by a global index.

Example i of a source depends only on i (and the run's seed), so any rank can produce any slice
of a global batch and a resumed run continues where it stopped with nothing but the step count.
Sources: the procedural world (with exact object masks for edit regions), a folder of images
with same-named .txt captions (the layout kohya's and diffusers' fine-tuning scripts use, and
what `atelier feedback export` writes), or WebDataset tar shards (atelier.train.shards).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from atelier.world.images.stream import make_sample
from atelier.world.vocab import MAX_OBJECTS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    image: np.ndarray                        # [size, size, 3] uint8, or [F, size, size, 3] for a clip or views
    caption: str
    object_masks: np.ndarray | None = None   # [n, size, size] bool, when the source knows an image's objects
    key: str | None = None                   # a stable name for a finite source's example (latent cache)
    cameras: np.ndarray | None = None        # [F, camera_dim] float32 camera vectors of views


class WorldSource:
    """The world's training split, rendered on demand: images, clips in motion and views of 3D objects.

    With a curriculum of `ramp` samples, image scenes start with a single object (so captions
    name one shape, colour, size, texture and place) and the most objects a scene may hold rises
    evenly to the world's full range by sample `ramp` (curriculum learning, Bengio et al. 2009)."""

    def __init__(self, seed: int, size: int, frames: int = 8, views: int = 4, ramp: int = 0):
        self.seed, self.size, self.frames, self.views, self.ramp = seed, size, frames, views, ramp

    def max_objects(self, index: int) -> int:
        if index >= self.ramp:
            return MAX_OBJECTS
        return 1 + (MAX_OBJECTS - 1) * index // self.ramp

    def __getitem__(self, index: int) -> Example:
        sample = make_sample(self.seed, index, self.size, "train", self.max_objects(index))
        return Example(sample.image, sample.caption, sample.masks)

    def example(self, index: int, modality: str) -> Example:
        if modality == "image":
            return self[index]
        if modality == "clip":
            from atelier.world.clips.stream import make_clip_sample

            clip = make_clip_sample(self.seed, index, self.size, self.frames, "train")
            return Example(clip.frames, clip.caption)
        from atelier.world.objects.scene import make_object_sample

        views = make_object_sample(self.seed, index, self.size, self.views, "train")
        return Example(views.views, views.caption, cameras=views.camera_vectors.astype(np.float32))

    def describe(self) -> str:
        ramp = f", one object first, all by sample {self.ramp:,}" if self.ramp else ""
        return f"the procedural world (seed {self.seed}, {self.size} px, train split{ramp})"


class FiniteSource:
    """A finite list of captioned images in a seeded order reshuffled every epoch, centre-cropped to a
    square and resized. An unreadable image is logged with its name and replaced by the next one, so
    one bad file in a large set does not stop a run; subclasses say how to list and read items."""

    root: Path
    size: int
    seed: int

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, position: int) -> Example:
        """Item `position` of the listing; raises OSError, UnidentifiedImageError or ValueError when unreadable."""
        raise NotImplementedError

    def name(self, position: int) -> str:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Example:
        for attempt in range(len(self)):
            position = self._position(index + attempt)
            try:
                return self.read(position)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
                log.warning("skipping unreadable training image %s: %s", self.name(position), error)
        raise ValueError(f"--data {self.root}: no readable image among {len(self)}")

    def _position(self, index: int) -> int:
        epoch, offset = divmod(index, len(self))
        return int(np.random.default_rng([self.seed, epoch]).permutation(len(self))[offset])


class FolderSource(FiniteSource):
    """Images with same-named .txt captions (kohya's layout), found in any subfolder."""

    def __init__(self, root: str | Path, size: int, seed: int):
        self.root, self.size, self.seed = Path(root), size, seed
        if not self.root.is_dir():
            raise ValueError(f"--data {root}: not a folder (give 'world', a folder of images with .txt captions, "
                             f"or WebDataset .tar shards)")
        images = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        self.pairs = [(p, p.with_suffix(".txt")) for p in images if p.with_suffix(".txt").is_file()]
        self.uncaptioned = len(images) - len(self.pairs)
        if not self.pairs:
            raise ValueError(f"--data {root}: found {len(images)} images but none with a same-named .txt caption")

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, position: int) -> Example:
        image_path, caption_path = self.pairs[position]
        return Example(load_square(image_path, self.size), caption_path.read_text().strip(),
                       key=str(image_path.relative_to(self.root)))

    def name(self, position: int) -> str:
        return str(self.pairs[position][0])

    def describe(self) -> str:
        skipped = f", {self.uncaptioned} images without captions ignored" if self.uncaptioned else ""
        return f"{len(self.pairs)} captioned images in {self.root}{skipped}"


def load_square(path: str | Path | IO[bytes], size: int) -> np.ndarray:
    """Any image file (a path or an open binary file) as [size, size, 3] uint8: EXIF orientation
    applied, transparency composited on white, the centre square cropped and resized with Lanczos."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    image = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def open_source(data: str, size: int, seed: int, frames: int = 8, views: int = 4,
                ramp: int = 0) -> WorldSource | FiniteSource:
    """--data: "world"; a folder of images with .txt captions; or WebDataset shards, given as a .tar
    file, a brace pattern ("shards/train-{000..015}.tar"), a glob, or a folder holding only .tar files."""
    from atelier.train.shards import TarSource, is_shard_spec

    if data == "world":
        return WorldSource(seed, size, frames, views, ramp)
    if is_shard_spec(data):
        return TarSource(data, size, seed)
    return FolderSource(data, size, seed)


class StepExamples:
    """One rank's examples of each step, as a map-style dataset over step numbers, so a
    torch DataLoader can render or read them in worker processes ahead of the training loop.
    A step trains one modality, drawn from `modalities` by (seed, step) alone."""

    def __init__(self, source: WorldSource | FiniteSource, batch: int, rank: int, world_size: int,
                 modalities: dict[str, float] | None = None, seed: int = 0):
        from atelier.train.batches import rank_indices

        self.source, self.rank_indices = source, rank_indices
        self.batch, self.rank, self.world_size = batch, rank, world_size
        self.modalities, self.seed = modalities or {"image": 1.0}, seed

    def modality(self, step: int) -> str:
        from atelier.train.batches import STEP, choose, sample_seed

        if len([w for w in self.modalities.values() if w > 0]) == 1:
            return next(m for m, w in self.modalities.items() if w > 0)
        return choose(np.random.default_rng(sample_seed(self.seed, step, STEP)), self.modalities)

    def __getitem__(self, step: int) -> tuple[list[int], list[Example]]:
        indices = self.rank_indices(step, self.batch, self.rank, self.world_size)
        modality = self.modality(step)
        if modality == "image":
            return indices, [self.source[i] for i in indices]
        return indices, [self.source.example(i, modality) for i in indices]


def step_loader(examples: StepExamples, first_step: int, workers: int):
    """Steps first_step, first_step + 1, ... in order; with workers > 0 they are prepared in
    parallel processes, a few steps ahead."""
    import itertools

    from torch.utils.data import DataLoader

    if workers == 0:
        return (examples[step] for step in itertools.count(first_step))
    return iter(DataLoader(examples, batch_size=None, sampler=itertools.count(first_step), num_workers=workers,
                           prefetch_factor=4, persistent_workers=False, collate_fn=lambda item: item))
