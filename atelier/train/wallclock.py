"""What the small networks trained on a wall-clock budget share (the world classifier, the
segmenter): their learning-rate schedule and the fp16 rounding their figures are measured after
(the hardware line of their record is atelier.hardware).

The schedule follows elapsed time rather than steps, so a run of any length ends annealed (the
"cramming" recipe, Geiping & Goldstein 2022).
"""

from __future__ import annotations

import math

import torch
from torch import nn

WARMUP = 0.03  # fraction of the time budget spent warming the learning rate up


def clock_rate(peak: float, fraction: float, warmup: float = WARMUP) -> float:
    """The learning rate when `fraction` of the budget has passed: a linear warm-up over `warmup`
    of it, then a cosine from `peak` to zero at its end."""
    return peak * min(1.0, fraction / warmup) * 0.5 * (1 + math.cos(math.pi * fraction))


def round_to_fp16(model: nn.Module) -> None:
    """Round the float weights to fp16 and back in place: the model as its folder stores it, so the
    figures measured next are the shipped model's."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
