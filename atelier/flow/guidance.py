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
    # A negative prompt takes the place of the dropped text in the guidance passes without text, on
    # the rows where has_negative is set; its tokens are padded to the same length as the prompt's.
    negative_tokens: torch.Tensor | None = None   # [B, L, text_dim]
    negative_mask: torch.Tensor | None = None     # [B, L] bool
    negative_pooled: torch.Tensor | None = None   # [B, text_dim]
    has_negative: torch.Tensor | None = None      # [B] bool
    unconditional: torch.Tensor | None = None     # [B] bool: rows with no prompt drop the text in every pass

    def text_for(self, drop: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens, mask, pooled, drop_text [B]) for a pass with or without the text."""
        batch = self.text_tokens.shape[0]
        device = self.text_tokens.device
        unconditional = torch.zeros(batch, dtype=torch.bool, device=device) if self.unconditional is None \
            else self.unconditional.to(device)
        if not drop:
            return self.text_tokens, self.text_mask, self.text_pooled, unconditional
        if self.has_negative is None or self.negative_tokens is None:
            return self.text_tokens, self.text_mask, self.text_pooled, torch.ones_like(unconditional)
        negative = self.has_negative.to(device)
        tokens = torch.where(negative[:, None, None], self.negative_tokens, self.text_tokens)
        mask = torch.where(negative[:, None], self.negative_mask, self.text_mask)
        pooled = torch.where(negative[:, None], self.negative_pooled, self.text_pooled)
        return tokens, mask, pooled, ~negative


class GuidedDenoiser:
    """text_scale is one number or one per row [B] (requests with different guidance share a batch)."""

    def __init__(self, model, cond: Conditioning, text_scale: float | torch.Tensor = 1.0, context_scale: float = 1.0):
        self.model, self.cond = model, cond
        self.text_scale, self.context_scale = text_scale, context_scale
        self.has_context = cond.keep_mask is not None and cond.context is not None

    @property
    def passes(self) -> int:
        """Model evaluations per call: 1, 2 (text guidance) or 3 (text and context guidance)."""
        if self.has_context and self.context_scale != 1.0:
            return 3
        return 1 if bool(torch.all(torch.as_tensor(self.text_scale) == 1.0)) else 2

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Guided velocity of the canvas x [B, F, C, h, w] at times t [B]."""
        cond, batch, frames = self.cond, x.shape[0], x.shape[1]
        x = with_known(x, cond.keep_mask, cond.context)
        t_frames = frame_times(t, cond.keep_mask, frames)
        # Each pass: (drop the text?, drop the context?), in the order of the formula above.
        passes = {1: [(False, False)], 2: [(True, False), (False, False)],
                  3: [(True, True), (True, False), (False, False)]}[self.passes]
        repeat = len(passes)
        texts = [cond.text_for(drop) for drop, _ in passes]
        tokens, mask, pooled, drop_text = (torch.cat([text[i] for text in texts]) for i in range(4))
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
        velocity = self.model(x.repeat(repeat, 1, 1, 1, 1), t_frames, tokens, mask, pooled,
                              keep_mask=keep_mask, context=context, camera=camera, drop_text=drop_text)
        parts = velocity.chunk(repeat)
        if repeat == 1:
            return parts[0]
        text_scale = torch.as_tensor(self.text_scale, dtype=x.dtype, device=x.device)
        text_scale = text_scale.reshape(-1, 1, 1, 1, 1) if text_scale.dim() else text_scale   # per row or one
        if repeat == 2:
            unconditional, conditional = parts
            return unconditional + text_scale * (conditional - unconditional)
        neither, context_only, both = parts
        return neither + self.context_scale * (context_only - neither) + text_scale * (both - context_only)
