"""A world of K named entities: invented names, each with one procedural glyph icon.

It measures memorisation capacity, the claim memory layers make (Lample et al. 2019; Berges et al.
2024, "Memory Layers at Scale"): a caption "an icon of a zorblat" has exactly one right picture,
so how many of the K pictures a model reproduces counts the facts it stored. Names and icons carry no
shared structure to generalise from; nothing but memory helps.

Entity i depends only on (seed, i): the K = 256 world is the first 256 entities of the K = 1,024 one.
Icons are drawn at 4x and area-averaged to `size` px (anti-aliased, as a tokenizer sees real images),
and a candidate icon closer than MIN_SEPARATION to an earlier one is redrawn, so every pair of
templates is at least that far apart and `match` can tell them apart with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from atelier.world import vocab

SIZE = 32
SUPERSAMPLE = 4
# Root-mean-square distance over all pixels and channels, in [0, 1] pixel units. Two icons this far
# apart differ, for example, by 10% of their pixels going from a pale background to saturated ink.
MIN_SEPARATION = 0.2
CAPTION = "an icon of a {name}"

ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
          "br", "dr", "fl", "gl", "gr", "kr", "pl", "sk", "sn", "st", "tr", "vr", "zh", "th")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ee", "oo")
CODAS = ("", "", "", "b", "k", "l", "m", "n", "r", "s", "t", "x", "ng", "rb", "lt")
# Backgrounds: white and pale tints of the world's colours (each mixed 75% with white); ink: the
# saturated colours. Pale against saturated keeps every stroke visible whichever pair is drawn.
INKS: tuple[tuple[int, int, int], ...] = tuple(
    rgb for name, rgb in vocab.COLOURS.items() if name not in ("white", "gray", "pink", "yellow"))
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((255, 255, 255),) + tuple(
    tuple(round(255 - 0.25 * (255 - c)) for c in vocab.COLOURS[name])
    for name in ("yellow", "blue", "pink", "green", "orange", "gray"))


@dataclass(frozen=True)
class Glyph:
    name: str
    image: np.ndarray  # [size, size, 3] uint8

    @property
    def caption(self) -> str:
        return CAPTION.format(name=self.name)


def make_glyphs(count: int, seed: int = 0, size: int = SIZE) -> list[Glyph]:
    """`count` entities with unique names and icons at least MIN_SEPARATION apart, deterministic in
    (seed, index): a smaller world is a prefix of a larger one with the same seed."""
    if count < 1:
        raise ValueError(f"a glyph world needs at least one entity, got {count}")
    names = invented_names(count, seed)
    rng = np.random.default_rng([seed, 1])
    images: list[np.ndarray] = []
    flat = np.empty((count, size * size * 3), dtype=np.float32)
    for index in range(count):
        for _ in range(1000):
            image = draw_icon(rng, size)
            candidate = image.reshape(-1).astype(np.float32) / 255
            if index == 0 or rms_to(candidate, flat[:index]).min() >= MIN_SEPARATION:
                break
        else:
            raise RuntimeError(f"no icon {MIN_SEPARATION} away from the other {index} after 1000 draws")
        images.append(image)
        flat[index] = candidate
    return [Glyph(name, image) for name, image in zip(names, images)]


def invented_names(count: int, seed: int = 0) -> list[str]:
    """Unique lower-case pronounceable words of two or three consonant-vowel(-consonant) syllables."""
    rng = np.random.default_rng([seed, 0])
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        syllables = 2 + int(rng.random() < 0.4)
        name = "".join(ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] +
                       CODAS[rng.integers(len(CODAS))] for _ in range(syllables))
        if name not in seen and len(name) <= 10:
            seen.add(name)
            names.append(name)
    return names


def draw_icon(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Three to five strokes, arcs, polygons or discs in one or two ink colours on a plain background."""
    scale = size * SUPERSAMPLE
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    inks = [INKS[i] for i in rng.choice(len(INKS), size=1 + int(rng.random() < 0.5), replace=False)]
    canvas = Image.new("RGB", (scale, scale), background)
    draw = ImageDraw.Draw(canvas)
    margin, span = 0.12 * scale, 0.76 * scale

    def point() -> tuple[float, float]:
        return tuple(margin + span * rng.random(2))

    for _ in range(rng.integers(3, 6)):
        ink = inks[rng.integers(len(inks))]
        width = int(scale * rng.uniform(0.07, 0.13))
        kind = rng.integers(4)
        if kind == 0:    # a stroke through two or three points
            draw.line([point() for _ in range(rng.integers(2, 4))], fill=ink, width=width, joint="curve")
        elif kind == 1:  # an arc of a circle
            cx, cy = point()
            radius = scale * rng.uniform(0.15, 0.35)
            start = rng.uniform(0, 360)
            draw.arc([cx - radius, cy - radius, cx + radius, cy + radius], start, start + rng.uniform(90, 300),
                     fill=ink, width=width)
        elif kind == 2:  # a filled polygon
            cx, cy = point()
            radius = scale * rng.uniform(0.12, 0.25)
            angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 6)))
            draw.polygon([(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles], fill=ink)
        else:            # a disc
            cx, cy = point()
            radius = scale * rng.uniform(0.06, 0.14)
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=ink)
    return np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def rms_to(image: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """RMS distance of one flattened image in [0, 1] to each row of `templates` [K, N]: [K]."""
    return np.sqrt(np.mean((templates - image) ** 2, axis=1))


def as_unit(images: np.ndarray) -> np.ndarray:
    """uint8 images [K, H, W, 3] -> float32 [K, H * W * 3] in [0, 1]."""
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255


def pairwise_rms(images: np.ndarray) -> np.ndarray:
    """RMS distances between all pairs of uint8 images [K, H, W, 3]: [K, K], zero on the diagonal."""
    flat = as_unit(images).astype(np.float64)
    squared = (flat ** 2).sum(1)
    gram = squared[:, None] + squared[None, :] - 2 * flat @ flat.T
    distances = np.sqrt(np.clip(gram, 0, None) / flat.shape[1])
    np.fill_diagonal(distances, 0.0)
    return distances


def match(images: np.ndarray, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For uint8 images [N, H, W, 3], the index of each one's nearest template [K, H, W, 3] by mean
    squared pixel distance, and the RMS distance to it: ([N] int, [N] float)."""
    queries, targets = as_unit(images).astype(np.float64), as_unit(templates).astype(np.float64)
    squared = ((queries ** 2).sum(1)[:, None] + (targets ** 2).sum(1)[None, :] - 2 * queries @ targets.T)
    nearest = squared.argmin(1)
    distance = np.sqrt(np.clip(squared[np.arange(len(queries)), nearest], 0, None) / queries.shape[1])
    return nearest, distance


def reproduced(images: np.ndarray, templates: np.ndarray, threshold: float = MIN_SEPARATION / 2) -> np.ndarray:
    """Whether image i reproduces entity i: its nearest template is template i and it lies within
    `threshold` (RMS) of it. The default, half the guaranteed separation, is the largest radius whose
    balls around the templates are disjoint: by the triangle inequality an image that close to one
    template is farther from every other, so a pass is never a lucky near-tie. [N] bool."""
    nearest, distance = match(images, templates)
    return (nearest == np.arange(len(images))) & (distance < threshold)


def write_glyph_folder(path: str | Path, count: int, seed: int = 0, size: int = SIZE) -> list[Glyph]:
    """NAME.png with NAME.txt holding its caption, for every entity: the layout
    atelier.train.data.FolderSource reads."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    glyphs = make_glyphs(count, seed, size)
    for glyph in glyphs:
        Image.fromarray(glyph.image).save(folder / f"{glyph.name}.png")
        (folder / f"{glyph.name}.txt").write_text(glyph.caption + "\n")
    return glyphs
