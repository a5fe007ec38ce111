"""Sample latents from text: the one function the trainer's sample grids and the pipeline share."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atelier.flow.guidance import Conditioning, GuidedDenoiser
from atelier.flow.objective import timestep_shift
from atelier.flow.samplers import Callback, get_sampler, initial_noise, time_grid


@torch.no_grad()
def generate_latents(model, text, seeds: Sequence[int], latent_shape: Sequence[int], steps: int = 20,
                     sampler: str = "heun", text_scale: float = 4.0, context_scale: float = 1.0,
                     keep_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                     camera: torch.Tensor | None = None, callback: Callback | None = None,
                     progress: bool = False) -> torch.Tensor:
    """Latents [len(seeds), F, C, h, w] for `text` (anything with .tokens, .mask and .pooled, one
    row per seed), integrated from noise with `sampler` in `steps` steps; latent_shape is (F, C, h, w).
    The timestep shift follows the canvas size as in training."""
    parameter = next(model.parameters())
    frames, _, height, width = latent_shape
    patch = model.config.patch_size
    shift = timestep_shift(frames * (height // patch) * (width // patch), model.config.base_tokens)
    cond = Conditioning(text.tokens.to(parameter.device), text.mask.to(parameter.device),
                        text.pooled.to(parameter.device), keep_mask=keep_mask, context=context, camera=camera)
    noise = initial_noise(latent_shape, seeds, device=parameter.device)
    denoiser = GuidedDenoiser(model, cond, text_scale=text_scale, context_scale=context_scale)
    latents = get_sampler(sampler)(denoiser, noise, time_grid(steps, shift, device=parameter.device),
                                   callback=callback, progress=progress)
    if keep_mask is not None and context is not None:
        latents = torch.where(keep_mask >= 0.5, context, latents)
    return latents
