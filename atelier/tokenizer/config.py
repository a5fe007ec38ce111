"""The tokenizer's typed configuration and its named presets.

Torch-free on purpose: the CLI and the model folder reader validate a config without paying
for a torch import.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, replace
from typing import Any

from atelier.folder import config_from_dict

ENCODERS = ("cot", "conv")
DOWNSAMPLES = (4, 8)


@dataclass(frozen=True)
class TokenizerConfig:
    """Encoder, decoder and latent normalisation of one autoencoder.

    `widths`, `blocks`, `decoder_widths` and `decoder_blocks` hold one entry per resolution,
    from full resolution down to the latent one (so log2(downsample) + 1 entries).
    """

    encoder: str = "cot"  # "cot": CoT blocks + global transformer layers; "conv": residual conv blocks
    downsample: int = 4  # 4: 64 px -> 16x16 latents; 8: 64 px -> 8x8
    latent_channels: int = 12  # 16x16x12 for a 64 px image: 4x fewer numbers than pixels
    image_size: int = 64  # the side trained at (any multiple of `downsample` encodes)
    widths: tuple[int, ...] = (32, 64, 128)  # encoder channels per resolution
    blocks: tuple[int, ...] = (0, 1, 2)  # CoT (or residual) blocks per resolution
    global_layers: int = 2  # cot: pre-norm transformer layers at latent resolution
    heads: int = 4  # cot: heads of those layers
    mlp_ratio: float = 2.0  # cot: hidden width of the transformer and CoT-block MLPs, per channel
    cot_heads: int = 4  # cot: independent local 3x3 kernels per pixel (CoTNet's dim / share_planes)
    cot_groups: int = 4  # cot: groups of the static-context 3x3 convolution (CoTNet uses 4)
    latent_blocks: int = 0  # conv: residual blocks at latent resolution, in place of the transformer layers
    decoder_widths: tuple[int, ...] = (32, 64, 128)
    decoder_blocks: tuple[int, ...] = (1, 1, 2)
    norm_groups: int = 8  # GroupNorm groups everywhere
    shortcut: bool = True  # linear patch shortcuts around encoder and decoder (atelier.tokenizer.shortcut)
    latent_noise: float = 0.0  # training only: Gaussian noise on raw latents, relative to their batch std (off:
    # at 12 channels the diffusion model's errors are for it to shrink, not for the decoder to absorb; untested)
    latent_shift: float | tuple[float, ...] = 0.0  # per channel (or one scalar); set after training
    latent_scale: float | tuple[float, ...] = 1.0  # encode returns (z - shift) * scale

    def __post_init__(self) -> None:
        for name in ("widths", "blocks", "decoder_widths", "decoder_blocks"):
            if not isinstance(getattr(self, name), list | tuple):
                raise ValueError(f"invalid tokenizer config: {name} must be a list, got {getattr(self, name)!r}")
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("latent_shift", "latent_scale"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                object.__setattr__(self, name, tuple(float(v) if isinstance(v, numbers.Real) else v for v in value))
        self.validate()

    @property
    def levels(self) -> int:
        """Resolutions from image to latent: log2(downsample) + 1."""
        return int(math.log2(self.downsample)) + 1

    def validate(self) -> None:
        problems = []
        if self.encoder not in ENCODERS:
            problems.append(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.downsample not in DOWNSAMPLES:
            problems.append(f"downsample must be one of {', '.join(map(str, DOWNSAMPLES))}, got {self.downsample!r}")
        else:
            for name in ("widths", "blocks", "decoder_widths", "decoder_blocks"):
                if len(getattr(self, name)) != self.levels:
                    problems.append(f"{name} needs {self.levels} entries for {self.downsample}x downsampling "
                                    f"(full resolution down to the latent one), got {getattr(self, name)}")
        for name in ("latent_channels", "image_size", "heads", "cot_heads", "cot_groups", "norm_groups"):
            if not _positive_int(getattr(self, name)):
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("global_layers", "latent_blocks"):
            if not _count(getattr(self, name)):
                problems.append(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        for name in ("widths", "decoder_widths"):
            for width in getattr(self, name):
                if not _positive_int(width) or (_positive_int(self.norm_groups) and width % self.norm_groups):
                    problems.append(f"{name} entries must be positive multiples of norm_groups "
                                    f"({self.norm_groups}), got {width!r}")
        for name in ("blocks", "decoder_blocks"):
            if not all(_count(n) for n in getattr(self, name)):
                problems.append(f"{name} entries must be non-negative integers, got {getattr(self, name)}")
        if self.encoder == "cot" and not problems:
            for width in self.widths:
                if width % self.cot_heads or width % self.cot_groups or width % 4:
                    problems.append(f"cot widths must be multiples of cot_heads ({self.cot_heads}), cot_groups "
                                    f"({self.cot_groups}) and 4, got {width}")
            latent_width = self.widths[-1]
            if self.global_layers and (latent_width % self.heads or (latent_width // self.heads) % 4):
                problems.append(f"the latent width {latent_width} must split into {self.heads} heads of a "
                                f"multiple of 4 channels (2D rotary positions use quarters of a head)")
        if self.encoder == "conv" and self.global_layers:
            problems.append("the conv encoder has no transformer layers: set global_layers=0 (use latent_blocks)")
        if not isinstance(self.shortcut, bool):
            problems.append(f"shortcut must be true or false, got {self.shortcut!r}")
        if not (isinstance(self.mlp_ratio, numbers.Real) and self.mlp_ratio > 0):
            problems.append(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if not (isinstance(self.latent_noise, numbers.Real) and 0 <= self.latent_noise < 1):
            problems.append(f"latent_noise must be in [0, 1), got {self.latent_noise!r}")
        if _positive_int(self.image_size) and self.downsample in DOWNSAMPLES and self.image_size % self.downsample:
            problems.append(f"image_size {self.image_size} is not a multiple of downsample {self.downsample}")
        for name in ("latent_shift", "latent_scale"):
            value = getattr(self, name)
            values = value if isinstance(value, tuple) else (value,)
            if isinstance(value, tuple) and _positive_int(self.latent_channels) and len(value) != self.latent_channels:
                problems.append(f"{name} needs one value per latent channel ({self.latent_channels}), got {len(value)}")
            if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
                problems.append(f"{name} must be finite numbers, got {value!r}")
        if not all(v > 0 for v in (self.latent_scale if isinstance(self.latent_scale, tuple) else
                                   (self.latent_scale,)) if isinstance(v, numbers.Real)):
            problems.append(f"latent_scale must be positive, got {self.latent_scale!r}")
        if problems:
            raise ValueError("invalid tokenizer config: " + "; ".join(problems))

    def with_latent_stats(self, shift: list[float], scale: list[float]) -> TokenizerConfig:
        return replace(self, latent_shift=tuple(shift), latent_scale=tuple(scale))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {name: list(value) if isinstance(value, tuple) else value for name, value in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerConfig:
        return config_from_dict(cls, data, "tokenizer config")

def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


# The CLI's --preset choices. Each conv preset has the parameter count of its cot twin within 3%
# (tests check it), so the comparison the trainer's --baseline runs is one of encoders, not of sizes.
PRESETS: dict[str, TokenizerConfig] = {
    "cot-4x": TokenizerConfig(),
    "conv-4x": TokenizerConfig(encoder="conv", global_layers=0, blocks=(0, 1, 1), latent_blocks=1),
    "cot-8x": TokenizerConfig(downsample=8, latent_channels=48, widths=(32, 64, 128, 128), blocks=(0, 1, 1, 2),
                              decoder_widths=(32, 64, 128, 128), decoder_blocks=(0, 1, 1, 2)),
    "conv-8x": TokenizerConfig(encoder="conv", downsample=8, latent_channels=48, widths=(32, 64, 128, 128),
                               blocks=(0, 0, 1, 1), global_layers=0, latent_blocks=1,
                               decoder_widths=(32, 64, 128, 128), decoder_blocks=(0, 1, 1, 2)),
    "tiny": TokenizerConfig(latent_channels=4, widths=(8, 16, 16), blocks=(0, 1, 1), global_layers=1, heads=1,
                            cot_heads=2, cot_groups=2, norm_groups=4, decoder_widths=(8, 16, 16),
                            decoder_blocks=(0, 1, 1), image_size=32),
    "tiny-conv": TokenizerConfig(encoder="conv", latent_channels=4, widths=(8, 16, 16), blocks=(0, 1, 1),
                                 global_layers=0, latent_blocks=0, norm_groups=4, decoder_widths=(8, 16, 16),
                                 decoder_blocks=(0, 1, 1), image_size=32),
}


def preset(name: str) -> TokenizerConfig:
    """The named preset; an unknown name lists the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown tokenizer preset {name!r}; choices: {', '.join(PRESETS)}") from None
