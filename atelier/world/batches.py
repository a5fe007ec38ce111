"""Batches of the world for the networks trained beside the model (the judge's classifier, the
subject segmenter): fresh renders of a world stream with their scenes, and the mild degradations
(blur, noise, JPEG) that keep those networks steady on images that are not perfectly flat."""

from __future__ import annotations

import numpy as np

from atelier.world.images.scene import Scene, sample_scene
from atelier.world.images.stream import scene_rng

# augment: the share of images degraded, and the ranges their degradations are drawn from
AUGMENT_SHARE = 0.5
AUGMENT_BLUR = (0.2, 1.0)  # Gaussian sigma in pixels at 64 px
AUGMENT_NOISE = (1 / 255, 10 / 255)  # Gaussian standard deviation, of the 0..1 range
AUGMENT_JPEG = (60, 96)  # quality, 4:4:4


def world_batch(seed: int, start: int, count: int, size: int = 64,
                split: str = "train") -> tuple[np.ndarray, list[Scene]]:
    """Samples start..start+count of the world stream (seed, split): images [count, size, size, 3]
    uint8 and their scenes. The scenes are make_sample's, drawn without its caption, which the
    classifier never reads and which costs about ten times the render."""
    from atelier.world.images.render import render

    scenes = [sample_scene(scene_rng(seed, index), size=size, split=split) for index in range(start, start + count)]
    return np.stack([render(scene) for scene in scenes]), scenes


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of a batch [B, H, W, 3] uint8 where each image, with probability AUGMENT_SHARE, suffers
    one mild degradation of random strength: Gaussian blur, Gaussian noise or JPEG (4:4:4).

    Without it the world's perfectly flat renders make any grain far from everything the network
    has seen: imperceptible noise (6/255) moved FD twice as far as a sigma-2 blur and twelve times
    as far as drawing every shape as a circle. Trained on mild degradations, the features hold
    still under what a viewer would not notice and move under what they would."""
    import io

    from PIL import Image
    from scipy.ndimage import gaussian_filter

    out = images.copy()
    side = images.shape[1]
    for i in np.flatnonzero(rng.random(len(images)) < AUGMENT_SHARE):
        kind = rng.integers(3)
        if kind == 0:
            sigma = rng.uniform(*AUGMENT_BLUR) * side / 64
            blurred = gaussian_filter(images[i].astype(np.float64), sigma=(sigma, sigma, 0))
            out[i] = np.clip(blurred + 0.5, 0, 255).astype(np.uint8)
        elif kind == 1:
            noisy = images[i] + rng.normal(0, rng.uniform(*AUGMENT_NOISE) * 255, images[i].shape)
            out[i] = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        else:
            buffer = io.BytesIO()
            Image.fromarray(images[i]).save(buffer, format="JPEG", quality=int(rng.integers(*AUGMENT_JPEG)),
                                            subsampling=0)
            out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out
