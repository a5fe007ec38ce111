"""Exponential moving average of the weights, the model that is sampled and exported.

DiT and most diffusion models sample from an EMA of the weights (Polyak averaging): it is
smoother than the last iterate. Two profiles:

- a fixed decay, ramped early, min(decay, (1 + n) / (10 + n)), so a short run's average is not
  dominated by the random initialisation;
- the power-function profile of EDM2 (Karras et al. 2024, "Analyzing and Improving the Training
  Dynamics of Diffusion Models"), decay (1 - 1/n)^(gamma + 1) at update n: its averaging window
  is a fixed fraction (`std`, their sigma_rel) of the run so far, so it suits a run of any length.
  A fixed 0.999 averages over the last ~1,000 steps, most of a short CPU run.

The shadow copies are fp32 and follow the parameters' own sharding (plain tensors or FSDP2 DTensors).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def power_gamma(std: float) -> float:
    """EDM2's gamma for a relative standard deviation sigma_rel of the averaging window (their
    Algorithm 2): the root of sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3))."""
    if not 0 < std < 0.28:
        raise ValueError(f"the EMA's relative width must be in (0, 0.28), got {std}")
    low, high = -0.99, 1e6
    for _ in range(200):
        gamma = math.sqrt(low * high) if low > 0 else (low + high) / 2
        width = math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))
        low, high = (gamma, high) if width > std else (low, gamma)
    return (low + high) / 2


class EMA:
    def __init__(self, model: nn.Module, decay: float, std: float = 0.0):
        """`std` > 0 selects the power profile with that relative width; else the fixed `decay`."""
        self.decay, self.std = decay, std
        self.gamma = power_gamma(std) if std > 0 else None
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}
        self.buffers = {name: b.detach().clone() for name, b in model.named_buffers()}   # BatchNorm's statistics

    def current_decay(self) -> float:
        if self.gamma is not None:
            return (1 - 1 / (self.updates + 1)) ** (self.gamma + 1)
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for name, parameter in model.named_parameters():
            self.shadow[name].lerp_(parameter.detach().float(), 1 - decay)
        for name, buffer in model.named_buffers():   # statistics are not averaged: the latest are the best estimate
            self.buffers[name].copy_(buffer)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights as full tensors (a collective under FSDP: every rank must call it)."""
        return {name: _full(tensor) for name, tensor in {**self.shadow, **self.buffers}.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ValueError(f"the EMA weights lack {len(missing)} parameters, e.g. {missing[:3]}")
        for name, tensor in self.shadow.items():
            source = state[name].to(torch.float32)
            if hasattr(tensor, "device_mesh"):       # an FSDP2 shard: take this rank's slice of the full tensor
                from torch.distributed.tensor import distribute_tensor

                source = distribute_tensor(source.to(tensor.device), tensor.device_mesh, tensor.placements)
            tensor.copy_(source)
        for name, buffer in self.buffers.items():
            if name in state:
                buffer.copy_(state[name])
        self.updates = updates


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().cpu()
