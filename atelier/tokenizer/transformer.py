"""Global context for the encoder: pre-norm transformer layers over the latent grid.

CoT blocks see a 3x3 neighbourhood per layer; a few full self-attention layers at latent
resolution (16x16 = 256 tokens at 4x) let every latent see the whole image, as in ViT
(Dosovitskiy et al. 2021). Positions are 2D rotary (RoPE, Su et al. 2021; axial as in
Heo et al. 2024): relative, parameter-free, so any resolution encodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rope_2d(height: int, width: int, head_dim: int, device: torch.device, base: float = 100.0,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each [H*W, head_dim]: half the rotated pairs turn with the row, half with the column."""
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)  # [D/4]
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                            indexing="ij")
    angles = torch.cat([ys.reshape(-1, 1) * freqs, xs.reshape(-1, 1) * freqs], dim=1)  # [N, D/2]
    angles = torch.cat([angles, angles], dim=1)  # [N, D]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + D/2) of x [B, heads, N, D] by the angles of cos/sin [N, D]."""
    first, second = x.chunk(2, dim=-1)  # [B, heads, N, D/2] each
    rotated = torch.cat([-second, first], dim=-1)  # [B, heads, N, D]
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)  # [B, heads, N, D]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v for [B, heads, N, D] inputs: torch's SDPA, except when training on CPU.

    There, at a few hundred tokens, torch 2.13's fused CPU kernels are the slow path: forward plus
    backward of a [32, 4, 256, 32] bf16 attention takes 156 ms with the flash kernel, 87 ms with
    SDPA's math kernel and 28 ms written out (measured on 2 Xeon cores with AMX).
    """
    if q.device.type != "cpu" or not torch.is_grad_enabled():
        return F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, D]
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5  # [B, heads, N, N]
    return scores.softmax(dim=-1).to(v.dtype) @ v  # [B, heads, N, D]


class Attention(nn.Module):
    """Multi-head self-attention with 2D rotary positions, through torch's SDPA."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, C // self.heads)  # [B, N, 3, heads, D]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, heads, N, D] each
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # [B, heads, N, D]
        out = attend(q, k, v)  # [B, heads, N, D]
        return self.proj(out.transpose(1, 2).reshape(B, N, C))  # [B, N, C]


class TransformerLayer(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)), on a token sequence [B, N, C]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)  # [B, N, C]
        return x + self.mlp(self.norm2(x))  # [B, N, C]


class GlobalContext(nn.Module):
    """A stack of transformer layers over a feature map: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, mlp_ratio) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        cos, sin = rope_2d(H, W, C // self.heads, x.device)  # [H*W, D] each
        tokens = x.flatten(2).transpose(1, 2)  # [B, H*W, C]
        for layer in self.layers:
            tokens = layer(tokens, cos, sin)  # [B, H*W, C]
        return tokens.transpose(1, 2).reshape(B, C, H, W)  # [B, C, H, W]
