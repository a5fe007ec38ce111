"""What the small networks trained on a wall-clock budget share (the world classifier, the
segmenter): their learning-rate schedule, the fp16 rounding their figures are measured after, and
the hardware line of their training record.

The schedule follows elapsed time rather than steps, so a run of any length ends annealed (the
"cramming" recipe, Geiping & Goldstein 2022).
"""

from __future__ import annotations

import math
import platform

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


def hardware(threads: int) -> str:
    """"<CPU model>, N torch threads": where a record's timings were taken."""
    return f"{_cpu_name()}, {threads} torch thread{'s' if threads > 1 else ''}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or f"{platform.machine()} CPU"
