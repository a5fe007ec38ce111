"""The memory-capacity benchmark: its scoring on fake models, its report, and one end-to-end run at toy size."""

from pathlib import Path

import numpy as np
import pytest
import torch

from atelier.world.glyphs import MIN_SEPARATION, make_glyphs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    from atelier.bench import memory_capacity

    return memory_capacity


@pytest.fixture(scope="module")
def glyphs():
    return make_glyphs(64, seed=1)


def lookup(glyphs, images):
    """A fake model: caption -> the image at that entity's position in `images`."""
    row = {g.caption: i for i, g in enumerate(glyphs)}
    return lambda captions: images[[row[c] for c in captions]]


def test_a_model_that_returns_the_templates_reproduces_all(bench, glyphs):
    templates = np.stack([g.image for g in glyphs])
    result = bench.evaluate(lookup(glyphs, templates), glyphs, batch=10)
    assert (result.reproduced, result.nearest_right, result.entities) == (64, 64, 64)
    assert result.median_distance == 0 and result.threshold == MIN_SEPARATION / 2


def test_noise_and_swapped_icons_reproduce_nothing(bench, glyphs):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    assert bench.evaluate(lookup(glyphs, noise), glyphs).reproduced == 0
    swapped = np.stack([g.image for g in glyphs])[::-1].copy()   # each caption gets another entity's icon
    result = bench.evaluate(lookup(glyphs, swapped), glyphs)
    assert result.reproduced == 0 and result.nearest_right == 0


def test_the_threshold_separates_close_from_far_copies(bench, glyphs):
    templates = np.stack([g.image for g in glyphs]).astype(np.float64)
    grey = np.full_like(templates, 128.0)

    def blend(weight):  # RMS distance to the template grows linearly with the weight of the grey
        return np.clip(np.round((1 - weight) * templates + weight * grey), 0, 255).astype(np.uint8)

    distance = np.sqrt(np.mean(((templates - grey) / 255) ** 2, axis=(1, 2, 3)))  # per entity, at weight 1
    half = bench.THRESHOLD
    # Within 0.8 of the threshold everywhere: all reproduced. Twice the threshold away: none.
    inside = bench.evaluate(lookup(glyphs, blend(0.8 * half / distance.max())), glyphs)
    assert inside.reproduced == 64
    outside = blend(np.minimum(2 * half / distance, 1.0)[:, None, None, None])
    result = bench.evaluate(lookup(glyphs, outside), glyphs)
    assert result.reproduced == 0 and result.median_distance > half


def test_a_model_that_answers_one_icon_for_every_caption_reproduces_one(bench, glyphs):
    same = np.repeat(glyphs[7].image[None], 64, axis=0)
    result = bench.evaluate(lookup(glyphs, same), glyphs)
    assert result.reproduced == 1 and result.nearest_right == 1


def test_the_two_variants_cost_the_same_flops(bench):
    infos = bench.flops_check(latent_channels=8, latent_side=8)
    ratio = infos["memory"]["gflop_per_sample"] / infos["dense"]["gflop_per_sample"]
    assert abs(ratio - 1) <= bench.FLOP_TOLERANCE
    assert infos["dense"]["memory_parameters"] == 0 and infos["memory"]["memory_parameters"] == 128 ** 2 * 192


def fake_world(k, budget, dense_reproduced, memory_reproduced, usage, nearest=(512, 600)):
    tokenizer = {"encoder": "conv", "downsample": 4, "latent_channels": 12, "psnr_mean": 27.5, "psnr_min": 21.7,
                 "ceiling": k, "median_distance": 0.04}
    model = {"dense_parameters": 5.7e6, "gflop_per_sample": 0.36, "steps": int(budget.split()[0]),
             "images": 32 * int(budget.split()[0]), "seconds": 600.0, "final_loss": 0.5,
             "median_distance": 0.2}
    return {"k": k, "budget": budget, "tokenizer": tokenizer, "latent_side": 8, "models": {
        "dense": {**model, "memory_parameters": 0, "reproduced": dense_reproduced, "nearest_right": nearest[0]},
        "memory": {**model, "memory_parameters": 3.1e6, "reproduced": memory_reproduced, "nearest_right": nearest[1],
                   "slot_usage": usage}}}


def test_one_k_at_two_budgets_gives_two_rows_and_two_verdicts(bench):
    usage = [{"slots": 16384, "read": 0.97, "perplexity": 0.17}]
    report = {"command": "bench", "machine": "cpu", "batch": 32, "lr": 1e-3, "threshold": bench.THRESHOLD,
              "tokenizer_path": "atelier/weights/tokenizer", "memory_overrides": bench.MEMORY,
              "requested": [[1024, "1800 steps"], [1024, "7200 steps"], [4096, "7200 steps"]],
              "worlds": [fake_world(1024, "7200 steps", 300, 420, usage),   # listed by K, then steps
                         fake_world(1024, "1800 steps", 0, 1, None, nearest=(3, 5)),
                         fake_world(256, "7200 steps", 256, 256, usage, nearest=(256, 256))]}
    text = bench.markdown(report)
    assert "- K = 256, 7200 steps: both models reproduce all 256 entities, so this world does not tell" in text
    assert "- K = 1,024, 1800 steps: a null result, neither model draws 5% of the entities" in text
    assert ("- K = 1,024, 7200 steps: dense 300, memory 420 reproduced; nearest template right for 512 and 600. "
            "Memory minus dense: +120 (standard error 21) reproduced; +88 (standard error 22) nearest right.") in text
    rows = [line for line in text.splitlines() if line.startswith("| 1,024 |")]
    assert len(rows) == 4 and rows[3].endswith("| 97% / 17.0% |") and rows[1].endswith("| not measured |")
    assert rows[2].endswith("| - |")  # the dense model has no memory to read
    assert "Not measured yet: K = 4,096 for 7200 steps" in text and "16,384 value slots" in text
    assert text.count("  - K = 1,024: conv encoder") == 1


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the benchmark sets its own


@pytest.mark.slow
def test_a_short_run_then_a_longer_budget_joins_it_as_another_world(bench, tmp_path, keep_threads):
    """End to end at toy size: both variants trained, sampled and scored, the memory's reads counted;
    then the same K at another budget is added to that report, and --reuse scores finished runs again."""
    common = ["--k", "8", "--batch", "4", "--warmup", "1", "--eval-steps", "2", "--threads", "1",
              "--tokenizer", str(ROOT / "atelier" / "weights" / "tokenizer")]
    first = bench.run(bench.parse_args([*common, "--steps", "2", "--output", str(tmp_path / "a")]))
    (world,) = first["worlds"]
    assert (world["k"], world["budget"]) == (8, "2 steps")
    dense, memory = world["models"]["dense"], world["models"]["memory"]
    assert dense["steps"] == memory["steps"] == 2 and dense["slot_usage"] == []
    (layer,) = memory["slot_usage"]
    assert layer["slots"] == 128 ** 2 and 0 < layer["perplexity"] <= layer["read"] <= 1
    assert 0 <= memory["reproduced"] <= memory["nearest_right"] <= 8

    merged = bench.run(bench.parse_args([*common, "--steps", "3", "--output", str(tmp_path / "b"),
                                         "--merge", str(tmp_path / "a" / "memory_capacity.json")]))
    assert [(w["k"], w["budget"]) for w in merged["worlds"]] == [(8, "2 steps"), (8, "3 steps")]
    text = (tmp_path / "b" / "memory_capacity.md").read_text()
    assert "- K = 8, 2 steps:" in text and "- K = 8, 3 steps:" in text
    assert merged["command"].index("--steps 2") < merged["command"].index("--steps 3")

    # Reports that already hold every world asked for are merged and written; nothing is trained.
    both = [str(tmp_path / name / "memory_capacity.json") for name in ("b", "a")]
    joined = bench.run(bench.parse_args([*common, "--steps", "2", "--output", str(tmp_path / "c"), "--merge", *both]))
    assert [(w["k"], w["budget"]) for w in joined["worlds"]] == [(8, "2 steps"), (8, "3 steps")]
    assert not (tmp_path / "c" / "k8").exists() and (tmp_path / "c" / "memory_capacity.json").is_file()
    command = joined["command"]
    assert command.index(f"--output {tmp_path / 'b'}") < command.index(f"--output {tmp_path / 'c'}")

    again = bench.run(bench.parse_args([*common, "--steps", "2", "--output", str(tmp_path / "a"), "--reuse"]))
    rescored = again["worlds"][0]["models"]["memory"]
    assert rescored["final_loss"] == memory["final_loss"] and rescored["reproduced"] == memory["reproduced"]
    with pytest.raises(SystemExit, match="already holds a run"):
        bench.run(bench.parse_args([*common, "--steps", "2", "--output", str(tmp_path / "a")]))
