"""The model trainer: edit regions, data, batches, checkpoints, resume after SIGKILL, DDP and FSDP."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atelier.flow.objective import keep_mask
from atelier.train.batches import assemble, rank_indices
from atelier.train.config import TrainConfig
from atelier.train.data import FolderSource, WorldSource, load_square
from atelier.train.masks import KINDS, edit_region
from atelier.world.images.stream import make_sample

ROOT = Path(__file__).resolve().parents[1]
STEPS = 12


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.tokenizer.config import preset

    torch.manual_seed(0)
    return Autoencoder(preset("tiny")).save(tmp_path_factory.mktemp("tokenizer") / "tokenizer")


@pytest.fixture(scope="module")
def text_cache():
    from atelier.text.cache import TextCache
    from atelier.text.encoder import TextEncoder

    return TextCache(TextEncoder.load())


def command(output, tokenizer, *extra):
    return [sys.executable, "-m", "atelier", "train", "model", "--preset", "tiny", "--tokenizer", str(tokenizer),
            "-o", str(output), "--batch", "4", "--checkpoint-every", "4", "--sample-steps", "2", "--threads", "1",
            "--precision", "fp32", *extra]


def losses(output):
    return [json.loads(line)["loss"] for line in (Path(output) / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", KINDS)
def test_edit_regions_are_nonempty_and_seeded(kind):
    masks = make_sample(0, 5).masks
    first = edit_region(kind, np.random.default_rng(3), 64, masks)
    again = edit_region(kind, np.random.default_rng(3), 64, masks)
    assert first.shape == (64, 64) and first.dtype == bool and 0 < first.sum() < 64 * 64
    assert np.array_equal(first, again)


def test_keep_mask_keeps_only_cells_wholly_outside_the_region():
    region = np.zeros((8, 8), dtype=bool)
    region[3, 5] = True
    keep = keep_mask(region, 4)
    assert keep.tolist() == [[1.0, 0.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="not divisible"):
        keep_mask(np.zeros((6, 6), bool), 4)
    with pytest.raises(ValueError, match="unknown edit region 'lasso'"):
        edit_region("lasso", np.random.default_rng(0), 64)


def test_objects_and_background_regions_follow_the_scene():
    sample = make_sample(0, 5)
    objects = edit_region("objects", np.random.default_rng(0), 64, sample.masks)
    background = edit_region("background", np.random.default_rng(0), 64, sample.masks)
    assert any((objects & mask).sum() == mask.sum() for mask in sample.masks), "whole objects are covered"
    assert not (background & sample.masks.any(axis=0)).any(), "the objects stay outside a background region"


def test_folder_source_reads_any_mode_and_skips_bad_files(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for i, mode in enumerate(["RGB", "RGBA", "L", "P", "CMYK"]):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).convert(mode).save(
            tmp_path / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}")
        (tmp_path / f"{i}.txt").write_text(f"caption {i}\n")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "broken.txt").write_text("broken")
    (tmp_path / "lonely.png").write_bytes((tmp_path / "0.png").read_bytes())
    source = FolderSource(tmp_path, 32, seed=0)
    assert len(source) == 6 and source.uncaptioned == 1 and "1 images without captions" in source.describe()
    examples = [source[i] for i in range(12)]
    assert all(e.image.shape == (32, 32, 3) and e.image.dtype == np.uint8 for e in examples)
    assert "broken" not in [e.caption for e in examples] and "broken.png" in caplog.text
    every_caption = {f"caption {i}" for i in range(5)}
    assert {e.caption for e in examples[:6]} == {e.caption for e in examples[6:]} == every_caption, "epochs see all"
    assert [e.caption for e in examples] == [source[i].caption for i in range(12)], "the order is seeded"
    uncaptioned = tmp_path / "uncaptioned"
    uncaptioned.mkdir()
    shutil.copy(tmp_path / "0.png", uncaptioned / "0.png")
    with pytest.raises(ValueError, match="none with a same-named .txt caption"):
        FolderSource(uncaptioned, 32, 0)
    with pytest.raises(ValueError, match="not a folder"):
        FolderSource(tmp_path / "missing", 32, 0)


def test_load_square_crops_the_centre(tmp_path):
    image = np.zeros((20, 60, 3), dtype=np.uint8)
    image[:, 20:40] = 255
    Image.fromarray(image).save(tmp_path / "wide.png")
    square = load_square(tmp_path / "wide.png", 20)
    assert square.shape == (20, 20, 3) and square.mean() > 250


def test_ranks_split_the_global_batch():
    shares = [rank_indices(3, 8, rank, 2) for rank in range(2)]
    assert shares == [[24, 25, 26, 27], [28, 29, 30, 31]]
    with pytest.raises(ValueError, match="does not split evenly"):
        rank_indices(0, 6, 0, 4)


def test_a_sample_is_treated_the_same_in_any_batch(tokenizer_folder, text_cache):
    from atelier.tokenizer.autoencoder import Autoencoder

    tokenizer = Autoencoder.from_pretrained(tokenizer_folder)
    config = TrainConfig(tokenizer=str(tokenizer_folder), steps=1, tasks={"edit": 1.0})
    source = WorldSource(0, 64)
    whole = assemble([source[i] for i in range(6)], list(range(6)), config, tokenizer, text_cache)
    part = assemble([source[i] for i in range(3, 6)], [3, 4, 5], config, tokenizer, text_cache)
    assert torch.equal(whole.keep_mask[3:], part.keep_mask)
    for name in ("noise", "normal", "text_coin", "context_coin"):
        assert torch.equal(getattr(whole.draws, name)[3:], getattr(part.draws, name)), name
    assert torch.allclose(whole.latents[3:], part.latents, atol=1e-5)
    assert whole.tasks == ["edit"] * 6 and (whole.keep_mask < 1).any() and (whole.keep_mask > 0).any()


def test_tasks_are_drawn_by_weight_and_per_sample():
    from atelier.tokenizer.config import preset
    from atelier.train.batches import choose_tasks, prepare

    tasks = choose_tasks(0, list(range(10_000)), {"text_to_image": 0.7, "edit": 0.3, "never": 0.0})
    assert 0.28 < tasks.count("edit") / len(tasks) < 0.32 and "never" not in tasks
    assert choose_tasks(0, list(range(5_000, 5_010)), {"text_to_image": 0.7, "edit": 0.3}) == tasks[5_000:5_010]
    assert choose_tasks(1, list(range(100)), {"text_to_image": 0.7, "edit": 0.3}) != tasks[:100], "seeded"
    config, tokenizer_config = TrainConfig(steps=1), preset("tiny")
    source = WorldSource(0, 32)
    examples = [source[i] for i in range(40, 56)]
    whole = prepare(examples, list(range(40, 56)), config, tokenizer_config)
    part = prepare(examples[5:], list(range(45, 56)), config, tokenizer_config)
    assert whole.tasks[5:] == part.tasks and "edit" in whole.tasks and "text_to_image" in whole.tasks
    assert torch.equal(whole.keep_mask[5:], part.keep_mask) and torch.equal(whole.draws.noise[5:], part.draws.noise)
    assert all(task == "edit" or not keep.any() for task, keep in zip(whole.tasks, whole.keep_mask))
    assert whole.images.dtype == torch.uint8 and whole.images.shape == (16, 32, 32, 3)



def test_captions_are_encoded_in_bf16_only_for_bf16_runs_on_fast_devices():
    from atelier.text.encoder import fast_bf16
    from atelier.train.batches import caption_precision

    assert caption_precision("fp32", "cpu") == "fp32"
    assert caption_precision("bf16", "cpu") == ("bf16" if fast_bf16("cpu") else "fp32")

def test_config_errors_are_named():
    with pytest.raises(ValueError, match="give a time budget"):
        TrainConfig()
    with pytest.raises(ValueError, match="unknown tasks"):
        TrainConfig(steps=1, tasks={"painting": 1.0})
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(steps=1, precision="fp8")
    with pytest.raises(ValueError, match="unknown modalities"):
        TrainConfig(steps=1, modalities={"audio": 1.0})
    with pytest.raises(ValueError, match="modality clip has weight 1.0 but none of its tasks"):
        TrainConfig(steps=1, modalities={"clip": 1.0}, tasks={"text_to_image": 1.0})
    with pytest.raises(ValueError, match="clips and views come from the procedural world only"):
        TrainConfig(steps=1, data="photos/", modalities={"image": 1.0, "views": 0.5})


def test_steps_mix_modalities_and_clips_and_views_get_their_tasks(tokenizer_folder, text_cache):
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.train.data import StepExamples

    tokenizer = Autoencoder.from_pretrained(tokenizer_folder)
    config = TrainConfig(tokenizer=str(tokenizer_folder), steps=1, modalities={"image": 1, "clip": 1, "views": 1},
                         tasks={"text_to_image": 1, "image_to_video": 1, "text_to_3d": 1, "image_to_3d": 1})
    examples = StepExamples(WorldSource(0, 32, frames=3, views=2), 4, 0, 1, config.modalities, config.seed)
    modalities = [examples.modality(step) for step in range(60)]
    assert modalities == [examples.modality(step) for step in range(60)], "a step's modality depends on the step"
    assert {modalities.count(m) for m in ("image", "clip", "views")} <= set(range(12, 29))
    clip_step, views_step = modalities.index("clip"), modalities.index("views")
    indices, items = examples[clip_step]
    clip = assemble(items, indices, config, tokenizer, text_cache)
    assert clip.latents.shape[:2] == (4, 3) and clip.camera is None
    assert set(clip.tasks) == {"image_to_video"}
    assert (clip.keep_mask[:, 0] == 1).all() and (clip.keep_mask[:, 1:] == 0).all(), "frame 0 is given"
    indices, items = examples[views_step]
    views = assemble(items, indices, config, tokenizer, text_cache)
    assert views.latents.shape[:2] == (4, 2) and views.camera.shape == (4, 2, 8)
    for task, keep in zip(views.tasks, views.keep_mask):
        assert task in ("text_to_3d", "image_to_3d") and bool(keep[0].all()) == (task == "image_to_3d")


@pytest.mark.slow
def test_training_writes_logs_samples_checkpoints_and_a_model(tokenizer_folder, tmp_path):
    from atelier.bundle import read_index
    from atelier.model.transformer import SpaceTimeTransformer
    from atelier.tokenizer.autoencoder import Autoencoder

    output = tmp_path / "run"
    subprocess.run(command(output, tokenizer_folder, "--steps", "8"), check=True, cwd=ROOT, capture_output=True)
    assert len(losses(output)) == 8
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    assert (output / "loss.png").stat().st_size > 0 and (output / "samples" / "step-00000008.png").is_file()
    assert any((output / "tensorboard").iterdir())
    index = read_index(output / "model")
    assert index["training"]["steps"] == 8 and len(index["text_encoder"]["fingerprint"]) >= 8
    transformer = SpaceTimeTransformer.from_pretrained(output / "model" / "transformer")
    ema = json.loads((output / "checkpoints" / "step-00000008" / "state.json").read_text())
    assert ema["step"] == 8 and transformer.config.latent_channels == Autoencoder.from_pretrained(
        output / "model" / "tokenizer").config.latent_channels


@pytest.mark.slow
@pytest.mark.processes
def test_a_killed_run_resumes_with_the_same_losses(tokenizer_folder, tmp_path):
    steps = ["--steps", str(STEPS)]
    subprocess.run(command(tmp_path / "whole", tokenizer_folder, *steps), check=True, cwd=ROOT, capture_output=True)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(command(interrupted, tokenizer_folder, *steps), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (interrupted / "checkpoints" / "step-00000004").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(losses(interrupted))
    assert done < STEPS, "the kill must land before the run finished"
    resumed = subprocess.run(command(interrupted, tokenizer_folder, *steps), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    assert losses(interrupted) == losses(tmp_path / "whole")


@pytest.mark.slow
def test_bad_checkpoints_are_refused(tokenizer_folder, tmp_path):
    output = tmp_path / "run"
    subprocess.run(command(output, tokenizer_folder, "--steps", "4"), check=True, cwd=ROOT, capture_output=True)
    other = subprocess.run(command(output, tokenizer_folder, "--steps", "8", "--seed", "5"), cwd=ROOT,
                           capture_output=True, text=True)
    assert other.returncode != 0 and "belongs to a different run" in other.stderr and "seed" in other.stderr
    weights = output / "checkpoints" / "step-00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    corrupt = subprocess.run(command(output, tokenizer_folder, "--steps", "8"), cwd=ROOT, capture_output=True,
                             text=True)
    assert corrupt.returncode != 0 and "corrupt or incomplete" in corrupt.stderr
    unknown = subprocess.run(command(tmp_path / "x", tokenizer_folder, "--steps", "1", "--preset", "giant"),
                             cwd=ROOT, capture_output=True, text=True)
    assert unknown.returncode != 0 and "unknown model preset 'giant'" in unknown.stderr


@pytest.mark.slow
def test_fine_tuning_starts_from_a_model_folder(tokenizer_folder, folder, tmp_path):
    from atelier.bundle import read_index

    base = tmp_path / "base"
    subprocess.run(command(base, tokenizer_folder, "--steps", "4"), check=True, cwd=ROOT, capture_output=True)
    index_path = base / "model" / "model_index.json"
    index = json.loads(index_path.read_text())
    index["defaults"].update(steps=7, sampler="multistep")
    index_path.write_text(json.dumps(index))
    tuned = tmp_path / "tuned"
    run = subprocess.run(command(tuned, tokenizer_folder, "--steps", "1", "--init", str(base / "model"),
                                 "--edit-fraction", "1"), cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"fine-tuning {base / 'model'}" in run.stdout
    fresh = tmp_path / "fresh"
    subprocess.run(command(fresh, tokenizer_folder, "--steps", "1", "--edit-fraction", "1"), check=True, cwd=ROOT,
                   capture_output=True)
    assert losses(tuned)[0] != losses(fresh)[0], "the first step already uses the loaded weights"
    defaults = read_index(tuned / "model")["defaults"]
    assert (defaults["steps"], defaults["sampler"]) == (7, "multistep"), "the model's sampling defaults carry over"
    other_shape = subprocess.run(command(tmp_path / "x", tokenizer_folder, "--steps", "1", "--init", str(folder)),
                                 cwd=ROOT, capture_output=True, text=True)
    assert other_shape.returncode != 0 and "is not a 'tiny' model" in other_shape.stderr


@pytest.mark.slow
@pytest.mark.processes
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(tokenizer_folder, tmp_path, parallel):
    """torchrun with 2 CPU processes (gloo) on the same global batch ends at the same weights."""
    from safetensors.torch import load_file

    subprocess.run(command(tmp_path / "one", tokenizer_folder, "--steps", "4"), check=True, cwd=ROOT,
                   capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(29500 + os.getpid() % 1000)]
    two = command(tmp_path / "two", tokenizer_folder, "--steps", "4", "--parallel", parallel)
    result = subprocess.run(torchrun + two[1:], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    one = load_file(str(tmp_path / "one" / "checkpoints" / "step-00000004" / "model.safetensors"))
    both = load_file(str(tmp_path / "two" / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert max((one[name] - both[name]).abs().max().item() for name in one) < 1e-5
    assert np.allclose(losses(tmp_path / "one"), losses(tmp_path / "two"), atol=1e-6)
    shutil.rmtree(tmp_path)


@pytest.mark.slow
def test_folder_training_caches_latents_and_captions(tokenizer_folder, tmp_path):
    from safetensors.torch import load_file

    from atelier.text.cache import TextCache
    from atelier.text.encoder import TextEncoder
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.train.batches import to_pixels

    data = tmp_path / "data"
    data.mkdir()
    for index in range(3):
        sample = make_sample(4, index)
        Image.fromarray(sample.image).save(data / f"{index}.png")
        (data / f"{index}.txt").write_text(sample.caption)
    cache = tmp_path / "captions.safetensors"
    output = tmp_path / "run"
    subprocess.run(command(output, tokenizer_folder, "--steps", "4", "--data", str(data), "--cache-latents",
                           "--text-cache", str(cache)), check=True, cwd=ROOT, capture_output=True)
    latents = load_file(str(output / "latents.safetensors"))
    assert sorted(latents) == ["0.png", "1.png", "2.png"]
    tokenizer = Autoencoder.from_pretrained(tokenizer_folder)
    expected = tokenizer.encode(to_pixels([np.asarray(Image.open(data / "1.png").convert("RGB"))]))[0]
    assert torch.allclose(latents["1.png"], expected, atol=1e-5)
    captions = TextCache.load(cache, TextEncoder.load())
    assert len(captions) == 3 and make_sample(4, 2).caption in captions


@pytest.mark.slow
def test_bench_counts_flops_and_compares_with_diffusers():
    pytest.importorskip("diffusers", reason="diffusers is the benchmark's peer (installed by setup.sh --dev)")
    from atelier.bench.train import benchmark
    from atelier.model.config import preset
    from atelier.model.info import model_info

    ours, theirs = benchmark("tiny", batch=2, latent=8, seconds=0.2, warmup=0, threads=1, log=lambda line: None)
    assert theirs.name == "diffusers DiT" and theirs.images_per_second > 0 and 0 < ours.mfu < 1
    forward = model_info(preset("tiny"), latent_side=8).flops_per_sample
    assert 2.5 < ours.flops_per_image / forward < 3.5, "a training step costs about three forward passes"


@pytest.mark.slow
def test_bench_train_writes_its_figures_as_json(tmp_path, capsys):
    pytest.importorskip("diffusers", reason="diffusers is the benchmark's peer (installed by setup.sh --dev)")
    from atelier.cli import main

    main(["bench", "train", "--preset", "tiny", "--batch", "2", "--latent", "8", "--seconds", "0.2", "--threads", "1",
          "--json", str(tmp_path / "bench.json")])
    report = json.loads((tmp_path / "bench.json").read_text())
    ours, theirs = report["results"]
    assert (report["preset"], ours["name"], theirs["name"]) == ("tiny", "atelier tiny", "diffusers DiT")
    assert 0 < ours["mfu"] < 1 and ours["achieved_flops"] == ours["flops_per_image"] * ours["images_per_second"]
    assert "ratio atelier / diffusers" in capsys.readouterr().out



@pytest.mark.slow
def test_bench_train_on_world_data_times_every_section(tmp_path, capsys):
    from atelier.bench.train import SECTIONS
    from atelier.cli import main

    main(["bench", "train", "--data", "world", "--preset", "tiny", "--batch", "2", "--size", "32", "--seconds", "0.5",
          "--threads", "1", "--json", str(tmp_path / "world.json")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "world.json").read_text())
    assert report["latent"] == [1, 12, 8, 8] and report["world_images_per_second"] > 0
    assert report["synthetic_images_per_second"] > 0 and report["data_path"]["samples_per_second_per_core"] > 0
    assert list(report["step_ms"]) == list(SECTIONS) and all(report["step_ms"][name] > 0 for name in
                                                             ("data", "tokenizer encode", "caption encode", "forward",
                                                              "backward", "optimiser"))
    for line in ("fixed batch (no data path)", "world data (render to optimiser)", *SECTIONS, "samples/s per core",
                 f"caption states ({report['captions']['precision']})", "text cache hits"):
        assert line in out, line


def test_bench_train_flags_belong_to_their_data_mode(capsys):
    from atelier.cli import main

    for argv, message in ((["--data", "world", "--latent", "8"], "--latent is for the synthetic mode"),
                          (["--size", "32"], "--size is for --data world")):
        with pytest.raises(SystemExit) as refused:
            main(["bench", "train", *argv])
        assert refused.value.code == 2 and message in capsys.readouterr().err

def test_worker_processes_prepare_the_same_steps():
    from atelier.train.data import StepExamples, step_loader

    examples = StepExamples(WorldSource(0, 32), batch=4, rank=1, world_size=2)
    inline = step_loader(examples, first_step=5, workers=0)
    parallel = step_loader(examples, first_step=5, workers=2)
    for _ in range(3):
        (indices, expected), (same_indices, got) = next(inline), next(parallel)
        assert indices == same_indices and [e.caption for e in expected] == [e.caption for e in got]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(expected, got))
    assert indices == [30, 31]
