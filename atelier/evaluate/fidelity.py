"""Fidelity: the Frechet distance between generated images and true renders of the same
prompts, in the feature space of the world classifier (atelier.evaluate.classifier).

FID (Heusel et al. 2017) fits a Gaussian to each set's Inception pool3 features and measures
||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). Here the features are the world
classifier's pooled ones, and the reference is the ground truth of the image evaluation set:
truth renders of every prompt, drawn with seeds disjoint from the ones samples are scored on
(atelier.evaluate.suite.sample_seed), so the truth renders a scorer compares against the
reference give the floor: the distance of two samples of the same distribution, which is not
zero at finite N (the estimate is biased upwards, the more so the fewer images; Chong &
Forsyth 2020). Adherence asks "is what the prompt asks for there"; fidelity asks "does it look
like the world", and catches blur, noise, wrong textures or backgrounds the oracle forgives.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atelier.evaluate.suite import load_image, sample_paths, sample_seed
from atelier.world.images.evalset import EvalPrompt

# Reference image k of a prompt uses REFERENCE_SEED_BASE + sample_seed(prompt, k): far above any
# scored seed (prompt id * 1000 + k), so reference and scored draws never coincide.
REFERENCE_SEED_BASE = 1_000_000_000
REFERENCE_PER_PROMPT = 4
EPS = 1e-6  # added to both covariances' diagonals when their product is singular or has no finite root
IMAGINARY_TOLERANCE = 1e-3  # largest |imaginary part| of sqrtm's diagonal, relative to the trace scale


def resolve_classifier(classifier=None):
    """The classifier given, or the shipped atelier/weights/classifier loaded now (no cache: callers load
    it once and pass it on)."""
    from atelier.evaluate.classifier import Classifier

    return classifier if classifier is not None else Classifier.from_pretrained()


def features(images: Sequence, classifier=None, batch: int = 256) -> np.ndarray:
    """Pooled classifier features [N, D] (float64) of images: uint8 or float-in-0..1 arrays
    [H, W, 3] or PIL images, square, 32..256 px. `classifier` defaults to the shipped
    atelier/weights/classifier, loaded for this call."""
    import torch

    if batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch}")
    images = list(images)
    if not images:
        raise ValueError("no images given")
    model = resolve_classifier(classifier)
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            chunk = model.prepare(images[start:start + batch])
            out.append(model(chunk)[0].double().numpy())
    return np.concatenate(out)


def statistics(feats: np.ndarray, what: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of features [N, D] (N >= 2)."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"{what} must be an array [N, D] with N >= 2, got shape {feats.shape}")
    if not np.isfinite(feats).all():
        raise ValueError(f"{what} hold non-finite values")
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def frechet_distance_from_statistics(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray,
                                     cov_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b)): the Frechet (2-Wasserstein) distance of
    two Gaussians, with the safeguards of the reference FID code: EPS on the diagonals when the
    product is singular (fewer images than dimensions, or dead features) or its square root not
    finite, a negligible imaginary part (numerical) dropped, a large one an error."""
    from scipy import linalg

    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mu_a), len(mu_a)):
        raise ValueError(f"statistics do not match: means {mu_a.shape} and {mu_b.shape}, "
                         f"covariances {cov_a.shape} and {cov_b.shape}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all() or any(issubclass(w.category, linalg.LinAlgWarning) for w in caught):
        offset = np.eye(len(mu_a)) * EPS
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    scale = max(1.0, abs(float(np.trace(cov_a))), abs(float(np.trace(cov_b))))
    if np.iscomplexobj(root):
        imaginary = float(np.abs(np.diagonal(root).imag).max())
        if imaginary > IMAGINARY_TOLERANCE * scale:
            raise ValueError(f"the covariances' product has no real square root (imaginary part {imaginary:.3g}); "
                             f"the features are degenerate")
        root = root.real
    diff = mu_a - mu_b
    return float(max(0.0, diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Frechet distance of Gaussians fitted to two feature sets [N_a, D] and [N_b, D]."""
    mu_a, cov_a = statistics(features_a, "features_a")
    mu_b, cov_b = statistics(features_b, "features_b")
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sets differ in dimension: {mu_a.shape[0]} and {mu_b.shape[0]}")
    return frechet_distance_from_statistics(mu_a, cov_a, mu_b, cov_b)


def reference_seed(prompt: EvalPrompt, k: int) -> int:
    """The seed of reference image k of a prompt (never a scored sample's seed)."""
    return REFERENCE_SEED_BASE + sample_seed(prompt, k)


def reference_images(prompts: Sequence[EvalPrompt], per_prompt: int = REFERENCE_PER_PROMPT,
                     size: int = 64) -> list[np.ndarray]:
    """Truth renders of each prompt, per_prompt of them, at reference seeds."""
    from atelier.world.images.render import render
    from atelier.world.images.scene import realize

    if per_prompt < 1:
        raise ValueError(f"per_prompt must be a positive integer, got {per_prompt}")
    return [render(realize(p.query, random.Random(reference_seed(p, k)), size=size))
            for p in prompts for k in range(per_prompt)]


def reference_features(size: int = 64, per_prompt: int = REFERENCE_PER_PROMPT,
                       prompts: Sequence[EvalPrompt] | None = None, classifier=None) -> np.ndarray:
    """Features [len(prompts) * per_prompt, D] of the reference: truth renders of the image
    evaluation set (all of it unless `prompts` is given) at reference seeds."""
    from atelier.world.images.evalset import load

    return features(reference_images(load() if prompts is None else prompts, per_prompt, size),
                    resolve_classifier(classifier))


def fidelity(images: Sequence, classifier=None, reference: np.ndarray | None = None,
             prompts: Sequence[EvalPrompt] | None = None) -> float:
    """FD of images against the reference (features from `reference_features`, computed here for
    `prompts`, default the whole evaluation set, when not given). Lower is better; truth renders
    score the floor."""
    model = resolve_classifier(classifier)
    if reference is None:
        reference = reference_features(prompts=prompts, classifier=model)
    return frechet_distance(features(images, model), reference)


def folder_fidelity(folder: Path, prompts: Sequence[EvalPrompt], classifier=None) -> dict:
    """FD of the samples in DIR/<prompt id>/<k>.<ext> (atelier.evaluate.suite's layout) against
    the reference of the prompts that have samples, for `atelier eval`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder of samples")
    found = [(p, sample_paths(folder, p)) for p in prompts]
    found = [(p, paths) for p, paths in found if paths]
    if not found:
        raise ValueError(f"{folder}: no samples for any prompt; expected DIR/<prompt id>/<k>.png")
    model = resolve_classifier(classifier)
    images = [load_image(path) for _, paths in found for path in paths]
    if len(images) < 2:
        raise ValueError(f"{folder}: a Frechet distance needs at least 2 images, found {len(images)}")
    sides = {image.shape[0] for image in images}
    # The reference is rendered at the samples' side, so resizing to the classifier's input
    # treats both alike; mixed sides fall back to the world's 64 px.
    size = sides.pop() if len(sides) == 1 else 64
    sample_features = features(images, model)  # first: its errors name the offending image
    reference = reference_features(size, prompts=[p for p, _ in found], classifier=model)
    name = model.source or "classifier"
    return {"fd": frechet_distance(sample_features, reference), "images": len(images),
            "reference_images": len(reference), "size": size,
            "classifier": f"{Path(name).name}@{model.fingerprint}"}
