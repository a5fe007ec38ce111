"""Rotary position embedding over three axes (frame, y, x).

Each axis rotates its own slice of the head dimension (Su et al. 2021, "RoFormer"; the 3-axis
split follows video and image transformers such as HiDream-I1 and Open-Sora), so attention sees
relative positions and the same weights run at any resolution and frame count.
"""

from __future__ import annotations

import torch


def axis_angles(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """Angles [N, dim // 2] for integer positions [N] along one axis."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim
    inverse_frequency = theta ** -exponents                                   # [dim/2]
    return positions.to(torch.float64)[:, None] * inverse_frequency[None]     # [N, dim/2]


def rope_table(frames: int, height: int, width: int, dims: tuple[int, int, int], theta: float,
               device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [F * height * width, head_dim // 2] for tokens in (frame, y, x) raster order."""
    frame, y, x = torch.meshgrid(torch.arange(frames, device=device), torch.arange(height, device=device),
                                 torch.arange(width, device=device), indexing="ij")
    angles = torch.cat([axis_angles(frame.flatten(), dims[0], theta),
                        axis_angles(y.flatten(), dims[1], theta),
                        axis_angles(x.flatten(), dims[2], theta)], dim=-1)     # [N, head_dim/2]
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x [..., N, head_dim] by the table's angles [N, head_dim // 2]."""
    pairs = x.float().unflatten(-1, (-1, 2))                                  # [..., N, D/2, 2]
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2).type_as(x)                                     # [..., N, D]
