"""The denoiser a sampler calls: the model, its conditioning and classifier-free guidance.

Kept apart from the samplers (as in k-diffusion) so every sampler works with every task. Two
guidance scales, one for the text and one for the context (InstructPix2Pix, Brooks et al. 2023;
HiDream-E1 uses text 5 and image 4): v = v(-,-) + s_ctx (v(ctx,-) - v(-,-)) + s_txt (v(ctx,txt) - v(ctx,-)).
All passes run as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from atelier.flow.objective import frame_times, with_known


@dataclass
class Conditioning:
    """What the canvas is conditioned on, batched like the canvas."""
    text_tokens: torch.Tensor                 # [B, L, text_dim]
    text_mask: torch.Tensor                   # [B, L] bool
    text_pooled: torch.Tensor                 # [B, text_dim]
    keep_mask: torch.Tensor | None = None     # [B, F, 1, h, w], 1 = given
    context: torch.Tensor | None = None       # [B, F, C, h, w], the given latents
    camera: torch.Tensor | None = None        # [B, F, camera_dim]


class GuidedDenoiser:
    def __init__(self, model, cond: Conditioning, text_scale: float = 1.0, context_scale: float = 1.0):
        self.model, self.cond = model, cond
        self.text_scale, self.context_scale = text_scale, context_scale
        self.has_context = cond.keep_mask is not None and cond.context is not None

    @property
    def passes(self) -> int:
        """Model evaluations per call: 1, 2 (text guidance) or 3 (text and context guidance)."""
        if self.has_context and self.context_scale != 1.0:
            return 3
        return 1 if self.text_scale == 1.0 else 2

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Guided velocity of the canvas x [B, F, C, h, w] at times t [B]."""
        cond, batch, frames = self.cond, x.shape[0], x.shape[1]
        x = with_known(x, cond.keep_mask, cond.context)
        t_frames = frame_times(t, cond.keep_mask, frames)
        # Each pass: (drop the text?, drop the context?), in the order of the formula above.
        passes = {1: [(False, False)], 2: [(True, False), (False, False)],
                  3: [(True, True), (True, False), (False, False)]}[self.passes]
        repeat = len(passes)
        drop_text = torch.tensor([d for d, _ in passes], device=x.device).repeat_interleave(batch)
        keep_mask = context = None
        if self.has_context:
            with_context = torch.tensor([not d for _, d in passes], device=x.device).repeat_interleave(batch)
            keep_mask = cond.keep_mask.repeat(repeat, 1, 1, 1, 1) * with_context[:, None, None, None, None]
            context = cond.context.repeat(repeat, 1, 1, 1, 1)
            t_frames = torch.where(with_context[:, None], t_frames.repeat(repeat, 1),
                                   t.reshape(batch, -1).expand(batch, frames).repeat(repeat, 1))
        else:
            t_frames = t_frames.repeat(repeat, 1)
        camera = None if cond.camera is None else cond.camera.repeat(repeat, 1, 1)
        velocity = self.model(x.repeat(repeat, 1, 1, 1, 1), t_frames, cond.text_tokens.repeat(repeat, 1, 1),
                              cond.text_mask.repeat(repeat, 1), cond.text_pooled.repeat(repeat, 1),
                              keep_mask=keep_mask, context=context, camera=camera, drop_text=drop_text)
        parts = velocity.chunk(repeat)
        if repeat == 1:
            return parts[0]
        if repeat == 2:
            unconditional, conditional = parts
            return unconditional + self.text_scale * (conditional - unconditional)
        neither, context_only, both = parts
        return neither + self.context_scale * (context_only - neither) + self.text_scale * (both - context_only)
