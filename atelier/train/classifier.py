"""Training the world classifier (atelier.evaluate.classifier), the network whose features the
fidelity metric compares: its targets (what each head and each cell should answer), its loss,
held-out accuracy, and `train_classifier`, the one entry point (`atelier train classifier -o DIR
--minutes N`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from atelier.evaluate.classifier import CELL_HEADS, HEADS, Classifier, ClassifierConfig, Head
from atelier.hardware import hardware
from atelier.train.wallclock import clock_rate, round_to_fp16
from atelier.world import vocab
from atelier.world.batches import AUGMENT_BLUR, AUGMENT_JPEG, AUGMENT_NOISE, AUGMENT_SHARE, augment, world_batch
from atelier.world.images.scene import Scene

CELL_FACTS = {"shapes": "shape", "colours": "colour", "sizes": "size", "textures": "texture"}  # SceneObject fields
CELL_COVERAGE = 0.25  # a cell belongs to the object covering at least this share of it
# Most cells hold no object; at full weight "none everywhere" is a minimum the network takes
# hundreds of steps to leave (measured: object cells' colour accuracy 0.04 after 60 steps at
# weight 1, 0.81 at weight 0.1), the imbalance focal loss answers in CenterNet.
CELL_NONE_WEIGHT = 0.1


def targets(scenes: Sequence[Scene], heads: tuple[Head, ...] = HEADS) -> dict[str, np.ndarray]:
    """What each head should answer for each scene: multi-label heads a [B, labels] 0/1 array,
    one-of heads a [B] array of label indices."""
    facts: dict[str, Callable[[Scene], list[str]]] = {
        "shapes": lambda s: [o.shape for o in s.objects],
        "colours": lambda s: [o.colour for o in s.objects],
        "sizes": lambda s: [o.size for o in s.objects],
        "textures": lambda s: [o.texture for o in s.objects],
        "regions": lambda s: [vocab.REGIONS[o.region] for o in s.objects],
        "background": lambda s: [s.background.kind],
        "background_colours": lambda s: list(s.background.colours),
        "count": lambda s: [str(len(s.objects))],
    }
    out = {}
    for head in heads:
        if head.name not in facts:
            raise ValueError(f"no scene fact answers head {head.name!r}; known heads: {sorted(facts)}")
        index = {label: i for i, label in enumerate(head.labels)}
        answers = [[index[f] for f in facts[head.name](scene)] for scene in scenes]
        if head.multi:
            array = np.zeros((len(scenes), len(head.labels)), dtype=np.float32)
            for row, found in enumerate(answers):
                array[row, found] = 1.0
        else:
            array = np.array([found[0] for found in answers], dtype=np.int64)
        out[head.name] = array
    return out


def cell_targets(scenes: Sequence[Scene], grid: int) -> np.ndarray:
    """Per-cell answers [B, len(CELL_HEADS), grid, grid] (int64): for each cell of a grid x grid
    split of the image, the label index of the object covering most of it (at least
    CELL_COVERAGE), or len(labels) for none."""
    from atelier.world.images.render import object_masks

    out = np.empty((len(scenes), len(CELL_HEADS), grid, grid), dtype=np.int64)
    for row, scene in enumerate(scenes):
        side = scene.size // grid
        if side * grid != scene.size:
            raise ValueError(f"a {scene.size} px scene does not split into {grid} x {grid} cells")
        for h, head in enumerate(CELL_HEADS):
            out[row, h] = len(head.labels)
        if not scene.objects:
            continue
        coverage = object_masks(scene).reshape(len(scene.objects), grid, side, grid, side).mean(axis=(2, 4))
        owner = coverage.argmax(axis=0)  # [grid, grid]
        covered = coverage.max(axis=0) >= CELL_COVERAGE
        for h, head in enumerate(CELL_HEADS):
            index = {label: i for i, label in enumerate(head.labels)}
            labels = np.array([index[getattr(o, CELL_FACTS[head.name])] for o in scene.objects])
            out[row, h][covered] = labels[owner[covered]]
    return out


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [B, 3, H, W] in [-1, 1]


def _loss(model: Classifier, logits: torch.Tensor, truth: dict[str, torch.Tensor],
          cell_logits: torch.Tensor | None = None, cells: torch.Tensor | None = None) -> torch.Tensor:
    import torch.nn.functional as F

    total = logits.new_zeros(())
    if cell_logits is not None:
        blocks = cell_logits.split([len(h.labels) + 1 for h in CELL_HEADS], dim=1)
        for h, block in enumerate(blocks):
            weight = block.new_ones(block.shape[1])
            weight[-1] = CELL_NONE_WEIGHT
            total = total + F.cross_entropy(block, cells[:, h], weight=weight)
    for head, block in zip(model.heads, model.split_logits(logits).values()):
        if head.multi:
            total = total + F.binary_cross_entropy_with_logits(block, truth[head.name])
        else:
            total = total + F.cross_entropy(block, truth[head.name])
    return total


@torch.no_grad()
def accuracy(model: Classifier, images: np.ndarray, scenes: Sequence[Scene], batch: int = 256) -> dict[str, dict]:
    """Held-out accuracy per head: multi-label heads give the share of correct (image, label)
    decisions at p = 0.5 ("labels") and of images with every label right ("exact"); one-of heads
    the share of images whose top label is right ("accuracy")."""
    model.eval()
    truth = targets(scenes, model.heads)
    blocks: dict[str, list[np.ndarray]] = {h.name: [] for h in model.heads}
    for start in range(0, len(images), batch):
        _, logits = model(_to_tensor(images[start:start + batch]))
        for name, block in model.split_logits(logits).items():
            blocks[name].append(block.numpy())
    out = {}
    for head in model.heads:
        scores = np.concatenate(blocks[head.name])
        if head.multi:
            right = (scores > 0) == (truth[head.name] > 0.5)
            out[head.name] = {"labels": round(float(right.mean()), 4), "exact": round(float(right.all(1).mean()), 4)}
        else:
            out[head.name] = {"accuracy": round(float((scores.argmax(1) == truth[head.name]).mean()), 4)}
    return out


def train_classifier(output: Path, minutes: float, seed: int = 0, batch: int = 64, threads: int = 2,
                     log: Callable[[str], None] = print, lr: float = 3e-3, weight_decay: float = 0.05,
                     holdout: int = 2000, config: ClassifierConfig | None = None) -> dict:
    """Train the world classifier for `minutes` of wall clock and write it to `output`: the one
    entry point (`atelier train classifier -o DIR --minutes N`).

    Batch i holds samples i*batch.. of the training stream (seed, split "train"), rendered fresh,
    so no image is seen twice. The learning rate warms up over the first 3% of the budget and then
    follows a cosine to zero at its end, scheduled on elapsed time rather than steps, so a run
    of any length ends annealed (the "cramming" recipe, Geiping & Goldstein 2022). The weights are
    rounded to fp16 (as stored) before the held-out measurement: the figures are the shipped
    model's. Held-out sets: `holdout` samples of the training split drawn from seed + 1, and as
    many of the whole world (split "all", which shows the held-out pairs, counts and relations)
    from seed + 2. Returns the record written into config.json.

    On a machine shared with other work, pass threads=1: two torch threads stall whenever a
    neighbour holds a core (a step measured 10x slower), one thread does not.
    """
    if not isinstance(minutes, int | float) or not minutes > 0 or not math.isfinite(minutes):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    for name, value in (("batch", batch), ("threads", threads), ("holdout", holdout)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        config = config or ClassifierConfig()
        model = Classifier(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        size, budget = config.image_size, minutes * 60
        log(f"classifier: {sum(p.numel() for p in model.parameters()):,} parameters, {minutes:g} min budget, "
            f"batch {batch}, {threads} torch thread{'s' if threads > 1 else ''}")
        began = time.perf_counter()
        step, losses, curve, last_log = 0, [], [], began
        while (elapsed := time.perf_counter() - began) < budget:
            fraction = elapsed / budget
            rate = clock_rate(lr, fraction)
            for group in optimizer.param_groups:
                group["lr"] = rate
            images, scenes = world_batch(seed, step * batch, batch, size)
            images = augment(images, np.random.default_rng((seed, step)))
            truth = {name: torch.from_numpy(array) for name, array in targets(scenes, model.heads).items()}
            model.train()
            if config.cells:
                _, logits, cell_logits = model(_to_tensor(images), cells=True)
                loss = _loss(model, logits, truth, cell_logits, torch.from_numpy(cell_targets(scenes, model.grid)))
            else:
                _, logits = model(_to_tensor(images))
                loss = _loss(model, logits, truth)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if time.perf_counter() - last_log >= 30 or step == 1:
                last_log = time.perf_counter()
                mean = float(np.mean(losses[-20:]))
                curve.append({"step": step, "seconds": round(last_log - began, 1), "loss": round(mean, 4)})
                log(f"step {step:>5}  images {step * batch:>7,}  loss {mean:.4f}  lr {rate:.2e}  "
                    f"{last_log - began:>6.0f} s")
        seconds = time.perf_counter() - began
        round_to_fp16(model)  # measure exactly what is stored
        held_out = {
            f"train split, seed {seed + 1}": accuracy(model, *world_batch(seed + 1, 0, holdout, size, "train")),
            f"all split, seed {seed + 2}": accuracy(model, *world_batch(seed + 2, 0, holdout, size, "all")),
        }
        record = {
            "seed": seed, "batch": batch, "steps": step, "images_seen": step * batch,
            "minutes_budget": minutes, "seconds": round(seconds, 1), "threads": threads,
            "lr": lr, "weight_decay": weight_decay, "optimizer": "AdamW, warmup 3% then cosine on wall clock",
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None, "curve": curve,
            "augment": {"share": AUGMENT_SHARE, "blur_sigma": list(AUGMENT_BLUR), "noise_std": list(AUGMENT_NOISE),
                        "jpeg_quality": list(AUGMENT_JPEG)},
            "cell_none_weight": CELL_NONE_WEIGHT if config.cells else None,
            "holdout_images": holdout, "torch": torch.__version__,
            "hardware": hardware(threads),
        }
        model.save(output, {"training": record, "accuracy": held_out})
        log(f"wrote {output}: {step} steps, {step * batch:,} images in {seconds:.0f} s")
        for name, figures in held_out.items():
            log(f"  held out ({name}): " + ", ".join(f"{head} {' / '.join(f'{v:.3f}' for v in acc.values())}"
                                                    for head, acc in figures.items()))
        return {"training": record, "accuracy": held_out}
    finally:
        torch.set_num_threads(previous_threads)
