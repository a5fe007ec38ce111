"""The rectified-flow objective (Liu et al. 2022; Esser et al. 2024, "Scaling Rectified Flow
Transformers", SD3).

x_t = (1 - t) x_0 + t noise, and the model predicts the velocity noise - x_0; t = 1 is pure noise.
Timesteps are logit-normal, shifted towards noise as the canvas grows (more tokens carry more
redundant signal, so the same t destroys less of the image). Known parts of the canvas (keep-mask
1) are given clean and excluded from the loss; a frame known entirely is given timestep 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from atelier.flow.counter_rng import normal, uniform


@dataclass(frozen=True)
class FlowConfig:
    logit_mean: float = 0.0
    logit_std: float = 1.0
    text_dropout: float = 0.1      # the caption is swapped for the null caption (classifier-free guidance)
    context_dropout: float = 0.1   # the keep-mask and context are zeroed (guidance on the context)


def timestep_shift(visual_tokens: int, base_tokens: int) -> float:
    """SD3's resolution shift: sqrt(tokens / base tokens), never below 1."""
    return max(1.0, math.sqrt(visual_tokens / base_tokens))


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(batch: int, shift: float, config: FlowConfig, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    normal = torch.randn(batch, generator=generator, device=device)
    return logit_normal_time(normal, shift, config)                                           # [B]


def logit_normal_time(normal: torch.Tensor, shift: float, config: FlowConfig) -> torch.Tensor:
    return shift_time(torch.sigmoid(config.logit_mean + config.logit_std * normal), shift)


def frame_times(t: torch.Tensor, keep_mask: torch.Tensor | None, frames: int) -> torch.Tensor:
    """Per-frame times [B, F]: t for frames to generate, 0 for frames the keep-mask gives whole."""
    t = t.reshape(t.shape[0], -1).expand(t.shape[0], frames)
    if keep_mask is None:
        return t
    whole = keep_mask.flatten(2).amin(dim=2) >= 1                                           # [B, F]
    return torch.where(whole, torch.zeros_like(t), t)


def keep_mask(region: np.ndarray, factor: int) -> np.ndarray:
    """The latent keep-mask [size/factor, size/factor] float32: 1 only where a latent cell lies
    wholly outside the region, so every pixel to generate is generated."""
    size = region.shape[-1]
    if region.shape[-2] % factor or size % factor:
        raise ValueError(f"region {region.shape} is not divisible by the latent factor {factor}")
    cells = region.reshape(*region.shape[:-2], region.shape[-2] // factor, factor, size // factor, factor)
    return (~cells.any(axis=(-1, -3))).astype(np.float32)


def with_known(x: torch.Tensor, keep_mask: torch.Tensor | None, context: torch.Tensor | None) -> torch.Tensor:
    """The canvas with its known part replaced by the clean context."""
    if keep_mask is None or context is None:
        return x
    return torch.where(keep_mask >= 0.5, context.to(x.dtype), x)


@dataclass(frozen=True)
class FlowDraws:
    """The random draws of one training step, one row per sample."""
    normal: torch.Tensor         # [B] standard normal, mapped to a logit-normal timestep
    noise: torch.Tensor          # [B, F, C, h, w]
    text_coin: torch.Tensor      # [B] uniform; the caption is dropped below text_dropout
    context_coin: torch.Tensor   # [B] uniform; the context is dropped below context_dropout

    def to(self, device: torch.device | str) -> FlowDraws:
        return FlowDraws(*(getattr(self, name).to(device) for name in ("normal", "noise", "text_coin", "context_coin")))


def draw(shape: tuple[int, ...], generator: torch.Generator | None = None,
         device: torch.device | str | None = None) -> FlowDraws:
    """Draws for a batch of `shape` [B, F, C, h, w] from one generator."""
    batch = shape[0]
    return FlowDraws(torch.randn(batch, generator=generator, device=device),
                     torch.randn(shape, generator=generator, device=device),
                     torch.rand(batch, generator=generator, device=device),
                     torch.rand(batch, generator=generator, device=device))


def draw_per_sample(shape: tuple[int, ...], seed: int, indices: Sequence[int],
                    device: torch.device | str | None = None) -> FlowDraws:
    """Draws for samples `indices` of a run, each of `shape` [F, C, h, w], made on `device`. Row i
    depends only on (seed, indices[i]) (a counter-based generator, atelier.flow.counter_rng): a sample
    gets the same timestep and noise whichever rank and batch it lands in (data-parallel runs then
    match single-process ones), and the whole batch is a few tensor ops."""
    rows = torch.as_tensor(indices, dtype=torch.int64, device=device)                       # [B]
    normals = normal(seed, "flow", rows, 1 + math.prod(shape))  # [B, 1 + F C h w]: the timestep's, then the noise
    coins = uniform(seed, "coins", rows, 2)                     # [B, 2]: text, context
    return FlowDraws(normals[:, 0], normals[:, 1:].reshape(len(rows), *shape), coins[:, 0], coins[:, 1])


def flow_loss(model, latents: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor,
              text_pooled: torch.Tensor, keep_mask: torch.Tensor | None = None, camera: torch.Tensor | None = None,
              config: FlowConfig = FlowConfig(), generator: torch.Generator | None = None,
              draws: FlowDraws | None = None) -> torch.Tensor:
    """Mean squared velocity error over the part of the canvas to generate, averaged per sample
    then over the batch (so shards of a batch average to the whole batch's loss).

    latents [B, F, C, h, w] are the clean canvas; keep_mask [B, F, 1, h, w] marks what is given
    (the context is the clean latents there). The random draws come from `draws`, or else from
    `generator`."""
    batch, frames, _, height, width = latents.shape
    device = latents.device
    draws = draw(tuple(latents.shape), generator, device) if draws is None else draws.to(device)
    model_config = getattr(model, "module", model).config       # DistributedDataParallel wraps the model
    patch = model_config.patch_size
    shift = timestep_shift(frames * (height // patch) * (width // patch), model_config.base_tokens)
    t = logit_normal_time(draws.normal, shift, config)                                      # [B]
    drop_text = draws.text_coin < config.text_dropout
    if keep_mask is not None:
        keep_context = draws.context_coin >= config.context_dropout
        keep_mask = keep_mask.to(latents.dtype) * keep_context[:, None, None, None, None]
    t_frames = frame_times(t, keep_mask, frames)                                           # [B, F]
    noise = draws.noise.to(latents.dtype)
    s = t_frames[:, :, None, None, None]
    noisy = with_known((1 - s) * latents + s * noise, keep_mask, latents)                  # [B, F, C, h, w]
    velocity = model(noisy, t_frames, text_tokens, text_mask, text_pooled, keep_mask=keep_mask,
                     context=latents if keep_mask is not None else None, camera=camera, drop_text=drop_text)
    error = (velocity.float() - (noise - latents).float()) ** 2                            # [B, F, C, h, w]
    if keep_mask is None:
        return error.mean()
    generate = (1 - keep_mask.float()).expand_as(error)
    per_sample = (error * generate).flatten(1).sum(1) / generate.flatten(1).sum(1).clamp_min(1.0)  # [B]
    return per_sample.mean()
