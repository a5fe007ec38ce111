"""From examples to what the loss takes: latents, keep-masks, text and the step's random draws.

Every random choice about sample i (its task, its edit region, its timestep and noise) depends only
on (run seed, i), so a sample is treated the same on any rank, in any batch split, and after a
resume. Tasks and flow draws come from a counter-based generator (atelier.flow.counter_rng), a few
tensor ops for the whole batch; an edit sample's region is drawn by a numpy generator seeded by
(seed, i), as its shapes are drawn with PIL.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from atelier.flow.counter_rng import uniform
from atelier.flow.objective import FlowDraws, draw_per_sample, keep_mask
from atelier.train.config import MODALITY_TASKS, TrainConfig
from atelier.train.data import Example
from atelier.train.masks import edit_region

REGION, STEP = 1, 2  # purposes of a numpy generator: a sample's edit region, a step's modality


@dataclass
class TrainingBatch:
    latents: torch.Tensor      # [B, F, C, h, w]; F = 1 for images
    keep_mask: torch.Tensor    # [B, F, 1, h, w]; all zero for text-to-image, -video and -3D samples
    text: object               # atelier.text.encoder.TextBatch
    draws: FlowDraws
    tasks: list[str]
    camera: torch.Tensor | None = None  # [B, F, camera_dim] for views


@dataclass
class PreparedBatch:
    """The host's share of a batch: everything up to the tokenizer's input, before any transfer."""
    images: torch.Tensor | None   # [B, (F,) H, W, 3] uint8; None when the latents come from a cache
    keep_mask: torch.Tensor       # [B, F, 1, h, w] float32
    draws: FlowDraws              # made on the training device
    tasks: list[str]
    camera: torch.Tensor | None   # [B, F, camera_dim] for views


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


def choose_tasks(seed: int, indices: list[int], weights: dict[str, float]) -> list[str]:
    """Each sample's task, drawn by weight from one counter-based uniform per sample."""
    names = sorted(weights)
    cumulative = torch.tensor([weights[name] for name in names], dtype=torch.float64).cumsum(0)   # [T]
    cumulative = cumulative / cumulative[-1]                    # ends at exactly 1, above every uniform
    coins = uniform(seed, "task", torch.tensor(indices, dtype=torch.int64), 1)[:, 0].double()  # [B] in [0, 1)
    return [names[k] for k in torch.searchsorted(cumulative, coins, right=True).tolist()]


def caption_precision(precision: str, device: torch.device | str) -> str:
    """The caption encoder's precision (atelier.text.cache.TextCache) for a run trained at `precision`:
    bf16 autocast when the run trains in bf16 on a device with native bf16 matmuls (2 to 2.5x the captions
    per second on an AMX CPU; states within cosine 0.999 of fp32), else fp32, so an fp32 run stays fp32
    throughout and its data-parallel and single-process runs keep matching to float noise."""
    from atelier.text.encoder import fast_bf16

    return "bf16" if precision == "bf16" and fast_bf16(device) else "fp32"


def to_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 [H, W, 3] images -> float [B, 3, H, W] in [-1, 1]; [F, H, W, 3] clips -> [B, F, 3, H, W]."""
    return pixels_of(torch.from_numpy(np.stack(images)))


def pixels_of(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1], on the images' device."""
    return images.movedim(-1, -3).float().div(127.5).sub(1)


def prepare(examples: list[Example], indices: list[int], config: TrainConfig, tokenizer_config,
            device: torch.device | str = "cpu", with_images: bool = True) -> PreparedBatch:
    """Tasks, keep-masks and stacked images on the host, and the flow draws on `device`."""
    factor = tokenizer_config.downsample
    frames = examples[0].image.shape[0] if examples[0].image.ndim == 4 else 1
    modality = "image" if frames == 1 and examples[0].image.ndim == 3 else (
        "views" if examples[0].cameras is not None else "clip")
    tasks = choose_tasks(config.seed, indices, {task: config.tasks.get(task, 0.0) for task in MODALITY_TASKS[modality]})
    side = examples[0].image.shape[-2] // factor
    keep = torch.zeros(len(examples), frames, 1, side, side)                                # [B, F, 1, h, w]
    keep[[row for row, task in enumerate(tasks) if task in ("image_to_video", "image_to_3d")], 0] = 1.0  # frame 0 given
    for row, (example, index, task) in enumerate(zip(examples, indices, tasks)):
        if task == "edit":
            regions = config.regions if example.object_masks is not None else {
                name: weight for name, weight in config.regions.items() if name not in ("background", "objects")
            } or {"box": 1.0}
            rng = np.random.default_rng(sample_seed(config.seed, index, REGION))
            region = edit_region(choose(rng, regions), rng, example.image.shape[0], example.object_masks)
            keep[row, 0, 0] = torch.from_numpy(keep_mask(region, factor))
    draws = draw_per_sample((frames, tokenizer_config.latent_channels, side, side), config.seed, indices, device)
    images = torch.from_numpy(np.stack([e.image for e in examples])) if with_images else None  # [B, (F,) H, W, 3]
    camera = None if modality != "views" else torch.from_numpy(np.stack([e.cameras for e in examples]))
    return PreparedBatch(images, keep, draws, tasks, camera)


def assemble(examples: list[Example], indices: list[int], config: TrainConfig, tokenizer, text_cache,
             device: torch.device | str = "cpu", latent_cache: dict[str, torch.Tensor] | None = None,
             section: Callable[[str], AbstractContextManager] = nullcontext) -> TrainingBatch:
    """The batch on `device`. Each stage runs inside `section(name)`: "data", "transfer", "tokenizer
    encode", "caption encode" (the training benchmark times them; by default nothing happens)."""
    with section("data"):
        prepared = prepare(examples, indices, config, tokenizer.config, device, with_images=latent_cache is None)
    with section("transfer"):
        images, keep_masks, camera = (None if tensor is None else tensor.to(device)
                                      for tensor in (prepared.images, prepared.keep_mask, prepared.camera))
    with section("tokenizer encode"):
        if latent_cache is None:
            with torch.no_grad():
                latents = tokenizer.encode(pixels_of(images))                                 # [B, (F,) C, h, w]
        else:
            latents = encode_cached(examples, tokenizer, device, latent_cache)               # [B, C, h, w]
        latents = latents if latents.dim() == 5 else latents[:, None]                        # [B, F, C, h, w]
    with section("caption encode"):
        text = text_cache.encode([e.caption for e in examples]).to(device)
    return TrainingBatch(latents, keep_masks, text, prepared.draws, prepared.tasks, camera)


@torch.no_grad()
def encode_cached(examples: list[Example], tokenizer, device: torch.device | str,
                  latent_cache: dict[str, torch.Tensor]) -> torch.Tensor:
    """Latents [B, C, h, w], each example of a finite source encoded once."""
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
