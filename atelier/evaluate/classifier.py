"""A small CNN that knows the procedural world, whose pooled features the fidelity metric
compares (atelier.evaluate.fidelity), as FID compares Inception-v3's pool3 features
(Heusel et al. 2017).

Inception was trained on ImageNet and knows nothing of flat shapes on patterned backgrounds;
a network trained on the world itself does. Its heads name what a scene holds (shapes,
colours, sizes, textures, occupied regions, background kind and colours, object count), and
during training every cell of its last feature map names the object covering it, so its
penultimate layer (average and max pooling of the last convolution) has to encode exactly the
facts a generator must get right, plus how cleanly they are drawn.

atelier.train.classifier is the one way to make it: fresh renders of the training stream, AdamW
on a wall-clock budget, accuracy measured on held-out draws, saved as a model folder
(atelier.folder) with those figures and the training record in config.json.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from atelier.folder import FolderError, check_state_dict, config_from_dict, load_tensors, read_config, save_folder
from atelier.weights import shipped
from atelier.world import vocab

KIND = "classifier"
DEFAULT_CLASSIFIER = shipped("classifier")
MIN_SIDE, MAX_SIDE = 32, 256  # inputs outside are refused; inside, resized to the config's image_size
POOLINGS = ("avg", "max", "avgmax")


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
        return config_from_dict(cls, data, "classifier config")

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


