"""Sample latents from text: the one function the trainer's sample grids and the pipeline share."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atelier.flow.guidance import Conditioning, GuidedDenoiser
from atelier.flow.objective import timestep_shift
from atelier.flow.samplers import Callback, get_sampler, initial_noise, time_grid


@torch.no_grad()
def generate_latents(model, text, seeds: Sequence[int], latent_shape: Sequence[int], steps: int = 20,
                     sampler: str = "heun", text_scale: float | Sequence[float] = 4.0, context_scale: float = 1.0,
                     keep_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                     camera: torch.Tensor | None = None, callback: Callback | None = None,
                     progress: bool = False, negative=None, has_negative: Sequence[bool] | None = None,
                     unconditional: Sequence[bool] | None = None, init: torch.Tensor | None = None,
                     start: float = 1.0) -> torch.Tensor:
    """Latents [len(seeds), F, C, h, w] for `text` (anything with .tokens, .mask and .pooled, one
    row per seed; a TextBatch when `negative` is given), integrated from noise with `sampler` in
    `steps` steps; latent_shape is (F, C, h, w). The timestep shift follows the canvas size as in
    training. text_scale may differ per row; `negative` (one row per seed, used where has_negative)
    replaces the dropped text in guidance; rows marked `unconditional` ignore their text.

    With `init` (latents [len(seeds), F, C, h, w]) sampling starts part way, from init noised to
    the grid's first time, `start` before the shift (SDEdit, Meng et al. 2022): 1 ignores init,
    small values change it little."""
    parameter = next(model.parameters())
    device = parameter.device
    frames, _, height, width = latent_shape
    patch = model.config.patch_size
    shift = timestep_shift(frames * (height // patch) * (width // patch), model.config.base_tokens)
    negatives = {}
    if negative is not None and has_negative is not None and any(has_negative):
        length = max(text.tokens.shape[1], negative.tokens.shape[1])
        text, negative = text.pad_to(length), negative.pad_to(length)
        negatives = {"negative_tokens": negative.tokens.to(device), "negative_mask": negative.mask.to(device),
                     "negative_pooled": negative.pooled.to(device),
                     "has_negative": torch.tensor(list(has_negative), dtype=torch.bool, device=device)}
    tokens, mask, pooled = text.tokens, text.mask, text.pooled
    rows_without_text = None if unconditional is None else torch.tensor(list(unconditional), dtype=torch.bool,
                                                                        device=device)
    cond = Conditioning(tokens.to(device), mask.to(device), pooled.to(device), keep_mask=keep_mask, context=context,
                        camera=camera, unconditional=rows_without_text, **negatives)
    if not isinstance(text_scale, (int, float)):
        text_scale = torch.tensor([float(s) for s in text_scale], device=device)
    noise = initial_noise(latent_shape, seeds, device=device)
    times = time_grid(steps, shift, start=start, device=device)
    if init is not None:
        noise = (1 - times[0]) * init.to(device=device, dtype=noise.dtype) + times[0] * noise
    denoiser = GuidedDenoiser(model, cond, text_scale=text_scale, context_scale=context_scale)
    latents = get_sampler(sampler)(denoiser, noise, times, callback=callback, progress=progress)
    if keep_mask is not None and context is not None:
        latents = torch.where(keep_mask >= 0.5, context, latents)
    return latents

