"""The segmenter network: a small U-Net (Ronneberger et al. 2015) that says, for every pixel,
whether it belongs to an object (the subject) or to the background.

An edit that replaces the background or one object needs a mask of what to keep. The world draws
every object with exact coverage, so a network trained on its ground truth learns the one thing
the mask needs: flat shapes, textured or outlined, against solid, gradient, striped and checkered
backgrounds. The U-Net's skip connections keep full-resolution edges (a 64 px world object is
9 to 17 px across, so a pixel of boundary error costs several points of IoU), while its coarser
levels see enough context to tell an object from a background stripe of the same colour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from atelier.folder import FolderError, check_state_dict, config_from_dict, load_tensors, read_config, save_folder
from atelier.weights import shipped

KIND = "segmenter"
DEFAULT_SEGMENTER = shipped("segmenter")


@dataclass(frozen=True)
class SegmenterConfig:
    """A U-Net: one block of `depth` 3x3 convolutions (GroupNorm, SiLU) per width, a 2x2 max-pool
    between levels on the way down, bilinear 2x upsampling and concatenation with the level's
    skip on the way up, and a 1x1 convolution to one foreground logit per pixel.

    `min_side` and `max_side` are the working resolution `atelier.segment.masks` runs the net at
    (an image's longest side is scaled into this range): the sides training showed it."""

    widths: tuple[int, ...] = (16, 32, 64)  # channels per level, full resolution first
    depth: int = 2  # 3x3 convolutions per block
    groups: int = 8  # GroupNorm groups (fewer when a block has fewer channels)
    min_side: int = 64  # working resolution: longest side at least this ...
    max_side: int = 128  # ... and at most this

    def __post_init__(self) -> None:
        if not isinstance(self.widths, list | tuple) or len(self.widths) < 2:
            raise ValueError(f"widths must list at least two channel counts, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(self.widths))
        if not all(isinstance(w, int) and w > 0 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {self.widths!r}")
        for name in ("depth", "groups", "min_side", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} is larger than max_side {self.max_side}")

    @property
    def stride(self) -> int:
        """The coarsest level's downsampling: inputs are padded to a multiple of it."""
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterConfig:
        return config_from_dict(cls, data, "segmenter config")

def _block(cin: int, cout: int, depth: int, groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(depth):
        layers += [nn.Conv2d(cin if index == 0 else cout, cout, 3, 1, 1, bias=False),
                   nn.GroupNorm(_groups(cout, groups), cout), nn.SiLU()]
    return nn.Sequential(*layers)


def _groups(channels: int, groups: int) -> int:
    """The largest divisor of `channels` not above `groups` (GroupNorm needs one)."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class Segmenter(nn.Module):
    """Images [B, 3, H, W] in [-1, 1], any H and W -> foreground logits [B, 1, H, W]."""

    def __init__(self, config: SegmenterConfig | None = None):
        super().__init__()
        config = config or SegmenterConfig()
        self.config = config
        self.source: str | None = None  # the folder it was loaded from
        widths, depth, groups = config.widths, config.depth, config.groups
        self.down = nn.ModuleList(_block(cin, cout, depth, groups) for cin, cout in zip((3, *widths[:-1]), widths))
        self.up = nn.ModuleList(_block(widths[level + 1] + widths[level], widths[level], depth, groups)
                                for level in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        stride = self.config.stride
        # Pad bottom and right to a multiple of the stride by repeating the edge, which the net
        # reads as more background; the logits are cropped back.
        x = F.pad(images, (0, -width % stride, 0, -height % stride), mode="replicate")  # [B, 3, H', W']
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool2d(x, 2)  # [B, C_l-1, H'/2^l, W'/2^l]
            x = block(x)  # [B, C_l, H'/2^l, W'/2^l]
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)  # [B, C_l+1, H_l, W_l]
            x = block(torch.cat([x, skip], dim=1))  # [B, C_l, H_l, W_l]
        return self.head(x)[:, :, :height, :width]  # [B, 1, H, W]

    def save_pretrained(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the model folder: config.json (kind, config, and `extra` facts such as the
        training and evaluation records) and the weights as fp16 (half the bytes; the
        training run measures the rounded weights, so its figures are the stored model's)."""
        config = {"kind": KIND, **self.config.to_dict(), **(extra or {})}
        tensors = {name: t.half() if t.is_floating_point() else t for name, t in self.state_dict().items()}
        return save_folder(path, config, tensors)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> Segmenter:
        """Load a folder written by `save_pretrained` (default: the shipped atelier/weights/segmenter) in
        float32, in eval mode; anything else raises a FolderError that says what is wrong."""
        path = Path(path) if path is not None else DEFAULT_SEGMENTER
        data = read_config(path)
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind != KIND:
            raise FolderError(f"{path} holds a model folder of kind {kind!r}, not a {KIND!r}")
        try:
            known = {f.name for f in fields(SegmenterConfig)}
            config = SegmenterConfig.from_dict({k: data[k] for k in known if k in data})
        except (TypeError, ValueError) as error:
            raise FolderError(f"{path / 'config.json'}: not a valid segmenter config ({error})") from None
        model = cls(config)
        tensors = load_tensors(path)
        check_state_dict(model.state_dict(), tensors, f"segmenter at {path}")
        model.load_state_dict({name: t.float() if t.is_floating_point() else t for name, t in tensors.items()})
        model.source = str(path)
        return model.to(device).eval()
