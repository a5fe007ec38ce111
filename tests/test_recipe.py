"""The recipe's parts: the learning-rate schedule, the power EMA, representation alignment, the
caption curriculum, BatchNorm memory queries, and the protocol that compares recipes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from atelier.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.tokenizer.config import preset

    torch.manual_seed(0)
    return Autoencoder(preset("tiny")).save(tmp_path_factory.mktemp("tokenizer") / "tokenizer")


def tiny_run(output, tokenizer, steps, **fields) -> TrainConfig:
    fields = {"warmup": 1, **fields}
    return TrainConfig(output=str(output), tokenizer=str(tokenizer), steps=steps, batch=2, checkpoint_every=2,
                       log_every=3, sample_steps=1, threads=1, precision="fp32", **fields)


def logged(output) -> list[dict]:
    return [json.loads(line) for line in (Path(output) / "log.jsonl").read_text().splitlines()]


def test_power_ema_matches_edm2_and_starts_at_the_weights():
    from atelier.train.ema import EMA, power_gamma

    assert power_gamma(0.05) == pytest.approx(16.97, abs=0.01)   # EDM2, Karras et al. 2024, section 3.1
    assert power_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    with pytest.raises(ValueError, match="relative width"):
        power_gamma(0.3)
    layer = torch.nn.Linear(2, 2)
    ema = EMA(layer, 0.999, std=0.1)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        with torch.no_grad():
            layer.weight.add_(1.0)
        ema.update(layer)
    assert decays[0] == 0.0 and decays[0] < decays[1] < decays[2] < 1
    # (1 - 1/n)^(gamma + 1) at update n = 1000: a window a tenth of the run, not a fixed 1,000 steps
    ema.updates = 999
    assert ema.current_decay() == pytest.approx((1 - 1 / 1000) ** (power_gamma(0.1) + 1))


def test_cosine_schedule_warms_up_and_ends_at_zero(tokenizer_folder, tmp_path):
    from atelier.train.trainer import train

    train(tiny_run(tmp_path / "run", tokenizer_folder, 6, lr=1e-3, lr_schedule="cosine", warmup=2), progress=False)
    rates = [record["lr"] for record in logged(tmp_path / "run")]
    assert rates[0] == pytest.approx(0.5e-3)                      # step 1 of a 2-step warm-up
    assert rates[1] == pytest.approx(1e-3 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi / 6)).item()))
    assert all(a > b for a, b in zip(rates[1:], rates[2:])) and rates[-1] < 0.1e-3
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(steps=1, lr_schedule="linear")


def test_alignment_pulls_the_block_towards_the_encoder(tokenizer_folder):
    from atelier.evaluate.classifier import Classifier
    from atelier.model.config import preset
    from atelier.model.transformer import SpaceTimeTransformer
    from atelier.train.repa import Alignment, Projector

    torch.manual_seed(0)
    model = SpaceTimeTransformer(preset("tiny", latent_channels=4))
    encoder = Classifier.from_pretrained()
    projector = Projector(model.config.width, encoder.config.widths[-1])
    optimizer = torch.optim.AdamW(projector.parameters(), lr=1e-3)
    alignment = Alignment(model, 2, encoder, projector, optimizer)
    x = torch.randn(2, 1, 4, 16, 16)
    model(x, torch.rand(2), torch.randn(2, 3, 384), torch.ones(2, 3, dtype=torch.bool), torch.randn(2, 384))
    pixels = torch.rand(2, 3, 64, 64) * 2 - 1
    loss = alignment.loss(pixels, (8, 8))
    assert -1 <= loss.item() <= 1 and alignment.captured is None
    loss.backward()
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0         # the tokens up to the block learn from it
    assert model.blocks[2].modulation[-1].weight.grad.abs().sum() > 0
    assert model.blocks[3].modulation[-1].weight.grad is None         # blocks after it do not
    assert all(p.grad is None for p in encoder.parameters())          # the encoder stays frozen
    with pytest.raises(RuntimeError, match="did not run"):
        alignment.loss(pixels, (8, 8))
    with pytest.raises(ValueError, match="outside"):
        Alignment(model, 8, encoder, projector, optimizer)


def test_an_aligned_run_resumes_with_the_same_losses(tokenizer_folder, tmp_path):
    """The projector and its optimizer are saved beside the model, so resuming changes nothing."""
    from atelier.train.trainer import train

    fields = {"repa_weight": 0.5, "ema_std": 0.1}   # constant rate: a cosine would end the first half at 0
    train(tiny_run(tmp_path / "whole", tokenizer_folder, 4, **fields), progress=False)
    train(tiny_run(tmp_path / "split", tokenizer_folder, 2, **fields), progress=False)
    assert (tmp_path / "split" / "checkpoints" / "step-00000002" / "alignment.pt").is_file()
    train(tiny_run(tmp_path / "split", tokenizer_folder, 4, **fields), progress=False)
    whole, split = logged(tmp_path / "whole"), logged(tmp_path / "split")
    assert [r["loss"] for r in split] == [r["loss"] for r in whole]
    assert [r["alignment"] for r in split] == [r["alignment"] for r in whole]
    assert all(-1 <= r["alignment"] <= 1 for r in whole)


def test_curriculum_starts_with_single_objects():
    from atelier.train.data import WorldSource
    from atelier.world.images.scene import sample_scene

    source = WorldSource(0, 64, ramp=400)
    assert [source.max_objects(i) for i in (0, 133, 134, 267, 399, 400, 10**6)] == [1, 1, 2, 3, 3, 4, 4]
    for index in range(0, 60, 3):
        sample = source[index]
        assert len(sample.object_masks) == 1
    assert WorldSource(0, 64)[7].caption == WorldSource(0, 64, ramp=0)[7].caption
    with pytest.raises(ValueError, match="max_objects"):
        import random

        sample_scene(random.Random(0), max_objects=5)
    with pytest.raises(ValueError, match="run length in steps"):
        TrainConfig(minutes=1, curriculum=0.5)


def test_batchnorm_memory_queries_train_and_export(tokenizer_folder, tmp_path):
    from atelier.model.memory import ProductKeyMemory
    from atelier.model.transformer import SpaceTimeTransformer
    from atelier.train.trainer import train

    result = train(tiny_run(tmp_path / "run", tokenizer_folder, 2, model_overrides={"memory_query_norm": "batch"}),
                   progress=False)
    model = SpaceTimeTransformer.from_pretrained(Path(result["model"]) / "transformer")
    memory = next(m for m in model.modules() if isinstance(m, ProductKeyMemory))
    assert isinstance(memory.query_norm, torch.nn.BatchNorm1d)
    assert memory.query_norm.num_batches_tracked.item() == 2      # the statistics travelled with the EMA weights
    assert not torch.equal(memory.query_norm.running_mean, torch.zeros_like(memory.query_norm.running_mean))


def test_recipe_arms_get_equal_flops(tmp_path):
    from atelier.bench.recipe import ARMS, arm_config

    baseline, baseline_flops = arm_config("baseline", tmp_path / "a", 10_000)
    patch, patch_flops = arm_config("patch-1", tmp_path / "b", 10_000)
    bigger, _ = arm_config("batch-64", tmp_path / "c", 10_000)
    aligned, aligned_flops = arm_config("repa", tmp_path / "d", 10_000)
    assert patch_flops > 3 * baseline_flops and aligned_flops > baseline_flops
    for config, flops in ((baseline, baseline_flops), (patch, patch_flops), (aligned, aligned_flops)):
        assert config.steps * config.batch * flops == pytest.approx(10_000e9, rel=0.02)
    assert bigger.steps * 2 == pytest.approx(baseline.steps, abs=1)
    assert set(ARMS) >= {"baseline", "schedule", "repa", "patch-1", "curriculum", "memory-bn", "dense"}
    with pytest.raises(ValueError, match="unknown arm"):
        arm_config("nope", tmp_path, 1)


def test_recipe_report_ranks_arms_against_the_baseline(tmp_path):
    rows = [{"arm": name, "overall": score, "overall_ci95": [score / 2, score * 2], "fd": 300.0,
             "categories": {"single_object": score}, "steps": 10, "images": 320, "train_seconds": 60.0,
             "what": name} for name, score in (("baseline", 0.02), ("repa", 0.08))]
    report = tmp_path / "report.jsonl"
    report.write_text("".join(json.dumps(row) + "\n" for row in rows))
    table = subprocess.run([sys.executable, "-m", "atelier", "bench", "recipe", "--table", "--report", str(report)],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = [line for line in table.splitlines() if line.startswith("| ") and "arm" not in line]
    assert lines[0].startswith("| repa | 0.080 [0.040, 0.160] | 4.0x") and lines[1].startswith("| baseline")
    unknown = subprocess.run([sys.executable, "-m", "atelier", "bench", "recipe", "nope"], cwd=ROOT,
                             capture_output=True, text=True)
    assert unknown.returncode != 0 and "unknown arm 'nope'" in unknown.stderr
