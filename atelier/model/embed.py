"""Inputs to the transformer: latent patches, timesteps, text and cameras."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


class PatchEmbed(nn.Module):
    """Noisy latents, context latents and the keep-mask, patchified and projected to tokens."""

    def __init__(self, in_channels: int, patch_size: int, width: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_channels * patch_size * patch_size, width)

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        """canvas [B, F, C_in, h, w] -> tokens [B, F, (h/p)(w/p), D]"""
        p = self.patch_size
        patches = rearrange(canvas, "b f c (h p) (w q) -> b f (h w) (p q c)", p=p, q=p)
        return self.proj(patches)


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] scaled to [0, 1000] (Vaswani et al. 2017; DiT)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[..., None] * frequencies                       # [..., dim/2]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)                     # [..., dim]


class TimestepEmbed(nn.Module):
    def __init__(self, width: int, features: int = 256):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t [B, F] -> [B, F, D]"""
        return self.mlp(timestep_features(t, self.features).to(self.mlp[0].weight.dtype))


class VectorEmbed(nn.Module):
    """A small MLP for a conditioning vector (the pooled text, a camera) added to the timestep's."""

    def __init__(self, in_dim: int, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, vector: torch.Tensor) -> torch.Tensor:
        return self.mlp(vector)


def drop_text(tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor, drop: torch.Tensor,
              null_text: torch.Tensor, null_pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The text with rows `drop` [B] (bool) swapped for the learned null caption, for classifier-free
    guidance: one token `null_text` [text_dim] (mask True, the rest masked out) and the pooled vector
    `null_pooled` [text_dim]. tokens [B, L, text_dim], mask [B, L], pooled [B, text_dim]. Every
    denoiser (transformer, UNet) drops its caption this one way."""
    drop = drop.to(torch.bool)
    null_tokens = torch.zeros_like(tokens)
    null_tokens[:, 0] = null_text.to(tokens.dtype)
    null_mask = torch.zeros_like(mask)
    null_mask[:, 0] = True
    tokens = torch.where(drop[:, None, None], null_tokens, tokens)
    mask = torch.where(drop[:, None], null_mask, mask)
    pooled = torch.where(drop[:, None], null_pooled.to(pooled.dtype).expand_as(pooled), pooled)
    return tokens, mask, pooled


def camera_vector(azimuth: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor | None = None,
                  dim: int = 8) -> torch.Tensor:
    """A camera as the model sees it: [..., dim] from angles in radians (MVDream feeds camera
    parameters through an MLP added to the timestep embedding; we use the view direction, its
    sines and cosines, and the distance, zero-padded to `dim`)."""
    distance = torch.ones_like(azimuth) if distance is None else distance
    direction = torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(), elevation.sin()], -1)
    features = torch.cat([direction, azimuth.sin()[..., None], azimuth.cos()[..., None], distance[..., None]], -1)
    if features.shape[-1] > dim:
        raise ValueError(f"camera_dim {dim} is smaller than the {features.shape[-1]} camera features")
    return torch.nn.functional.pad(features, (0, dim - features.shape[-1]))
