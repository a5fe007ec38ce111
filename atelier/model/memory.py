"""Product-key memory: a feed-forward replacement with n^2 value slots read sparsely.

Lample et al. 2019 ("Large Memory Layers with Product Keys"); Berges et al. 2024 ("Memory
Layers at Scale"), whose gated output and per-head reads we follow. The query is split in two
halves, each scored against its own n sub-keys; the top-k of each half combine into k*k
candidates whose top-k index the n^2 values. Capacity grows with n^2, compute with k.
The values are trained with their own learning rate (see `value_parameters`).

Queries are normalised per half, by RMS (the default) or by BatchNorm over the batch's tokens,
which Lample et al. found spreads reads over far more keys ("batch" query_norm).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from atelier.model.norm import RMSNorm

QUERY_NORMS = ("rms", "batch")


class ProductKeyMemory(nn.Module):
    def __init__(self, width: int, keys: int, topk: int, heads: int, key_dim: int, query_norm: str = "rms"):
        super().__init__()
        self.keys, self.topk, self.heads, self.key_dim = keys, topk, heads, key_dim
        self.query = nn.Linear(width, heads * key_dim, bias=False)
        if query_norm not in QUERY_NORMS:
            raise ValueError(f"query_norm must be one of {', '.join(QUERY_NORMS)}, got {query_norm!r}")
        self.query_norm = RMSNorm(key_dim // 2, eps=1e-6) if query_norm == "rms" else nn.BatchNorm1d(heads * key_dim)
        self.sub_keys = nn.Parameter(torch.empty(heads, 2, keys, key_dim // 2))
        self.values = nn.EmbeddingBag(keys * keys, width, mode="sum")
        self.gate = nn.Linear(width, width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.sub_keys, std=self.key_dim ** -0.5)
        nn.init.normal_(self.values.weight, std=self.values.weight.shape[1] ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])                                            # [T, D]
        rows, weights = self.address(flat)                                       # [T, H, k] each
        read = self.values(rows.flatten(1), per_sample_weights=weights.flatten(1).to(self.values.weight.dtype))
        out = self.out(read.to(x.dtype) * F.silu(self.gate(flat)))               # [T, D]
        return out.reshape(shape)

    def address(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The value rows each token reads and their weights: [T, H, k] each, for tokens [T, D]."""
        query = self.query(flat)                                                 # [T, H*d]
        if isinstance(self.query_norm, nn.BatchNorm1d):
            query = self.query_norm(query.float()).to(query.dtype)
        query = query.unflatten(-1, (self.heads, 2, -1))                         # [T, H, 2, d/2]
        if isinstance(self.query_norm, RMSNorm):
            query = self.query_norm(query)
        scores = torch.einsum("thsd,hsnd->thsn", query, self.sub_keys.to(query.dtype))  # [T, H, 2, n]
        first_scores, first = scores[:, :, 0].topk(self.topk, dim=-1)            # [T, H, k]
        second_scores, second = scores[:, :, 1].topk(self.topk, dim=-1)          # [T, H, k]
        pairs = first_scores[..., :, None] + second_scores[..., None, :]         # [T, H, k, k]
        best, pair = pairs.flatten(-2).topk(self.topk, dim=-1)                   # [T, H, k]
        rows = first.gather(-1, pair // self.topk) * self.keys + second.gather(-1, pair % self.topk)
        return rows, best.float().softmax(dim=-1)

    def value_parameters(self) -> list[nn.Parameter]:
        return [self.values.weight]


class SlotUsage:
    """How a model's memories are read while this context is open: the share of value slots read at
    all and the perplexity of the summed read weights over the slots, as a share of the slot count
    (Lample et al. 2019, section 4.4: a memory whose reads pile onto few keys stores little whatever
    its size). Recorded by forward hooks, so the model's code and outputs are untouched."""

    def __init__(self, model: nn.Module):
        self.memories = [m for m in model.modules() if isinstance(m, ProductKeyMemory)]
        self.weight = [torch.zeros(m.keys * m.keys, dtype=torch.float64) for m in self.memories]
        self._hooks: list = []

    def __enter__(self) -> SlotUsage:
        for index, memory in enumerate(self.memories):
            self._hooks.append(memory.register_forward_hook(
                lambda module, args, _, index=index: self._record(index, module, args[0])))
        return self

    def __exit__(self, *_) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    @torch.no_grad()
    def _record(self, index: int, memory: ProductKeyMemory, x: torch.Tensor) -> None:
        rows, weights = memory.address(x.reshape(-1, x.shape[-1]))
        self.weight[index].index_add_(0, rows.flatten().cpu(), weights.flatten().double().cpu())

    def summary(self) -> list[dict[str, float]]:
        """Per memory layer: slots, read (share read at least once), perplexity (share of slots)."""
        result = []
        for weight in self.weight:
            total = weight.sum()
            share = weight[weight > 0] / total if total > 0 else weight[:0]
            perplexity = math.exp(float(-(share * share.log()).sum())) if total > 0 else 0.0
            result.append({"slots": len(weight), "read": float((weight > 0).double().mean()),
                           "perplexity": perplexity / len(weight)})
        return result
