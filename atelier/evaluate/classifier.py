"""A small CNN that knows the procedural world, whose pooled features the fidelity metric
compares (atelier.evaluate.fidelity), as FID compares Inception-v3's pool3 features
(Heusel et al. 2017).

Inception was trained on ImageNet and knows nothing of flat shapes on patterned backgrounds;
a network trained on the world itself does. Its heads name what a scene holds (shapes,
colours, sizes, textures, occupied regions, background kind and colours, object count), and
during training every cell of its last feature map names the object covering it, so its
penultimate layer (average and max pooling of the last convolution) has to encode exactly the
facts a generator must get right, plus how cleanly they are drawn.

`train_classifier` is the one way to make it: fresh renders of the training stream, AdamW on a
wall-clock budget, accuracy measured on held-out draws, saved as a model folder
(atelier.folder) with those figures and the training record in config.json.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atelier.folder import FolderError, check_state_dict, load_tensors, read_config, save_folder
from atelier.hardware import hardware
from atelier.train.wallclock import clock_rate, round_to_fp16
from atelier.weights import shipped
from atelier.world import vocab
from atelier.world.scene import Scene, sample_scene
from atelier.world.stream import scene_rng

KIND = "classifier"
DEFAULT_CLASSIFIER = shipped("classifier")
MIN_SIDE, MAX_SIDE = 32, 256  # inputs outside are refused; inside, resized to the config's image_size
POOLINGS = ("avg", "max", "avgmax")
# Training augmentation (see `augment`): the share of images degraded, and the ranges drawn from.
AUGMENT_SHARE = 0.5
AUGMENT_BLUR = (0.2, 1.0)  # Gaussian sigma in pixels at 64 px
AUGMENT_NOISE = (1 / 255, 10 / 255)  # Gaussian standard deviation, of the 0..1 range
AUGMENT_JPEG = (60, 96)  # quality, 4:4:4


@dataclass(frozen=True)
class Head:
    """One question the classifier answers: several labels at once (`multi`, a sigmoid each)
    or one of its labels (softmax)."""

    name: str
    labels: tuple[str, ...]
    multi: bool


HEADS: tuple[Head, ...] = (
    Head("shapes", vocab.SHAPES, True),
    Head("colours", vocab.COLOUR_NAMES, True),
    Head("sizes", vocab.SIZE_NAMES, True),
    Head("textures", vocab.TEXTURES, True),
    Head("regions", vocab.REGIONS, True),
    Head("background", vocab.BACKGROUNDS, False),
    Head("background_colours", vocab.COLOUR_NAMES, True),
    Head("count", tuple(str(c) for c in vocab.COUNTS), False),
)
# Asked of every cell of the last feature map during training, with one more label for "no
# object": dense supervision in the manner of CenterNet (Zhou et al. 2019), which teaches the
# convolutions what and where each object is far sooner than image-level labels alone.
CELL_HEADS: tuple[Head, ...] = (
    Head("shapes", vocab.SHAPES, False),
    Head("colours", vocab.COLOUR_NAMES, False),
    Head("sizes", vocab.SIZE_NAMES, False),
    Head("textures", vocab.TEXTURES, False),
)
CELL_FACTS = {"shapes": "shape", "colours": "colour", "sizes": "size", "textures": "texture"}  # SceneObject fields
CELL_COVERAGE = 0.25  # a cell belongs to the object covering at least this share of it
# Most cells hold no object; at full weight "none everywhere" is a minimum the network takes
# hundreds of steps to leave (measured: object cells' colour accuracy 0.04 after 60 steps at
# weight 1, 0.81 at weight 0.1), the imbalance focal loss answers in CenterNet.
CELL_NONE_WEIGHT = 0.1


@dataclass(frozen=True)
class ClassifierConfig:
    """A plain CNN: a stem (a 3x3 convolution, or with `patch` > 1 a patch x patch one of that
    stride), `depth` 3x3 convolutions, then per further width a stride-2 one and `depth` more
    (each with BatchNorm and ReLU), then global pooling: the feature."""

    image_size: int = 64  # every input is resized to this side
    widths: tuple[int, ...] = (32, 64, 128)  # channels per resolution
    patch: int = 2  # stem stride: 1 keeps full resolution, 2 or 4 cut the cost of the first layers 4 or 16 times
    depth: int = 1  # stride-1 convolutions per resolution
    pooling: str = "avgmax"  # "avg", "max" or "avgmax" (both, concatenated) over the last feature map
    cells: bool = True  # training also asks each cell of the last map what object covers it (CELL_HEADS)

    def __post_init__(self) -> None:
        if not isinstance(self.widths, list | tuple) or not self.widths:
            raise ValueError(f"widths must be a non-empty list of channel counts, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(self.widths))
        if not all(isinstance(w, int) and w > 0 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {self.widths!r}")
        for name in ("patch", "depth"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < (1 if name == "patch" else 0):
                raise ValueError(f"{name} must be a {'positive' if name == 'patch' else 'non-negative'} integer, "
                                 f"got {getattr(self, name)!r}")
        if not isinstance(self.image_size, int) or not MIN_SIDE <= self.image_size <= MAX_SIDE:
            raise ValueError(f"image_size must be an integer from {MIN_SIDE} to {MAX_SIDE}, got {self.image_size!r}")
        if self.image_size % (self.patch * 2 ** (len(self.widths) - 1)):
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch x 2^(len(widths) - 1) = "
                             f"{self.patch * 2 ** (len(self.widths) - 1)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if not isinstance(self.cells, bool):
            raise ValueError(f"cells must be true or false, got {self.cells!r}")

    @property
    def feature_dim(self) -> int:
        return self.widths[-1] * (2 if self.pooling == "avgmax" else 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown classifier config fields {unknown}; expected {sorted(known)}")
        return cls(**data)


def _conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Classifier(nn.Module):
    """Images [B, 3, S, S] in [-1, 1] (S = config.image_size) -> (features [B, D], logits [B, L]);
    `prepare` turns uint8/float/PIL images of 32..256 px into that tensor."""

    def __init__(self, config: ClassifierConfig | None = None, heads: tuple[Head, ...] = HEADS):
        super().__init__()
        config = config or ClassifierConfig()
        self.config, self.heads = config, heads
        self.source: str | None = None  # the folder it was loaded from
        widths = config.widths
        if config.patch == 1:
            layers = _conv(3, widths[0], 1)
        else:
            layers = [nn.Conv2d(3, widths[0], config.patch, config.patch, bias=False), nn.BatchNorm2d(widths[0]),
                      nn.ReLU(inplace=True)]
        for _ in range(config.depth):
            layers += _conv(widths[0], widths[0], 1)
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += _conv(cin, cout, 2)
            for _ in range(config.depth):
                layers += _conv(cout, cout, 1)
        self.body = nn.Sequential(*layers)
        self.logits = nn.Linear(config.feature_dim, sum(len(h.labels) for h in heads))
        if config.cells:
            self.cell_logits = nn.Conv2d(widths[-1], sum(len(h.labels) + 1 for h in CELL_HEADS), 1)

    @property
    def grid(self) -> int:
        """Side of the last feature map, in cells."""
        return self.config.image_size // self.config.patch // 2 ** (len(self.config.widths) - 1)

    def forward(self, images: torch.Tensor, cells: bool = False):
        """(features [B, D], logits [B, L]), and with `cells` the per-cell logits [B, L', g, g] too."""
        x = self.body(images)  # [B, C, g, g]
        pooled = {"avg": [x.mean(dim=(2, 3))], "max": [x.amax(dim=(2, 3))],
                  "avgmax": [x.mean(dim=(2, 3)), x.amax(dim=(2, 3))]}[self.config.pooling]
        features = torch.cat(pooled, dim=1)  # [B, D]
        if cells:
            return features, self.logits(features), self.cell_logits(x)  # [B, D], [B, L], [B, L', g, g]
        return features, self.logits(features)  # [B, D], [B, L]

    def prepare(self, images: Sequence) -> torch.Tensor:
        """A list of images (uint8 or float-in-0..1 arrays [H, W, 3], grey or opaque RGBA, or PIL
        images; square, 32..256 px) -> [B, 3, S, S] in [-1, 1]. Other sides are resized with an
        antialiased bilinear filter, so a 128 px sample is read as its 64 px version."""
        import torch.nn.functional as F

        from atelier.evaluate.detect import to_float

        size = self.config.image_size
        batch = []
        for number, image in enumerate(images):
            try:
                pixels = to_float(image)
            except ValueError as error:
                raise ValueError(f"image {number}: {error}") from None
            if pixels.shape[0] > MAX_SIDE:
                raise ValueError(f"image {number}: the classifier reads images of {MIN_SIDE} to {MAX_SIDE} pixels, "
                                 f"got {pixels.shape[1]}x{pixels.shape[0]}")
            x = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None]  # [1, 3, H, W]
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            batch.append(x)
        if not batch:
            raise ValueError("no images given")
        return torch.cat(batch).clamp(0, 1) * 2 - 1  # [B, 3, S, S]

    def split_logits(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, L] -> one [B, len(head.labels)] block per head."""
        sizes = [len(h.labels) for h in self.heads]
        return {h.name: block for h, block in zip(self.heads, logits.split(sizes, dim=1))}

    @property
    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the weights (names, shapes and bytes in name order):
        which classifier measured an FD, for reports."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the model folder: config.json (kind, config, heads, `extra` facts such as accuracy
        and the training record) and the weights, float ones as fp16."""
        config = {"kind": KIND, **self.config.to_dict(),
                  "heads": [{"name": h.name, "labels": list(h.labels), "multi": h.multi} for h in self.heads],
                  **(extra or {})}
        tensors = {name: t.half() if t.is_floating_point() else t for name, t in self.state_dict().items()}
        return save_folder(path, config, tensors)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> Classifier:
        """Load a folder written by `save` (default: the shipped atelier/weights/classifier), in eval mode;
        anything else raises a FolderError that says what is wrong."""
        path = Path(path) if path is not None else DEFAULT_CLASSIFIER
        data = read_config(path)
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind != KIND:
            raise FolderError(f"{path} holds a model folder of kind {kind!r}, not a {KIND!r}")
        try:
            heads = tuple(Head(h["name"], tuple(h["labels"]), bool(h["multi"])) for h in data["heads"])
            known = {f.name for f in fields(ClassifierConfig)}
            config = ClassifierConfig.from_dict({k: data[k] for k in known if k in data})
        except (KeyError, TypeError, ValueError) as error:
            raise FolderError(f"{path / 'config.json'}: not a valid classifier config ({error!r})") from None
        model = cls(config, heads)
        tensors = load_tensors(path)
        check_state_dict(model.state_dict(), tensors, f"classifier at {path}")
        model.load_state_dict({name: t.float() if t.is_floating_point() else t for name, t in tensors.items()})
        model.source = str(path)
        return model.eval()


def targets(scenes: Sequence[Scene], heads: tuple[Head, ...] = HEADS) -> dict[str, np.ndarray]:
    """What each head should answer for each scene: multi-label heads a [B, labels] 0/1 array,
    one-of heads a [B] array of label indices."""
    facts: dict[str, Callable[[Scene], list[str]]] = {
        "shapes": lambda s: [o.shape for o in s.objects],
        "colours": lambda s: [o.colour for o in s.objects],
        "sizes": lambda s: [o.size for o in s.objects],
        "textures": lambda s: [o.texture for o in s.objects],
        "regions": lambda s: [vocab.REGIONS[o.region] for o in s.objects],
        "background": lambda s: [s.background.kind],
        "background_colours": lambda s: list(s.background.colours),
        "count": lambda s: [str(len(s.objects))],
    }
    out = {}
    for head in heads:
        if head.name not in facts:
            raise ValueError(f"no scene fact answers head {head.name!r}; known heads: {sorted(facts)}")
        index = {label: i for i, label in enumerate(head.labels)}
        answers = [[index[f] for f in facts[head.name](scene)] for scene in scenes]
        if head.multi:
            array = np.zeros((len(scenes), len(head.labels)), dtype=np.float32)
            for row, found in enumerate(answers):
                array[row, found] = 1.0
        else:
            array = np.array([found[0] for found in answers], dtype=np.int64)
        out[head.name] = array
    return out


def cell_targets(scenes: Sequence[Scene], grid: int) -> np.ndarray:
    """Per-cell answers [B, len(CELL_HEADS), grid, grid] (int64): for each cell of a grid x grid
    split of the image, the label index of the object covering most of it (at least
    CELL_COVERAGE), or len(labels) for none."""
    from atelier.world.render import object_masks

    out = np.empty((len(scenes), len(CELL_HEADS), grid, grid), dtype=np.int64)
    for row, scene in enumerate(scenes):
        side = scene.size // grid
        if side * grid != scene.size:
            raise ValueError(f"a {scene.size} px scene does not split into {grid} x {grid} cells")
        for h, head in enumerate(CELL_HEADS):
            out[row, h] = len(head.labels)
        if not scene.objects:
            continue
        coverage = object_masks(scene).reshape(len(scene.objects), grid, side, grid, side).mean(axis=(2, 4))
        owner = coverage.argmax(axis=0)  # [grid, grid]
        covered = coverage.max(axis=0) >= CELL_COVERAGE
        for h, head in enumerate(CELL_HEADS):
            index = {label: i for i, label in enumerate(head.labels)}
            labels = np.array([index[getattr(o, CELL_FACTS[head.name])] for o in scene.objects])
            out[row, h][covered] = labels[owner[covered]]
    return out


def world_batch(seed: int, start: int, count: int, size: int = 64,
                split: str = "train") -> tuple[np.ndarray, list[Scene]]:
    """Samples start..start+count of the world stream (seed, split): images [count, size, size, 3]
    uint8 and their scenes. The scenes are make_sample's, drawn without its caption, which the
    classifier never reads and which costs about ten times the render."""
    from atelier.world.render import render

    scenes = [sample_scene(scene_rng(seed, index), size=size, split=split) for index in range(start, start + count)]
    return np.stack([render(scene) for scene in scenes]), scenes


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of a batch [B, H, W, 3] uint8 where each image, with probability AUGMENT_SHARE, suffers
    one mild degradation of random strength: Gaussian blur, Gaussian noise or JPEG (4:4:4).

    Without it the world's perfectly flat renders make any grain far from everything the network
    has seen: imperceptible noise (6/255) moved FD twice as far as a sigma-2 blur and twelve times
    as far as drawing every shape as a circle. Trained on mild degradations, the features hold
    still under what a viewer would not notice and move under what they would."""
    import io

    from PIL import Image
    from scipy.ndimage import gaussian_filter

    out = images.copy()
    side = images.shape[1]
    for i in np.flatnonzero(rng.random(len(images)) < AUGMENT_SHARE):
        kind = rng.integers(3)
        if kind == 0:
            sigma = rng.uniform(*AUGMENT_BLUR) * side / 64
            blurred = gaussian_filter(images[i].astype(np.float64), sigma=(sigma, sigma, 0))
            out[i] = np.clip(blurred + 0.5, 0, 255).astype(np.uint8)
        elif kind == 1:
            noisy = images[i] + rng.normal(0, rng.uniform(*AUGMENT_NOISE) * 255, images[i].shape)
            out[i] = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        else:
            buffer = io.BytesIO()
            Image.fromarray(images[i]).save(buffer, format="JPEG", quality=int(rng.integers(*AUGMENT_JPEG)),
                                            subsampling=0)
            out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [B, 3, H, W] in [-1, 1]


def _loss(model: Classifier, logits: torch.Tensor, truth: dict[str, torch.Tensor],
          cell_logits: torch.Tensor | None = None, cells: torch.Tensor | None = None) -> torch.Tensor:
    import torch.nn.functional as F

    total = logits.new_zeros(())
    if cell_logits is not None:
        blocks = cell_logits.split([len(h.labels) + 1 for h in CELL_HEADS], dim=1)
        for h, block in enumerate(blocks):
            weight = block.new_ones(block.shape[1])
            weight[-1] = CELL_NONE_WEIGHT
            total = total + F.cross_entropy(block, cells[:, h], weight=weight)
    for head, block in zip(model.heads, model.split_logits(logits).values()):
        if head.multi:
            total = total + F.binary_cross_entropy_with_logits(block, truth[head.name])
        else:
            total = total + F.cross_entropy(block, truth[head.name])
    return total


@torch.no_grad()
def accuracy(model: Classifier, images: np.ndarray, scenes: Sequence[Scene], batch: int = 256) -> dict[str, dict]:
    """Held-out accuracy per head: multi-label heads give the share of correct (image, label)
    decisions at p = 0.5 ("labels") and of images with every label right ("exact"); one-of heads
    the share of images whose top label is right ("accuracy")."""
    model.eval()
    truth = targets(scenes, model.heads)
    blocks: dict[str, list[np.ndarray]] = {h.name: [] for h in model.heads}
    for start in range(0, len(images), batch):
        _, logits = model(_to_tensor(images[start:start + batch]))
        for name, block in model.split_logits(logits).items():
            blocks[name].append(block.numpy())
    out = {}
    for head in model.heads:
        scores = np.concatenate(blocks[head.name])
        if head.multi:
            right = (scores > 0) == (truth[head.name] > 0.5)
            out[head.name] = {"labels": round(float(right.mean()), 4), "exact": round(float(right.all(1).mean()), 4)}
        else:
            out[head.name] = {"accuracy": round(float((scores.argmax(1) == truth[head.name]).mean()), 4)}
    return out


def train_classifier(output: Path, minutes: float, seed: int = 0, batch: int = 64, threads: int = 2,
                     log: Callable[[str], None] = print, lr: float = 3e-3, weight_decay: float = 0.05,
                     holdout: int = 2000, config: ClassifierConfig | None = None) -> dict:
    """Train the world classifier for `minutes` of wall clock and write it to `output`: the one
    entry point (`atelier train classifier -o DIR --minutes N`).

    Batch i holds samples i*batch.. of the training stream (seed, split "train"), rendered fresh,
    so no image is seen twice. The learning rate warms up over the first 3% of the budget and then
    follows a cosine to zero at its end, scheduled on elapsed time rather than steps, so a run
    of any length ends annealed (the "cramming" recipe, Geiping & Goldstein 2022). The weights are
    rounded to fp16 (as stored) before the held-out measurement: the figures are the shipped
    model's. Held-out sets: `holdout` samples of the training split drawn from seed + 1, and as
    many of the whole world (split "all", which shows the held-out pairs, counts and relations)
    from seed + 2. Returns the record written into config.json.

    On a machine shared with other work, pass threads=1: two torch threads stall whenever a
    neighbour holds a core (a step measured 10x slower), one thread does not.
    """
    if not isinstance(minutes, int | float) or not minutes > 0 or not math.isfinite(minutes):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    for name, value in (("batch", batch), ("threads", threads), ("holdout", holdout)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        config = config or ClassifierConfig()
        model = Classifier(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        size, budget = config.image_size, minutes * 60
        log(f"classifier: {sum(p.numel() for p in model.parameters()):,} parameters, {minutes:g} min budget, "
            f"batch {batch}, {threads} torch thread{'s' if threads > 1 else ''}")
        began = time.perf_counter()
        step, losses, curve, last_log = 0, [], [], began
        while (elapsed := time.perf_counter() - began) < budget:
            fraction = elapsed / budget
            rate = clock_rate(lr, fraction)
            for group in optimizer.param_groups:
                group["lr"] = rate
            images, scenes = world_batch(seed, step * batch, batch, size)
            images = augment(images, np.random.default_rng((seed, step)))
            truth = {name: torch.from_numpy(array) for name, array in targets(scenes, model.heads).items()}
            model.train()
            if config.cells:
                _, logits, cell_logits = model(_to_tensor(images), cells=True)
                loss = _loss(model, logits, truth, cell_logits, torch.from_numpy(cell_targets(scenes, model.grid)))
            else:
                _, logits = model(_to_tensor(images))
                loss = _loss(model, logits, truth)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if time.perf_counter() - last_log >= 30 or step == 1:
                last_log = time.perf_counter()
                mean = float(np.mean(losses[-20:]))
                curve.append({"step": step, "seconds": round(last_log - began, 1), "loss": round(mean, 4)})
                log(f"step {step:>5}  images {step * batch:>7,}  loss {mean:.4f}  lr {rate:.2e}  "
                    f"{last_log - began:>6.0f} s")
        seconds = time.perf_counter() - began
        round_to_fp16(model)  # measure exactly what is stored
        held_out = {
            f"train split, seed {seed + 1}": accuracy(model, *world_batch(seed + 1, 0, holdout, size, "train")),
            f"all split, seed {seed + 2}": accuracy(model, *world_batch(seed + 2, 0, holdout, size, "all")),
        }
        record = {
            "seed": seed, "batch": batch, "steps": step, "images_seen": step * batch,
            "minutes_budget": minutes, "seconds": round(seconds, 1), "threads": threads,
            "lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW, warmup 3% then cosine on wall clock",
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None, "curve": curve,
            "augment": {"share": AUGMENT_SHARE, "blur_sigma": list(AUGMENT_BLUR), "noise_std": list(AUGMENT_NOISE),
                        "jpeg_quality": list(AUGMENT_JPEG)},
            "cell_none_weight": CELL_NONE_WEIGHT if config.cells else None,
            "holdout_images": holdout, "torch": torch.__version__,
            "hardware": hardware(threads),
        }
        model.save(output, {"training": record, "accuracy": held_out})
        log(f"wrote {output}: {step} steps, {step * batch:,} images in {seconds:.0f} s")
        for name, figures in held_out.items():
            log(f"  held out ({name}): " + ", ".join(f"{head} {' / '.join(f'{v:.3f}' for v in acc.values())}"
                                                    for head, acc in figures.items()))
        return {"training": record, "accuracy": held_out}
    finally:
        torch.set_num_threads(previous_threads)
