"""Plain residual convolution blocks: the decoder's building block and the conv encoder's.

The pre-activation form (GroupNorm, SiLU, 3x3 conv, twice) of He et al. 2016 as the Stable
Diffusion VAE uses it (Rombach et al. 2022), with GroupNorm so a latent never depends on its
batch mates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """[B, C, H, W] -> [B, C, H, W]: x + conv(act(norm(conv(act(norm(x))))))."""

    def __init__(self, dim: int, norm_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, dim)
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_groups, dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, C, H, W]
        return x + self.conv2(F.silu(self.norm2(h)))  # [B, C, H, W]


class Downsample(nn.Module):
    """[B, C_in, H, W] -> [B, C_out, H/2, W/2] by a strided 3x3 convolution."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # [B, C_out, H/2, W/2]


class Upsample(nn.Module):
    """[B, C_in, H, W] -> [B, C_out, 2H, 2W]: nearest-neighbour doubling, then a 3x3 convolution
    (no transposed convolution, so no checkerboard artefacts; Odena et al. 2016)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # [B, C_in, 2H, 2W]
        return self.conv(x)  # [B, C_out, 2H, 2W]
