"""Fidelity: the Frechet distance formula, the shipped world classifier, the metric's ordering
of degradations, the training entry point and the model folder's errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from atelier.evaluate.classifier import DEFAULT_CLASSIFIER, Classifier, ClassifierConfig
from atelier.evaluate.fidelity import (
    features,
    folder_fidelity,
    frechet_distance,
    frechet_distance_from_statistics,
    reference_features,
    reference_seed,
)
from atelier.evaluate.fidelity_validation import heavy_blur
from atelier.evaluate.suite import sample_seed, truth_images
from atelier.evaluate.validate import blur
from atelier.folder import FolderError
from atelier.train.classifier import accuracy, train_classifier
from atelier.world.batches import world_batch
from atelier.world.images.evalset import load

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped():
    return Classifier.from_pretrained()


def _symmetric_root_trace(a, b):
    """Tr sqrt(A^1/2 B A^1/2), the same quantity as Tr sqrt(AB) by a route without sqrtm."""
    values, vectors = np.linalg.eigh(a)
    half = vectors @ np.diag(np.sqrt(values)) @ vectors.T
    return np.sqrt(np.clip(np.linalg.eigvalsh(half @ b @ half), 0, None)).sum()


def test_frechet_distance_closed_forms():
    # Diagonal covariances: |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2 = 5 + 1 + 1 + 0.
    fd = frechet_distance_from_statistics(np.zeros(3), np.diag([1.0, 4.0, 9.0]),
                                          np.array([1.0, 2.0, 0.0]), np.diag([4.0, 1.0, 9.0]))
    assert fd == pytest.approx(7.0, abs=1e-9)
    # Full covariances that do not commute.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    a, b = x @ x.T + np.eye(5), y @ y.T + np.eye(5)
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(a) + np.trace(b) - 2 * _symmetric_root_trace(a, b)
    assert frechet_distance_from_statistics(mu_a, a, mu_b, b) == pytest.approx(expected, rel=1e-8)
    # From samples: two Gaussians in 3-d, 20,000 draws each, land on the closed form.
    cov_a, cov_b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 9.0])
    sa = rng.multivariate_normal(np.zeros(3), cov_a, 20000)
    sb = rng.multivariate_normal([1.0, 2.0, 0.0], cov_b, 20000)
    assert frechet_distance(sa, sb) == pytest.approx(7.0, rel=0.05)
    # A set against itself is at zero, also with a singular covariance (fewer samples than dimensions).
    assert frechet_distance(sa, sa) < 1e-6
    few = rng.normal(size=(10, 40))
    assert 0 <= frechet_distance(few, few) < 1e-3
    with pytest.raises(ValueError, match="differ in dimension"):
        frechet_distance(sa, rng.normal(size=(10, 4)))
    with pytest.raises(ValueError, match=r"\[N, D\] with N >= 2"):
        frechet_distance(sa[:1], sa)


def test_shipped_classifier_knows_the_world(shipped):
    # 300 fresh samples of the whole world (held-out pairs included), from a seed training never used.
    figures = accuracy(shipped, *world_batch(seed=7, start=0, count=300, split="all"))
    # Measured on these 300: shapes 0.972 per label / 0.707 exact set, colours 0.991 / 0.900, background
    # 1.0, count 0.997. Predicting "absent" for every label scores 0.84 per label and 0 exact.
    assert figures["shapes"]["labels"] >= 0.95 and figures["shapes"]["exact"] >= 0.6
    assert figures["colours"]["labels"] >= 0.97 and figures["colours"]["exact"] >= 0.8
    assert figures["background"]["accuracy"] >= 0.97
    assert figures["count"]["accuracy"] >= 0.97
    config = json.loads((DEFAULT_CLASSIFIER / "config.json").read_text())
    assert config["training"]["images_seen"] > 0 and "accuracy" in config


def test_features_take_any_world_size_and_refuse_the_rest(shipped):
    image = truth_images(load()[0], 1, size=128)[0]
    feats = features([image, Image.fromarray(image), image[::2, ::2], image.astype(np.float64) / 255], shipped)
    assert feats.shape == (4, shipped.config.feature_dim)
    np.testing.assert_allclose(feats[0], feats[1], atol=1e-5)  # PIL or array alike
    with pytest.raises(ValueError, match="image 1: the classifier reads images of 32 to 256 pixels"):
        features([image, np.zeros((300, 300, 3), np.uint8)], shipped)
    with pytest.raises(ValueError, match="image 0: .*square"):
        features([np.zeros((64, 48, 3), np.uint8)], shipped)


def test_metric_orders_degradations(shipped):
    prompts = load()[::6]  # 108 prompts, 2 images each
    reference = reference_features(prompts=prompts, per_prompt=2, classifier=shipped)
    truth = [image for p in prompts for image in truth_images(p, 2)]
    rng = np.random.default_rng(0)
    fd = {
        "truth": frechet_distance(features(truth, shipped), reference),
        "blur": frechet_distance(features([blur(i) for i in truth], shipped), reference),
        "heavy blur": frechet_distance(features([heavy_blur(i) for i in truth], shipped), reference),
        "uniform noise": frechet_distance(
            features([rng.integers(0, 256, i.shape, dtype=np.uint8) for i in truth], shipped), reference),
    }
    # Measured: truth 99.8, blur 101.5, heavy blur 290.7, uniform noise 2852. At N = 216 the floor's
    # bias dominates (8.97 at N = 2592); the mild blur shows as a small difference on the same images.
    assert fd["truth"] < fd["blur"] < fd["heavy blur"] < fd["uniform noise"], fd
    assert fd["heavy blur"] > 2 * fd["truth"] and fd["uniform noise"] > 20 * fd["truth"], fd


def test_reference_seeds_never_meet_scored_seeds():
    prompts = load()
    scored = {sample_seed(p, k) for p in prompts for k in range(1000)}
    assert not scored & {reference_seed(p, k) for p in prompts for k in range(1000)}


def test_folder_fidelity_reads_the_suite_layout(tmp_path, shipped):
    prompts = load()[:12]
    for p in prompts:
        (tmp_path / p.id).mkdir()
        for k, image in enumerate(truth_images(p, 2)):
            Image.fromarray(image).save(tmp_path / p.id / f"{k}.png")
    result = folder_fidelity(tmp_path, prompts, classifier=shipped)
    assert result["images"] == 24 and result["reference_images"] == 48 and result["size"] == 64
    assert result["classifier"].endswith(shipped.fingerprint) and result["fd"] >= 0
    with pytest.raises(ValueError, match="no samples for any prompt"):
        folder_fidelity(tmp_path, load()[100:102], classifier=shipped)


@pytest.mark.slow
def test_tiny_training_writes_a_loadable_folder(tmp_path):
    out = tmp_path / "classifier"
    record = train_classifier(out, minutes=0.1, batch=32, threads=1, holdout=32, log=lambda line: None,
                              config=ClassifierConfig(widths=(8, 16)))
    assert record["training"]["steps"] >= 1 and set(record["accuracy"]) == {"train split, seed 1",
                                                                           "all split, seed 2"}
    model = Classifier.from_pretrained(out)
    assert model.config.widths == (8, 16)
    assert json.loads((out / "config.json").read_text())["training"]["images_seen"] == record["training"]["images_seen"]
    feats = features(world_batch(5, 0, 4)[0], model)
    assert feats.shape == (4, model.config.feature_dim) == (4, 32) and np.isfinite(feats).all()  # avg and max of 16
    with pytest.raises(ValueError, match="minutes must be a positive number"):
        train_classifier(out, minutes=0)


def test_bad_folders_fail_clearly(tmp_path):
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(widths=(4, 8)))
    with pytest.raises(FolderError, match="not a model folder"):
        Classifier.from_pretrained(tmp_path / "absent")
    good = model.save(tmp_path / "good")
    assert Classifier.from_pretrained(good).fingerprint == Classifier.from_pretrained(good).fingerprint

    corrupt = model.save(tmp_path / "corrupt")
    (corrupt / "config.json").write_text("{ not json")
    with pytest.raises(FolderError, match="config.json is corrupt"):
        Classifier.from_pretrained(corrupt)

    other = model.save(tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "kind": "tokenizer"}))
    with pytest.raises(FolderError, match="kind 'tokenizer', not a 'classifier'"):
        Classifier.from_pretrained(other)

    reshaped = model.save(tmp_path / "reshaped")
    (reshaped / "config.json").write_text(json.dumps({**config, "widths": [4, 16]}))
    with pytest.raises(FolderError, match="does not match its config"):
        Classifier.from_pretrained(reshaped)

    truncated = model.save(tmp_path / "truncated")
    shard = next(truncated.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(FolderError, match="corrupt or truncated"):
        Classifier.from_pretrained(truncated)
