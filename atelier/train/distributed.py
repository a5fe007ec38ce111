"""One process or many: the same trainer runs alone or under torchrun (DDP or FSDP2).

`model/` never imports torch.distributed; this module does. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start() -> Processes:
    """Join the process group torchrun describes in the environment, or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world_size, local_rank, device)


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, processes: Processes, parallel: str) -> nn.Module:
    """DDP replicates the model and averages gradients; FSDP2 (fully_shard) shards parameters,
    gradients and optimizer state block by block, for models that do not fit one device."""
    if not processes.distributed:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [processes.device.index] if processes.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(processes.device.type, (processes.world_size,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def mean_across(value: float, processes: Processes) -> float:
    if not processes.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=processes.device)
    dist.all_reduce(tensor)
    return tensor.item() / processes.world_size


def mean_across_tensor(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """The element-wise mean of `values` over ranks (one collective), returned on the CPU."""
    if processes.distributed:
        values = values.to(processes.device, torch.float64)
        dist.all_reduce(values)
        values = values / processes.world_size
    return values.detach().cpu()


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()
