"""The Contextual Transformer (CoT) block: local self-attention whose keys see their neighbours.

Li, Yao, Pan, Mei, "Contextual Transformer Networks for Visual Recognition" (CoTNet, 2021).
A plain local attention scores each query against each key in isolation. CoT first mines the
static context of the keys with a grouped 3x3 convolution, then predicts a per-pixel 3x3
attention kernel from [static context, query]; the kernel aggregates the values into the
dynamic context, and the two contexts are fused by a softmax-weighted (split-attention) sum.

Normalisation is GroupNorm where CoTNet uses BatchNorm: a tokenizer must encode an image the
same way whatever else is in the batch (batch statistics make a latent depend on its batch
mates in training and on stale running averages at inference), and our batches are small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CoTAttention(nn.Module):
    """One CoT layer: [B, C, H, W] -> [B, C, H, W], any H and W."""

    def __init__(self, dim: int, heads: int = 4, groups: int = 4, kernel: int = 3, reduction: int = 4,
                 norm_groups: int = 8):
        super().__init__()
        if dim % heads or dim % groups or dim % reduction:
            raise ValueError(f"CoT width {dim} must be a multiple of heads ({heads}), groups ({groups}) "
                             f"and reduction ({reduction})")
        self.heads, self.kernel = heads, kernel
        hidden = dim // reduction
        # Static context: a grouped kxk convolution over the keys (the keys are the input itself).
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=groups, bias=False),
            nn.GroupNorm(norm_groups, dim), nn.ReLU(inplace=True))
        self.value_embed = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.GroupNorm(norm_groups, dim))
        # Attention: two 1x1 convolutions over [static context, query] give kxk weights per head and pixel.
        self.attention_embed = nn.Sequential(
            nn.Conv2d(2 * dim, hidden, 1, bias=False), nn.GroupNorm(_groups(norm_groups, hidden), hidden),
            nn.ReLU(inplace=True), nn.Conv2d(hidden, heads * kernel * kernel, 1),
            nn.GroupNorm(heads, heads * kernel * kernel))
        self.dynamic_norm = nn.Sequential(nn.GroupNorm(norm_groups, dim), nn.SiLU())
        # Fusion: split attention (ResNeSt) picks, per channel, how much of each context to keep.
        fuse = max(dim // 2, 8)
        self.fuse = nn.Sequential(
            nn.Conv2d(dim, fuse, 1), nn.GroupNorm(_groups(norm_groups, fuse), fuse), nn.ReLU(inplace=True),
            nn.Conv2d(fuse, 2 * dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        static = self.key_embed(x)  # [B, C, H, W]
        values = self.value_embed(x)  # [B, C, H, W]
        weights = self.attention_embed(torch.cat([static, x], dim=1))  # [B, heads * k * k, H, W]
        weights = weights.view(B, self.heads, 1, self.kernel ** 2, H, W)  # [B, heads, 1, k*k, H, W]
        dynamic = local_aggregate(values, weights, self.kernel)  # [B, C, H, W]
        dynamic = self.dynamic_norm(dynamic)  # [B, C, H, W]
        gate = self.fuse((static + dynamic).mean(dim=(2, 3), keepdim=True))  # [B, 2C, 1, 1]
        gate = gate.view(B, 2, C, 1, 1).softmax(dim=1)  # [B, 2, C, 1, 1]
        return static * gate[:, 0] + dynamic * gate[:, 1]  # [B, C, H, W]


def local_aggregate(values: torch.Tensor, weights: torch.Tensor, kernel: int) -> torch.Tensor:
    """Per-pixel local convolution: out[c, p] = sum_j weights[head(c), j, p] * values[c, p + offset_j].

    values [B, C, H, W]; weights [B, heads, 1, k*k, H, W] (zero padding at the borders). Written as
    k*k shifted multiply-adds rather than an unfold, so no [B, C, k*k, H, W] tensor is ever held.
    """
    B, C, H, W = values.shape
    heads = weights.shape[1]
    pad = kernel // 2
    padded = F.pad(values, (pad, pad, pad, pad)).view(B, heads, C // heads, H + 2 * pad, W + 2 * pad)
    out = None
    for j in range(kernel * kernel):
        dy, dx = divmod(j, kernel)
        term = padded[..., dy:dy + H, dx:dx + W] * weights[:, :, :, j]  # [B, heads, C / heads, H, W]
        out = term if out is None else out + term
    return out.reshape(B, C, H, W)


class CoTBlock(nn.Module):
    """Pre-norm residual CoT layer followed by a pre-norm residual pointwise MLP (a transformer
    block whose attention is CoT's contextual local attention)."""

    def __init__(self, dim: int, heads: int, groups: int, mlp_ratio: float, norm_groups: int):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.GroupNorm(norm_groups, dim)
        self.cot = CoTAttention(dim, heads=heads, groups=groups, norm_groups=norm_groups)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.GroupNorm(norm_groups, dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.proj(self.cot(self.norm1(x)))  # [B, C, H, W]
        return x + self.mlp(self.norm2(x))  # [B, C, H, W]


def _groups(preferred: int, channels: int) -> int:
    """The largest group count up to `preferred` that divides `channels`."""
    return next(g for g in range(min(preferred, channels), 0, -1) if channels % g == 0)
