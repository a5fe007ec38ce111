"""Parameter and FLOP counts per preset, measured on the meta device (no memory, no compute).

FLOPs come from torch.utils.flop_counter (one multiply-add = 2 FLOPs) for one forward pass of
one sample; the memory layers' sparse reads (EmbeddingBag) are gathers and count as zero, like
embedding lookups in language-model FLOP counts. Either denoiser counts (atelier.model.denoiser);
a UNet's "visual tokens" are its latent cells (patch size 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from atelier.model.denoiser import DenoiserConfig, build


@dataclass(frozen=True)
class ModelInfo:
    parameters: int
    memory_parameters: int   # value slots of the memory layers, read sparsely
    flops_per_sample: int    # one forward pass
    latent_side: int
    frames: int
    text_tokens: int
    visual_tokens: int

    @property
    def dense_parameters(self) -> int:
        return self.parameters - self.memory_parameters


def model_info(config: DenoiserConfig, latent_side: int | None = None, frames: int = 1,
               text_tokens: int = 32) -> ModelInfo:
    side = latent_side or config.sample_latent
    with torch.device("meta"):
        model = build(config)   # a transformer or a UNet (atelier.model.denoiser)
        x = torch.empty(1, frames, config.latent_channels, side, side)
        t = torch.empty(1)
        tokens = torch.empty(1, text_tokens, config.text_dim)
        mask = torch.ones(1, text_tokens, dtype=torch.bool)
        pooled = torch.empty(1, config.text_dim)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x, t, tokens, mask, pooled)
    return ModelInfo(
        parameters=sum(p.numel() for p in model.parameters()),
        memory_parameters=sum(p.numel() for p in model.memory_value_parameters()),
        flops_per_sample=counter.get_total_flops(),
        latent_side=side, frames=frames, text_tokens=text_tokens,
        visual_tokens=frames * (side // config.patch_size) ** 2,
    )


def format_info(name: str, info: ModelInfo) -> str:
    return (f"{name:6s} {info.parameters / 1e6:12,.1f}M params ({info.dense_parameters / 1e6:,.1f}M dense, "
            f"{info.memory_parameters / 1e6:,.1f}M memory values)  "
            f"{info.flops_per_sample / 1e9:10,.2f} GFLOP/sample forward "
            f"({info.frames}x{info.latent_side}x{info.latent_side} latents = {info.visual_tokens} visual + "
            f"{info.text_tokens} text tokens)")
