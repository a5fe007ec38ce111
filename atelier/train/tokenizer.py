"""Train the visual tokenizer on the procedural world, optionally against a baseline.

One explicit loop: AdamW, linear warm-up then cosine decay, gradient clipping, L1 + MSE
(atelier.tokenizer.loss). Images stream from `make_sample` with a fixed training seed; held-out
images come from another seed and the "all" split (which also draws the colour-shape pairs
and layouts training never shows). Training stops at a wall-clock budget, and the cosine
schedule runs on the budget's clock, so a run always ends at a low learning rate however fast
the machine is. No EMA: with the rate annealed to zero the last weights are already an
average in effect, and an EMA copy would cost a step's worth of time.

With a baseline, the two models train in one process, interleaved step by step: each next step
goes to whichever model has used less training time, and each stops when its own training time
reaches the budget, so both see the same machine, the same load and the same images in the same
order. Only optimisation steps count as training time; making images and evaluating do not.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from atelier.hardware import cpu_name
from atelier.tokenizer.autoencoder import Autoencoder
from atelier.tokenizer.config import TokenizerConfig, preset
from atelier.tokenizer.loss import psnr_per_image, reconstruction_loss, to_uint8
from atelier.weights import shipped
from atelier.world.images.stream import make_sample

EVAL_SEED = 1_000_003  # held-out images: a seed no training run uses (training refuses it)
COMPARISON = "comparison.json"


@dataclass
class TrainSettings:
    preset: str = "cot-4x"
    output: Path = shipped("tokenizer")
    minutes: float = 10.0  # training time per model (optimisation steps only)
    steps: int | None = None  # optional cap on steps per model
    baseline: str | None = None  # a second preset trained alongside for the same time
    baseline_output: Path | None = None  # where to save the baseline (not saved when None)
    batch: int = 32
    lr: float = 2e-3
    warmup: int = 20  # steps of linear warm-up (short: the zero-initialised branches start gently anyway)
    weight_decay: float = 0.0  # the stream never repeats an image: nothing to regularise against
    clip: float = 1.0
    size: int = 64
    threads: int = 2
    seed: int = 0  # training images and initialisation
    precision: str = "bf16"  # "bf16" autocast (2x faster on CPUs with AMX/AVX512-BF16) or "fp32"
    latent_channels: int | None = None  # override the preset's
    eval_images: int = 1024
    eval_every: float = 180.0  # seconds of training time between progress evaluations (on 256 images)
    stats_images: int = 2048  # training images the latent shift and scale are measured on
    log_every: float = 30.0  # seconds of wall-clock between progress lines

    def validate(self) -> None:
        problems = []
        if not self.minutes >= 0 or not math.isfinite(self.minutes):
            problems.append(f"--minutes must be a non-negative number, got {self.minutes}")
        if self.steps is not None and self.steps < 1:
            problems.append(f"--steps must be at least 1, got {self.steps}")
        if self.minutes == 0 and self.steps is None:
            problems.append("give a time budget (--minutes > 0) or a step cap (--steps)")
        for name in ("batch", "threads", "eval_images", "stats_images"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            problems.append(f"--lr must be positive, got {self.lr}")
        if self.seed < 0 or self.seed == EVAL_SEED:
            problems.append(f"--seed must be non-negative and not {EVAL_SEED} (the held-out images' seed)")
        if self.precision not in ("bf16", "fp32"):
            problems.append(f"--precision must be bf16 or fp32, got {self.precision!r}")
        if self.baseline is not None and self.baseline == self.preset:
            problems.append(f"the baseline must differ from the preset ({self.preset!r})")
        if problems:
            raise ValueError("; ".join(problems))


def world_images(seed: int, start: int, count: int, size: int, split: str = "train") -> torch.Tensor:
    """Images start .. start + count - 1 of the world stream `seed`, as [count, 3, size, size] in [-1, 1]."""
    pixels = np.stack([make_sample(seed, index, size, split).image for index in range(start, start + count)])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [count, 3, size, size]


def heldout_images(count: int, size: int) -> torch.Tensor:
    return world_images(EVAL_SEED, 0, count, size, split="all")


@torch.no_grad()
def evaluate(model: Autoencoder, images: torch.Tensor, batch: int = 128) -> dict[str, float]:
    """Held-out quality in fp32, the way a user decodes: mean over images of per-image PSNR of the
    uint8-rounded reconstruction (`psnr`), and PSNR of the pooled MSE over all pixels (`psnr_pooled`,
    lower: it is not lifted by easy images)."""
    was_training = model.training
    model.eval()
    psnrs, squared = [], 0.0
    for chunk in images.split(batch):
        reconstruction = to_uint8(model.decode(model.encode(chunk)))  # [b, 3, H, W]
        target = to_uint8(chunk)  # [b, 3, H, W]
        psnrs.append(psnr_per_image(reconstruction, target))
        squared += (reconstruction.float() - target.float()).pow(2).sum().item()
    model.train(was_training)
    mse = squared / images.numel()
    return {"psnr": torch.cat(psnrs).mean().item(), "psnr_pooled": 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))}


@torch.no_grad()
def latent_statistics(model: Autoencoder, images: torch.Tensor, batch: int = 128,
                      ) -> tuple[list[float], list[float]]:
    """Per-channel mean and 1 / std of raw latents: the shift and scale that make encode's output
    roughly zero-mean and unit-variance (Rombach et al. 2022 use one scalar; per channel also
    evens out channels the encoder uses with different ranges)."""
    was_training = model.training
    model.eval()
    latents = torch.cat([model.encode_raw(chunk) for chunk in images.split(batch)])  # [N, C, h, w]
    model.train(was_training)
    per_channel = latents.transpose(0, 1).flatten(1)  # [C, N * h * w]
    mean, std = per_channel.mean(dim=1), per_channel.std(dim=1).clamp_min(1e-6)
    return mean.tolist(), (1 / std).tolist()


def learning_rate(settings: TrainSettings, step: int, progress: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero over the run's progress in [0, 1]."""
    warm = min(1.0, (step + 1) / max(1, settings.warmup))
    return settings.lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_step(model: Autoencoder, optimizer: torch.optim.Optimizer, images: torch.Tensor, lr: float,
               clip: float, precision: str = "bf16") -> float:
    """One optimisation step on a batch of images [B, 3, H, W]; returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        reconstruction = model(images)  # [B, 3, H, W]
    loss = reconstruction_loss(reconstruction, images)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.item()


@dataclass
class Run:
    """One model in training and its accounts."""

    name: str
    model: Autoencoder
    optimizer: torch.optim.Optimizer
    step: int = 0
    train_seconds: float = 0.0
    data_seconds: float = 0.0
    loss: float = float("nan")
    lr: float = 0.0
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    next_eval: float = 0.0
    done: bool = False

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def make_config(name: str, settings: TrainSettings) -> TokenizerConfig:
    config = preset(name)
    changes = {"image_size": settings.size}
    if settings.latent_channels is not None:
        changes["latent_channels"] = settings.latent_channels
    return TokenizerConfig.from_dict({**config.to_dict(), **changes})


def start_run(name: str, settings: TrainSettings) -> Run:
    torch.manual_seed(settings.seed)  # both models start from the same seed
    model = Autoencoder(make_config(name, settings)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=(0.9, 0.99),
                                  weight_decay=settings.weight_decay)
    return Run(name, model, optimizer, next_eval=settings.eval_every)


def train(settings: TrainSettings, log: Callable[[str], None] = print) -> dict:
    """Train the preset (and the baseline, interleaved), save, and return the comparison report."""
    settings.validate()
    names = [settings.preset] + ([settings.baseline] if settings.baseline else [])
    for name in names:
        make_config(name, settings)  # a bad preset or size fails before any work
    torch.set_num_threads(settings.threads)
    budget = settings.minutes * 60 if settings.minutes > 0 else math.inf
    wall_start = time.perf_counter()
    heldout = heldout_images(settings.eval_images, settings.size)
    probe = heldout[:256]
    runs = [start_run(name, settings) for name in names]
    pca_images = world_images(settings.seed, 0, settings.stats_images, settings.size)
    for run in runs:
        if run.model.config.shortcut:
            begin = time.perf_counter()
            explained = run.model.fit_shortcuts(pca_images)
            run.train_seconds += time.perf_counter() - begin  # counted: it is part of training
            log(f"[{run.name}] shortcuts start at the PCA patch codec ({explained:.1%} of patch variance)")
    for run in runs:
        log(f"[{run.name}] {run.params:,} parameters ({run.model.config.encoder} encoder, "
            f"{run.model.config.downsample}x, {run.model.config.latent_channels} latent channels)")
    log(f"training {' and '.join(names)} for {_budget_text(settings)} each, batch {settings.batch}, "
        f"lr {settings.lr:g}, {settings.precision}, {settings.threads} threads, {settings.size} px")
    last_log = time.perf_counter()
    while active := [run for run in runs if not run.done]:
        run = min(active, key=lambda r: r.train_seconds)  # the one behind on training time goes next
        start = time.perf_counter()
        images = world_images(settings.seed, run.step * settings.batch, settings.batch, settings.size)
        begin = time.perf_counter()
        run.data_seconds += begin - start
        progress = max(run.train_seconds / budget, run.step / settings.steps if settings.steps else 0.0)
        lr = learning_rate(settings, run.step, progress)
        run.loss = train_step(run.model, run.optimizer, images, lr, settings.clip, settings.precision)
        run.train_seconds += time.perf_counter() - begin
        run.step += 1
        run.losses.append(run.loss)
        run.done = run.train_seconds >= budget or (settings.steps is not None and run.step >= settings.steps)
        if run.train_seconds >= run.next_eval and not run.done:
            run.next_eval += settings.eval_every
            score = evaluate(run.model, probe)
            run.history.append({"step": run.step, "train_seconds": round(run.train_seconds, 1), **score})
            log(f"[{run.name}] step {run.step}: held-out PSNR {score['psnr']:.2f} dB (256 images)")
        run.lr = lr
        if time.perf_counter() - last_log >= settings.log_every or not any(not r.done for r in runs):
            last_log = time.perf_counter()
            for each in runs:
                _log_progress(each, settings, log)
    rows = [_finish(run, settings, heldout, log) for run in runs]
    report = {
        "rows": rows,
        "budget_minutes_per_model": settings.minutes,
        "wall_minutes": (time.perf_counter() - wall_start) / 60,
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()},
        "heldout": {"seed": EVAL_SEED, "split": "all", "images": settings.eval_images, "size": settings.size,
                    "psnr": "mean over images of per-image PSNR of uint8-rounded reconstructions, fp32 inference"},
        "machine": {"cpu": cpu_name(), "threads": settings.threads,
                    "torch": torch.__version__},
    }
    main, *others = runs
    main.model.save(settings.output, training=_training_facts(rows[0], settings))
    log(f"wrote {settings.output}")
    if others and settings.baseline_output is not None:
        others[0].model.save(settings.baseline_output, training=_training_facts(rows[1], settings))
        log(f"wrote {settings.baseline_output}")
    if others:
        path = Path(settings.output) / COMPARISON
        path.write_text(json.dumps(report, indent=1) + "\n")
        log(format_table(rows))
        log(f"wrote {path}")
    return report


def _log_progress(run: Run, settings: TrainSettings, log: Callable[[str], None]) -> None:
    recent = run.losses[-20:] or [float("nan")]
    log(f"[{run.name}] step {run.step} | {run.train_seconds / 60:5.1f} min | "
        f"{run.step * settings.batch / max(run.train_seconds, 1e-9):6.1f} img/s | "
        f"loss {sum(recent) / len(recent):.4f} | lr {run.lr:.2e}" + (" | done" if run.done else ""))


def _finish(run: Run, settings: TrainSettings, heldout: torch.Tensor, log: Callable[[str], None]) -> dict:
    """Measure the latent statistics into the config, then score the final model on all held-out images."""
    stats = world_images(settings.seed, 0, settings.stats_images, settings.size)
    shift, scale = latent_statistics(run.model, stats)
    state = run.model.state_dict()
    run.model = Autoencoder(run.model.config.with_latent_stats(shift, scale))
    run.model.load_state_dict(state)
    score = evaluate(run.model, heldout)
    log(f"[{run.name}] final held-out PSNR {score['psnr']:.2f} dB ({len(heldout)} images; "
        f"pooled {score['psnr_pooled']:.2f} dB) after {run.step} steps")
    return {"preset": run.name, "encoder": run.model.config.encoder, "params": run.params, "steps": run.step,
            "images_seen": run.step * settings.batch, "psnr": round(score["psnr"], 3),
            "psnr_pooled": round(score["psnr_pooled"], 3), "train_minutes": round(run.train_seconds / 60, 3),
            "images_per_second": round(run.step * settings.batch / max(run.train_seconds, 1e-9), 2),
            "data_minutes": round(run.data_seconds / 60, 3), "final_loss": round(sum(run.losses[-50:]) /
                                                                                 max(1, len(run.losses[-50:])), 5),
            "history": run.history}


def _training_facts(row: dict, settings: TrainSettings) -> dict:
    keys = ("steps", "images_seen", "psnr", "psnr_pooled", "train_minutes")
    return {**{key: row[key] for key in keys}, "batch": settings.batch, "lr": settings.lr, "seed": settings.seed,
            "precision": settings.precision, "heldout_seed": EVAL_SEED, "heldout_images": settings.eval_images}


def format_table(rows: list[dict]) -> str:
    header = f"{'preset':<10} {'params':>10} {'steps':>7} {'images':>9} {'PSNR dB':>8} {'pooled':>7} {'train min':>9}"
    lines = [header, "-" * len(header)]
    lines += [f"{r['preset']:<10} {r['params']:>10,} {r['steps']:>7,} {r['images_seen']:>9,} {r['psnr']:>8.2f} "
              f"{r['psnr_pooled']:>7.2f} {r['train_minutes']:>9.2f}" for r in rows]
    return "\n".join(lines)


def _budget_text(settings: TrainSettings) -> str:
    parts = [f"{settings.minutes:g} min"] if settings.minutes > 0 else []
    if settings.steps is not None:
        parts.append(f"at most {settings.steps} steps")
    return ", ".join(parts)
