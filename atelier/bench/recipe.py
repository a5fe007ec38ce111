"""`atelier bench recipe`: the learning-efficiency protocol, one arm at a time.

An arm is a training recipe (TrainConfig fields over the tiny preset). Every arm gets the same
training compute, counted in FLOPs rather than minutes: the model's forward pass per image
(atelier.model.info) times three for the backward, plus the alignment encoder's forward where an
arm uses one. FLOPs make the budget exact on a machine that other jobs share (minutes would not
be), and arms with more tokens per image see proportionally fewer images. The wall-clock time is
recorded beside it. The trained EMA model is then scored on all 648 prompts of the image suite,
one image each (`atelier eval --suite images -n 1`, bootstrap intervals), with the Frechet
distance, and the arm's row is appended to a JSON-lines report, so arms added later compare to
the same baseline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

BUDGET_GFLOP = 80_000.0   # about 9 minutes of the baseline's steps on two CPU cores (bf16)
BASELINE = {"lr": 1e-3, "warmup": 100, "batch": 32, "ema_decay": 0.999}   # the shipped default's recipe
_SCHEDULE = {**BASELINE, "lr_schedule": "cosine", "ema_std": 0.1}

# name -> (what it tests, TrainConfig fields). Arms after "schedule" build on it: the fixed 0.999
# EMA averages over most of a short run, which would mask every other change.
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "baseline": ("today's recipe: constant lr 1e-3, EMA 0.999, batch 32", BASELINE),
    "schedule": ("cosine to zero at the budget's end, EDM2 power EMA (relative width 0.1)", _SCHEDULE),
    "lr-2e-3": ("schedule, twice the learning rate", {**_SCHEDULE, "lr": 2e-3}),
    "repa": ("schedule + REPA: block 2 aligned to the world classifier's cells, weight 0.5",
             {**_SCHEDULE, "repa_weight": 0.5, "repa_block": 2}),
    "patch-1": ("schedule, patch 1 on the 16x16 latent: 256 tokens instead of 64",
                {**_SCHEDULE, "model_overrides": {"patch_size": 1}}),
    "noisier": ("schedule, timesteps logit-normal with mean 0.5 (more steps near noise)",
                {**_SCHEDULE, "logit_mean": 0.5}),
    "batch-64": ("schedule, batch 64 at lr 1.4e-3 (square-root scaling)", {**_SCHEDULE, "batch": 64, "lr": 1.4e-3}),
    "edits-10": ("schedule, 10% edit samples instead of 30%",
                 {**_SCHEDULE, "tasks": {"text_to_image": 0.9, "edit": 0.1}}),
    "memory-bn": ("schedule, BatchNorm on the memory's queries (Lample et al. 2019)",
                  {**_SCHEDULE, "model_overrides": {"memory_query_norm": "batch"}}),
    "curriculum": ("schedule, scenes grow from one object to four over the first half of the run",
                   {**_SCHEDULE, "curriculum": 0.5}),
    "unet": ("schedule, an SD-style UNet (diffusers' UNet2DConditionModel, unet-tiny) in place of the transformer",
             {**_SCHEDULE, "preset": "unet-tiny"}),
    "dense": ("schedule, a dense MLP in place of the memory layer", {**_SCHEDULE, "model_overrides": {
        "memory_blocks": []}}),
}


def training_flops_per_image(config) -> float:
    """Forward FLOPs of the model per image times three (forward and backward), plus the frozen
    alignment encoder's forward and its projector's three passes when the arm uses REPA."""
    from atelier.model.config import preset
    from atelier.model.info import model_info
    from atelier.tokenizer.autoencoder import Autoencoder

    tokenizer = Autoencoder.from_pretrained(config.tokenizer)
    overrides = dict(config.model_overrides)
    if "memory_blocks" in overrides:
        overrides["memory_blocks"] = tuple(overrides["memory_blocks"])
    model = preset(config.preset, latent_channels=tokenizer.config.latent_channels, **overrides)
    side = config.size // tokenizer.config.downsample
    flops = 3.0 * model_info(model, latent_side=side).flops_per_sample
    if config.repa_weight > 0:
        flops += _alignment_flops(model.width, side // model.patch_size)
    return flops


def _alignment_flops(width: int, grid: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from atelier.evaluate.classifier import Classifier
    from atelier.train.repa import Projector

    encoder = Classifier.from_pretrained()
    projector = Projector(width, encoder.config.widths[-1])
    side = encoder.config.image_size
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        encoder.body(torch.zeros(1, 3, side, side))
        encoder_flops = counter.get_total_flops()
        projector(torch.zeros(1, grid * grid, width))
    return encoder_flops + 3.0 * (counter.get_total_flops() - encoder_flops)


def arm_config(name: str, output: Path, budget_gflop: float, seed: int = 0, threads: int = 2):
    """The arm's TrainConfig, its steps fixed by the FLOP budget."""
    from atelier.train.config import TrainConfig

    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; choose one of {', '.join(ARMS)}")
    fields = {"preset": "tiny", **ARMS[name][1]}
    probe = TrainConfig(**fields, steps=1, output=str(output), seed=seed, threads=threads)
    per_image = training_flops_per_image(probe)
    steps = max(1, round(budget_gflop * 1e9 / (per_image * probe.batch)))
    return replace(probe, steps=steps, checkpoint_every=max(steps // 4, 1)), per_image


def run_arm(name: str, folder: Path, report: Path, budget_gflop: float = BUDGET_GFLOP, seed: int = 0,
            threads: int = 2, log=print) -> dict[str, Any]:
    """Train the arm on the budget, score it, append its row to `report`; returns the row."""
    import torch

    from atelier.hardware import hardware
    from atelier.train.trainer import train

    output = folder / name
    config, per_image = arm_config(name, output, budget_gflop, seed, threads)
    log(f"arm {name}: {ARMS[name][0]}; {config.steps} steps of {config.batch} "
        f"({per_image / 1e9:.2f} GFLOP per training image, budget {budget_gflop:,.0f} GFLOP)")
    started = time.perf_counter()
    result = train(config, log=log, progress=False)
    train_seconds = time.perf_counter() - started
    samples = folder / f"{name}-samples"
    evaluation = folder / f"{name}-eval.json"
    command = [sys.executable, "-m", "atelier", "eval", "--suite", "images", "--model", result["model"], "-n", "1",
               "--threads", str(threads), "--json", str(evaluation), str(samples)]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    scores = json.loads(evaluation.read_text())
    row = {
        "arm": name, "what": ARMS[name][0], "fields": ARMS[name][1], "seed": seed,
        "budget_gflop": budget_gflop, "gflop_per_image": per_image / 1e9, "steps": result["steps"],
        "images": result["steps"] * config.batch, "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - started, 1), "final_loss": result["final_loss"],
        "overall": scores["overall"], "overall_ci95": scores["overall_ci95"],
        "categories": {name: value["score"] for name, value in scores["categories"].items()},
        "subsets": {name: value["score"] for name, value in scores["subsets"].items()},
        "fd": (scores.get("fidelity") or {}).get("fd"),
        "hardware": hardware(threads), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
    }
    report.parent.mkdir(parents=True, exist_ok=True)
    with open(report, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def read_report(report: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.read_text().splitlines() if line.strip()] if report.is_file() else []


def format_report(rows: list[dict[str, Any]]) -> str:
    """The report as a Markdown table, best overall score first, each against the baseline."""
    baseline = next((row["overall"] for row in rows if row["arm"] == "baseline"), None)
    lines = ["| arm | overall [95% CI] | x baseline | FD | single object | steps x batch | train min | what |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: -r["overall"]):
        low, high = row["overall_ci95"]
        ratio = f"{row['overall'] / baseline:.1f}x" if baseline else "-"
        fd = f"{row['fd']:.0f}" if row.get("fd") is not None else "-"
        single = row["categories"].get("single_object", 0)
        lines.append(f"| {row['arm']} | {row['overall']:.3f} [{low:.3f}, {high:.3f}] | {ratio} | {fd} | {single:.3f} | "
                     f"{row['steps']} x {row['images'] // row['steps']} | {row['train_seconds'] / 60:.1f} | "
                     f"{row['what']} |")
    return "\n".join(lines)
