"""The tokenizer's training loss and its quality measure.

Loss = L1 + MSE on [-1, 1] images. MSE is what PSNR, the bar, measures; L1 keeps a useful
gradient once errors are small (MSE's vanishes as the error does), which sharpens the flat
colours and hard edges the world draws (Zhao et al. 2017, "Loss functions for image
restoration with neural networks", found L1-trained networks beat L2-trained ones even on L2).

Measured caveat: starting from the PCA shortcut (atelier.tokenizer.shortcut) most pixels are
already within a fraction of a level, and L1's gradient there is sign noise (more so under
bf16 autocast). In the first 15 steps of the cot-4x model the decoder's output layer grew
three times faster under plain MSE than under L1 + MSE; the 13-minute cot-4x run with L1 + MSE
never left the linear codec's plateau. Plain MSE (or Charbonnier with a small epsilon) is the
first thing to try next; it was not given a full run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_PSNR = 100.0  # a perfect reconstruction counts as this, not infinity


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    reconstruction = reconstruction.float()  # [B, 3, H, W]
    return F.l1_loss(reconstruction, target) + F.mse_loss(reconstruction, target)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> the uint8 image a user would save (rounded, clamped)."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def psnr_per_image(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image [B, ...] on the 0..255 scale, both given as uint8 (or [-1, 1] floats,
    which are rounded to uint8 first): the quality of the picture a user saves, not of raw floats."""
    a, b = (to_uint8(x) if x.is_floating_point() else x for x in (reconstruction, target))
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(dim=1)  # [B]
    psnr = 10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-12))  # [B]
    return psnr.clamp(max=MAX_PSNR)
