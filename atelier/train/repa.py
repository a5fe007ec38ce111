"""Representation alignment (REPA; Yu et al. 2024, "Representation Alignment for Generation:
Training Diffusion Transformers Is Easier Than You Think").

An early block's visual tokens, through a small trainable MLP, are pulled towards a frozen
encoder's features of the clean image at the same positions (negative cosine similarity). The
paper reports DiT/SiT converging 17.5x faster with DINOv2 as the encoder. No pretrained encoder
can be downloaded here; the world classifier (atelier.evaluate.classifier, trained on exact
labels, every cell of its last feature map taught to name the object covering it) is a frozen
encoder with exactly the spatial facts a generator has to learn.

Training-only: the projector is saved in checkpoints beside the model, never in the exported
model folder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Projector(nn.Module):
    """REPA's three-layer SiLU MLP from the model's width to the encoder's channels."""

    def __init__(self, width: int, features: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or 4 * width
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, features))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens)


class Alignment:
    """Captures block `block`'s visual tokens during the model's forward pass (a forward hook)
    and scores them against the frozen encoder's feature map of the clean images."""

    def __init__(self, model: nn.Module, block: int, encoder: nn.Module, projector: nn.Module,
                 optimizer: torch.optim.Optimizer):
        blocks = model.blocks
        if not 0 <= block < len(blocks):
            raise ValueError(f"repa_block {block} is outside the model's {len(blocks)} blocks")
        self.encoder, self.projector, self.optimizer = encoder.eval().requires_grad_(False), projector, optimizer
        self.captured: torch.Tensor | None = None
        self.handle = blocks[block].register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs, outputs) -> None:
        self.captured = outputs[1]                                              # visual [B, F, N, D]

    @torch.no_grad()
    def targets(self, pixels: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The encoder's last feature map of clean images [B, 3, H, W] in [-1, 1], resized to the
        token grid: [B, grid_h * grid_w, C]."""
        side = self.encoder.config.image_size
        if pixels.shape[-1] != side or pixels.shape[-2] != side:
            pixels = F.interpolate(pixels, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        features = self.encoder.body(pixels.float())                           # [B, C, g, g]
        if features.shape[-2:] != grid:
            features = F.interpolate(features, size=grid, mode="bilinear", align_corners=False)
        return features.flatten(2).transpose(1, 2)                             # [B, N, C]

    def loss(self, pixels: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Negative mean cosine similarity over tokens: in [-1, 1], -1 when perfectly aligned."""
        if self.captured is None:
            raise RuntimeError("the aligned block did not run: call the model before Alignment.loss")
        visual, self.captured = self.captured, None
        if visual.shape[1] != 1:
            raise ValueError("representation alignment takes images (one frame), not clips or views")
        target = self.targets(pixels, grid)                                    # [B, N, C]
        projected = self.projector(visual[:, 0])                               # [B, N, C]
        return -F.cosine_similarity(projected.float(), target, dim=-1).mean()

    def state_dict(self) -> dict:
        return {"projector": getattr(self.projector, "module", self.projector).state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        getattr(self.projector, "module", self.projector).load_state_dict(state["projector"])
        self.optimizer.load_state_dict(state["optimizer"])

    def remove(self) -> None:
        self.handle.remove()
