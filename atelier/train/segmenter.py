"""Training the segmenter on the world's exact object masks, on a wall-clock budget.

    atelier train segmenter -o atelier/weights/segmenter --minutes 12 --threads 1

Every batch is rendered fresh from the training stream (seed, split "train"), so no image is
seen twice, with the classifier's mild degradations (blur, noise, JPEG; `augment`) so the masks
hold on images that are not perfectly flat. A share of the batches is rendered at larger sides
(up to twice `size`) and a share cropped to non-square windows that cut objects at the frame, so
the net works on any image at the working resolutions `atelier.segment.masks` runs it at. The
loss is binary cross-entropy plus soft dice (Milletari et al. 2016): cross-entropy alone is
dominated by the background (objects cover about 6% of a world image), dice weighs the object
pixels as IoU does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from atelier.hardware import hardware
from atelier.segment.evaluate import format_iou, subject_iou
from atelier.segment.model import Segmenter, SegmenterConfig
from atelier.train.wallclock import clock_rate, round_to_fp16
from atelier.world.batches import augment, world_batch
from atelier.world.images.render import object_masks
from atelier.world.images.scene import MAX_SIZE, check_size

# Sides a step renders at, as multiples of `size`, and how often; a step at a larger side holds
# proportionally fewer images (batch x (size / side)^2), so every step costs about the same.
# Smaller sides are left out: measured over 12-minute runs, also drawing half and three-quarter
# sides (upsampled, as inference upsamples small images, with soft truth) gave mean IoU 0.893 on
# 32 px images against 0.882 without, the same at 48 px (0.931, 0.930) and 0.959 at 64 against
# 0.961: run-to-run noise's size, not worth a second truth path.
SCALES = (1.0, 1.25, 1.5, 2.0)
SCALE_SHARES = (0.55, 0.15, 0.15, 0.15)
# A share of steps crops every image to one random window of 60..100% of each side (offsets per
# image): non-square inputs, and objects cut by the frame, as in a crop of a larger picture.
# Measured over 12-minute runs: IoU on 108 x 80 crops of 128 px images 0.956 with, 0.916
# without; on whole 64 px images 0.961 with, 0.968 without.
CROP_SHARE = 0.3
CROP_RANGE = (0.6, 1.0)
LOG_EVERY = 30  # seconds between progress lines


def soft_dice_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """1 - soft dice per image, averaged (Milletari et al. 2016), with add-one smoothing so an
    image without objects asks for an empty prediction rather than dividing by zero."""
    probability = torch.sigmoid(logits).flatten(1)  # [B, H*W]
    truth = truth.flatten(1)  # [B, H*W]
    overlap = (probability * truth).sum(1)  # [B]
    return (1 - (2 * overlap + 1) / (probability.sum(1) + truth.sum(1) + 1)).mean()


def segmentation_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy (per pixel) plus soft dice (per image); logits and truth [B, 1, H, W]."""
    return F.binary_cross_entropy_with_logits(logits, truth) + soft_dice_loss(logits, truth)


def training_batch(seed: int, start: int, count: int, side: int, rng: np.random.Generator):
    """Samples start..start+count of the training stream at `side` px, degraded by `augment`:
    images [count, 3, side, side] in [-1, 1] and subject masks [count, 1, side, side] float 0/1."""
    images, scenes = world_batch(seed, start, count, side, "train")
    images = augment(images, rng)
    truth = np.stack([object_masks(scene).any(axis=0) for scene in scenes])  # [count, side, side]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [count, 3, side, side]
    return x, torch.from_numpy(truth)[:, None].float()  # [count, 1, side, side]


def random_crop(images: torch.Tensor, truth: torch.Tensor, rng: np.random.Generator):
    """One window of CROP_RANGE of each side for the whole batch, at its own offset in each image:
    [B, C, S, S] -> [B, C, h, w] for both."""
    side = images.shape[-1]
    height, width = (int(rng.integers(round(CROP_RANGE[0] * side), side + 1)) for _ in range(2))
    tops = rng.integers(0, side - height + 1, len(images))
    lefts = rng.integers(0, side - width + 1, len(images))
    windows = [(slice(None), slice(top, top + height), slice(left, left + width)) for top, left in zip(tops, lefts)]
    return (torch.stack([image[w] for image, w in zip(images, windows)]),  # [B, 3, h, w]
            torch.stack([mask[w] for mask, w in zip(truth, windows)]))  # [B, 1, h, w]


def train_segmenter(output: Path, minutes: float, seed: int = 0, batch: int = 32, threads: int = 1, size: int = 64,
                    progress: Callable[[str], None] | None = None, holdout: int = 500, lr: float = 3e-3,
                    weight_decay: float = 0.01, config: SegmenterConfig | None = None,
                    command: str | None = None) -> dict:
    """Train a segmenter for `minutes` of wall clock and write it to `output`: the one entry point
    (`atelier train segmenter`). Returns the record written into config.json: `training`
    (steps, images, time, settings, `command`: how to make it again) and `evaluation` (subject IoU
    of the stored fp16 weights on `holdout` images of seed + 1's "all" split at `size`, never seen
    in training, and on a fifth as many at the larger training sides).

    AdamW; the learning rate warms up over the first 3% of the budget, then follows a cosine to
    zero at its end, scheduled on elapsed time, so a run of any length ends annealed. Seeds fix
    the initial weights, the images and their degradations; the number of steps follows the
    clock. On a shared machine keep threads=1: two torch threads stall when a neighbour holds a
    core, one does not.
    """
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not minutes > 0 \
            or not math.isfinite(minutes):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    for name, value in (("batch", batch), ("threads", threads), ("holdout", holdout)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    check_size(size)
    scaled = [min(MAX_SIZE, round(size * scale)) for scale in SCALES]
    sides = sorted(set(scaled))
    shares = [sum(share for side_, share in zip(scaled, SCALE_SHARES) if side_ == side) for side in sides]
    config = config or SegmenterConfig(min_side=size, max_side=max(sides))
    command = command or (f"atelier train segmenter -o {output} --minutes {minutes:g} --seed {seed} "
                          f"--threads {threads} --batch {batch}")
    say = progress or (lambda line: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = Segmenter(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        budget = minutes * 60
        say(f"segmenter: {sum(p.numel() for p in model.parameters()):,} parameters, {minutes:g} min budget, "
            f"batch {batch} at {size} px (rendered at {', '.join(map(str, sides))}), {threads} torch "
            f"thread{'s' if threads > 1 else ''}")
        began = time.perf_counter()
        step, images_seen, losses, curve, last_log = 0, 0, [], [], began
        model.train()
        while (elapsed := time.perf_counter() - began) < budget:
            fraction = elapsed / budget
            rate = clock_rate(lr, fraction)
            for group in optimizer.param_groups:
                group["lr"] = rate
            rng = np.random.default_rng((seed, step))
            side = int(rng.choice(sides, p=shares))
            count = max(1, round(batch * (size / side) ** 2))
            images, truth = training_batch(seed, images_seen, count, side, rng)
            if rng.random() < CROP_SHARE:
                images, truth = random_crop(images, truth, rng)
            loss = segmentation_loss(model(images), truth)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step, images_seen = step + 1, images_seen + count
            if time.perf_counter() - last_log >= LOG_EVERY or step == 1:
                last_log = time.perf_counter()
                mean = float(np.mean(losses[-50:]))
                curve.append({"step": step, "seconds": round(last_log - began, 1), "loss": round(mean, 4)})
                say(f"step {step:>5}  images {images_seen:>7,}  loss {mean:.4f}  lr {rate:.2e}  "
                    f"{last_log - began:>6.0f} s")
        seconds = time.perf_counter() - began
        model.eval()
        round_to_fp16(model)  # measure exactly what is stored
        held_out = subject_iou(model, holdout, seed + 1, size, "all")
        at_sides = {str(side): subject_iou(model, max(1, holdout // 5), seed + 1, side, "all")["mean"]
                    for side in sides if side != size}
        record = {
            "command": command, "seed": seed, "batch": batch, "size": size, "sides": sides,
            "side_shares": shares,
            "crop": {"share": CROP_SHARE, "range": list(CROP_RANGE)},
            "steps": step, "images_seen": images_seen, "minutes_budget": minutes,
            "minutes": round(seconds / 60, 2), "threads": threads, "lr": lr, "weight_decay": weight_decay,
            "optimizer": "AdamW, warmup 3% then cosine on wall clock", "loss": "BCE + soft dice",
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None, "curve": curve,
            "augment": "atelier.evaluate.classifier.augment (half the images: blur, noise or JPEG)",
            "torch": torch.__version__,
            "hardware": hardware(threads),
        }
        evaluation = {"held_out": held_out, "mean_at_sides": at_sides,
                      "note": f"held out: seed {seed + 1}, split 'all' (training: seed {seed}, split 'train'); "
                              f"mean_at_sides on {max(1, holdout // 5)} images each"}
        model.save_pretrained(output, {"training": record, "evaluation": evaluation})
        say(f"wrote {output}: {step} steps, {images_seen:,} images in {seconds / 60:.1f} min")
        say(format_iou(held_out))
        if at_sides:
            say("  mean IoU at the other training sides: " + ", ".join(f"{s} px {v:.4f}" for s, v in at_sides.items()))
        return {"training": record, "evaluation": evaluation}
    finally:
        torch.set_num_threads(previous_threads)
