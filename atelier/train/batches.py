"""From examples to what the loss takes: latents, keep-masks, text and the step's random draws.

Every random choice about sample i (its task, its edit region, its timestep and noise) is drawn
from a generator seeded by (run seed, i), so a sample is treated the same on any rank, in any
batch split, and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from atelier.flow.objective import FlowDraws, draw_per_sample, keep_mask
from atelier.train.config import MODALITY_TASKS, TrainConfig
from atelier.train.data import Example
from atelier.train.masks import edit_region

FLOW, CHOICES, STEP = 0, 1, 2  # purposes of a generator: a sample's draws, its task and region, a step's modality


@dataclass
class TrainingBatch:
    latents: torch.Tensor      # [B, F, C, h, w]; F = 1 for images
    keep_mask: torch.Tensor    # [B, F, 1, h, w]; all zero for text-to-image, -video and -3D samples
    text: object               # atelier.text.encoder.TextBatch
    draws: FlowDraws
    tasks: list[str]
    camera: torch.Tensor | None = None  # [B, F, camera_dim] for views


def sample_seed(seed: int, index: int, purpose: int) -> int:
    return (((seed * 4 + purpose) & 0x7FFFFF) << 40) | index


def rank_indices(step: int, batch: int, rank: int, world_size: int) -> list[int]:
    """Global sample indices of this rank's share of step `step`'s global batch."""
    if batch % world_size:
        raise ValueError(f"the global batch {batch} does not split evenly over {world_size} processes")
    share = batch // world_size
    start = step * batch + rank * share
    return list(range(start, start + share))


def choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = sorted(weights)
    probabilities = np.array([weights[name] for name in names], dtype=np.float64)
    return names[rng.choice(len(names), p=probabilities / probabilities.sum())]


def to_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 [H, W, 3] images -> float [B, 3, H, W] in [-1, 1]; [F, H, W, 3] clips -> [B, F, 3, H, W]."""
    return torch.from_numpy(np.stack(images)).movedim(-1, -3).float().div(127.5).sub(1)


def assemble(examples: list[Example], indices: list[int], config: TrainConfig, tokenizer, text_cache,
             device: torch.device | str = "cpu", latent_cache: dict[str, torch.Tensor] | None = None) -> TrainingBatch:
    factor = tokenizer.config.downsample
    frames = examples[0].image.shape[0] if examples[0].image.ndim == 4 else 1
    modality = "image" if frames == 1 and examples[0].image.ndim == 3 else (
        "views" if examples[0].cameras is not None else "clip")
    own_tasks = {task: config.tasks.get(task, 0.0) for task in MODALITY_TASKS[modality]}
    tasks, keeps = [], []
    for example, index in zip(examples, indices):
        rng = np.random.default_rng(sample_seed(config.seed, index, CHOICES))
        task = choose(rng, own_tasks)
        side = example.image.shape[-2] // factor
        keep = np.zeros((frames, side, side), dtype=np.float32)
        if task == "edit":
            regions = config.regions if example.object_masks is not None else {
                name: weight for name, weight in config.regions.items() if name not in ("background", "objects")
            } or {"box": 1.0}
            region = edit_region(choose(rng, regions), rng, example.image.shape[0], example.object_masks)
            keep[0] = keep_mask(region, factor)
        elif task in ("image_to_video", "image_to_3d"):
            keep[0] = 1.0                                   # the first frame or view is given whole
        tasks.append(task)
        keeps.append(keep)
    latents = encode_images(examples, tokenizer, device, latent_cache)                       # [B, (F,) C, h, w]
    latents = latents if latents.dim() == 5 else latents[:, None]                            # [B, F, C, h, w]
    keep_masks = torch.from_numpy(np.stack(keeps))[:, :, None].to(device)                  # [B, F, 1, h, w]
    text = text_cache.encode([e.caption for e in examples]).to(device)
    draws = draw_per_sample(tuple(latents.shape[1:]), [sample_seed(config.seed, i, FLOW) for i in indices])
    camera = None if modality != "views" else torch.from_numpy(np.stack([e.cameras for e in examples])).to(device)
    return TrainingBatch(latents, keep_masks, text, draws.to(device), tasks, camera)


@torch.no_grad()
def encode_images(examples: list[Example], tokenizer, device: torch.device | str,
                  latent_cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Latents [B, C, h, w]; with a cache, examples of a finite source are encoded once."""
    if latent_cache is None:
        return tokenizer.encode(to_pixels([e.image for e in examples]).to(device))
    missing = [e for e in examples if e.key is None or e.key not in latent_cache]
    if missing:
        fresh = tokenizer.encode(to_pixels([e.image for e in missing]).to(device)).cpu()
        for example, latent in zip(missing, fresh):
            if example.key is not None:
                latent_cache[example.key] = latent
        fresh_by_id = {id(e): latent for e, latent in zip(missing, fresh)}
    else:
        fresh_by_id = {}
    rows = [latent_cache[e.key] if id(e) not in fresh_by_id else fresh_by_id[id(e)] for e in examples]
    return torch.stack(rows).to(device)
