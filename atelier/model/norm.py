"""RMS normalisation (Zhang & Sennrich 2019) in the input's dtype.

Under bf16 autocast the input is bf16 and the weight fp32; nn.RMSNorm then falls back to an
unfused path (with a warning), so the weight is cast to the input's dtype instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.RMSNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)
