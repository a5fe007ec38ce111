"""How well the segmenter finds the subject: IoU of its mask against the world's truth.

Truth is the union of the scene's object masks, each the pixels an object covers at least half
of (`atelier.world.images.render.object_masks`, the binarised alpha). The prediction is
`subject_mask`, the very call the pipeline makes, so the figures are what an edit gets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from atelier.segment.masks import subject_mask

if TYPE_CHECKING:
    from atelier.segment.model import Segmenter

TRUTH = "union of the scene's object masks, each pixel covered at least 0.5 (object_masks(scene).any(0))"
GOOD = 0.90  # the share of images at or above this IoU is reported


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty (nothing to find,
    nothing found), 0.0 when only one is."""
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def subject_iou(segmenter: Segmenter, count: int = 500, seed: int = 1, size: int = 64, split: str = "all") -> dict:
    """Subject IoU on `count` world images (samples 0.. of the stream `seed`, `split`) at `size` px:
    mean, median, 10th percentile, share of images at IoU >= 0.90, and the mean per object count.

    The defaults are held out from the shipped weights, which trained on seed 0's "train" split:
    seed 1 is another stream and "all" also shows the pairs, counts and relations training never
    saw."""
    from atelier.world.batches import world_batch
    from atelier.world.images.render import object_masks

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    images, scenes = world_batch(seed, 0, count, size, split)
    scores, objects = [], []
    for image, scene in zip(images, scenes):
        scores.append(iou(subject_mask(segmenter, image), object_masks(scene).any(axis=0)))
        objects.append(len(scene.objects))
    scores, objects = np.array(scores), np.array(objects)
    by_objects = {str(n): {"count": int((objects == n).sum()), "mean": round(float(scores[objects == n].mean()), 4)}
                  for n in sorted(set(objects.tolist()))}
    return {
        "mean": round(float(scores.mean()), 4),
        "median": round(float(np.median(scores)), 4),
        "p10": round(float(np.percentile(scores, 10)), 4),
        "share_at_least_0.90": round(float((scores >= GOOD).mean()), 4),
        "min": round(float(scores.min()), 4),
        "count": count, "seed": seed, "size": size, "split": split,
        "by_objects": by_objects,
        "truth": TRUTH,
    }


def format_iou(result: dict) -> str:
    """A small table of a subject_iou result."""
    lines = [f"subject IoU on {result['count']} world images ({result['size']} px, split {result['split']!r}, "
             f"seed {result['seed']})",
             f"  mean {result['mean']:.4f}   median {result['median']:.4f}   10th percentile {result['p10']:.4f}   "
             f"min {result['min']:.4f}",
             f"  share with IoU >= {GOOD:.2f}: {result['share_at_least_0.90']:.1%}",
             "  objects  images  mean IoU"]
    lines += [f"  {n:>7}  {row['count']:>6}  {row['mean']:.4f}" for n, row in result["by_objects"].items()]
    lines.append(f"  truth: {result['truth']}")
    return "\n".join(lines)
