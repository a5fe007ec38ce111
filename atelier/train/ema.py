"""Exponential moving average of the weights, the model that is sampled and exported.

DiT and most diffusion models sample from an EMA of the weights (Polyak averaging): it is
smoother than the last iterate. Early in training the decay is ramped, min(decay, (1 + n) /
(10 + n)), so a short run's average is not dominated by the random initialisation. The shadow
copies are fp32 and follow the parameters' own sharding (plain tensors or FSDP2 DTensors).
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters()}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for name, parameter in model.named_parameters():
            self.shadow[name].lerp_(parameter.detach().float(), 1 - decay)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights as full tensors (a collective under FSDP: every rank must call it)."""
        return {name: _full(tensor) for name, tensor in self.shadow.items()}

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
        self.updates = updates


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor).detach().cpu()
