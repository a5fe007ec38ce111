"""`atelier train model`: one explicit training loop, alone or under torchrun.

nanoGPT's shape: the config is saved inside every checkpoint; the same loop runs in one process
on a laptop CPU and under `torchrun` with DDP or FSDP2 on many GPUs. Each step takes a global
batch whose samples, tasks and random draws depend only on (seed, sample index), so a run split
over N processes computes the same thing as one process, and a killed run resumes exactly.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from atelier.bundle import read_index, save_bundle, weights_hash
from atelier.flow.generate import generate_latents
from atelier.flow.objective import FlowConfig, flow_loss
from atelier.folder import FolderError
from atelier.model import denoiser
from atelier.model.config import preset
from atelier.train import checkpoint
from atelier.train.batches import assemble, caption_precision, to_pixels
from atelier.train.config import TrainConfig
from atelier.train.data import StepExamples, open_source, step_loader
from atelier.train.distributed import Processes, mean_across, mean_across_tensor, start, stop, wrap
from atelier.train.ema import EMA
from atelier.train.logs import RunLog, plot_losses, read_log, recent_loss, sample_grid
from atelier.train.recipes import SAMPLING

SAMPLES_PER_PROMPT = 4
TEXT_CACHE_ENTRIES = 4096   # about 120 MB of caption embeddings


def train(config: TrainConfig, log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    processes = start()
    try:
        return Trainer(config, processes, log if processes.is_main else _quiet).run(progress and processes.is_main)
    finally:
        stop(processes)


class Trainer:
    def __init__(self, config: TrainConfig, processes: Processes, log: Callable[[str], None]):
        from atelier.text.cache import TextCache
        from atelier.text.encoder import TextEncoder
        from atelier.tokenizer.autoencoder import Autoencoder

        self.config, self.processes, self.log = config, processes, log
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        device = processes.device
        ramp = round(config.curriculum * config.steps * config.batch) if config.curriculum else 0
        self.source = open_source(config.data, config.size, config.seed, config.frames, config.views, ramp)
        self.init_index = read_index(config.init) if config.init else None
        tokenizer_path = Path(config.init) / "tokenizer" if config.init else config.tokenizer
        self.tokenizer = Autoencoder.from_pretrained(tokenizer_path, device=device).requires_grad_(False)
        if config.size % self.tokenizer.config.downsample:
            raise ValueError(f"image size {config.size} is not a multiple of the tokenizer's "
                             f"{self.tokenizer.config.downsample}x downsampling")
        self.text_encoder = TextEncoder.load(config.text_encoder, device=device)
        if config.text_cache and Path(config.text_cache).is_file():
            self.texts = TextCache.load(config.text_cache, self.text_encoder)
            log(f"read {len(self.texts)} caption embeddings from {config.text_cache}")
        else:   # the world rarely repeats a caption: a few thousand entries catch the repeats
            self.texts = TextCache(self.text_encoder, capacity=TEXT_CACHE_ENTRIES,
                                   precision=caption_precision(config.precision, device))
        self.latent_cache = read_latent_cache(self._latent_cache_path()) if config.cache_latents else None
        self.model_config = preset(config.preset, latent_channels=self.tokenizer.config.latent_channels,
                                   text_dim=self.text_encoder.dim, **config.model_overrides)
        model = denoiser.build(self.model_config).to(device)
        if config.init:
            self._start_from(model, Path(config.init))
        model.gradient_checkpointing = config.activation_checkpointing
        self.model = wrap(model, processes, config.parallel)
        self.core = getattr(self.model, "module", self.model)
        self.ema = EMA(self.core, config.ema_decay, config.ema_std)
        self.optimizer = self._optimizer()
        self.alignment = self._alignment() if config.repa_weight > 0 else None
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.flow = FlowConfig(logit_mean=config.logit_mean, logit_std=config.logit_std,
                               text_dropout=config.text_dropout, context_dropout=config.context_dropout)
        self.step = 0
        self.pending: list[dict[str, Any]] = []   # step records whose tensors are read every log_every steps

    def _alignment(self):
        """REPA's frozen encoder (the shipped world classifier) and its trainable projector, which has
        its own optimizer and is saved in checkpoints, not in the model (atelier.train.repa)."""
        from atelier.evaluate.classifier import Classifier
        from atelier.train.repa import Alignment, Projector

        encoder = Classifier.from_pretrained().to(self.processes.device)
        projector = Projector(self.model_config.width, encoder.config.widths[-1]).to(self.processes.device)
        optimizer = torch.optim.AdamW(projector.parameters(), lr=self.config.lr, betas=(0.9, 0.99))
        optimizer.param_groups[0]["base_lr"] = self.config.lr
        return Alignment(self.core, self.config.repa_block, encoder, wrap(projector, self.processes, "ddp"),
                         optimizer)

    def _start_from(self, model: denoiser.Denoiser, folder: Path) -> None:
        """Load a trained model's weights to fine-tune them; its text encoder and shape must be this run's."""
        expected = self.init_index.get("text_encoder", {}).get("fingerprint")
        if expected and expected != self.text_encoder.fingerprint:
            raise FolderError(f"{folder} was trained with text encoder {expected}, but this run's is "
                              f"{self.text_encoder.fingerprint}")
        trained = denoiser.load(folder / "transformer")
        if trained.config != self.model_config:
            raise FolderError(f"{folder} is not a {self.config.preset!r} model with these overrides; give the "
                              f"preset it was trained as (its training config: {folder / 'model_index.json'})")
        model.load_state_dict(trained.state_dict())
        self.log(f"fine-tuning {folder} (hash {weights_hash(folder)})")

    def _optimizer(self) -> torch.optim.Optimizer:
        values = self.core.memory_value_parameters()
        value_ids = {id(p) for p in values}
        dense = [p for p in self.core.parameters() if id(p) not in value_ids]
        groups = [{"params": dense, "lr": self.config.lr, "base_lr": self.config.lr}]
        if values:
            groups.append({"params": values, "lr": self.config.memory_lr, "base_lr": self.config.memory_lr,
                           "weight_decay": 0.0})
        return torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=self.config.weight_decay)

    def run(self, progress: bool) -> dict[str, Any]:
        config, processes = self.config, self.processes
        resumed = checkpoint.latest(config.output)
        if resumed is not None:
            state = checkpoint.load(resumed, config, self.model, self.optimizer, self.ema, self.alignment)
            self.step = state["step"]
            self.log(f"resumed {config.output} from {resumed.name} (step {self.step})")
        runlog = RunLog(config.output, resume_step=self.step) if processes.is_main else None
        parameters = sum(p.numel() for p in self.core.parameters())
        self.log(f"training {config.preset} ({parameters / 1e6:.1f}M parameters) on {self.source.describe()}; "
                 f"global batch {config.batch} over {processes.world_size} process(es) on {processes.device}, "
                 f"{config.precision}, {self._budget()}")
        budget = config.minutes * 60 if config.minutes > 0 else math.inf
        self.budget_seconds = budget
        started = self.started = time.perf_counter()
        examples = StepExamples(self.source, config.batch, processes.rank, processes.world_size, config.modalities,
                                config.seed)
        self.steps = step_loader(examples, self.step, config.workers)
        bar = tqdm(total=config.steps, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True)
        last_saved = self.step if resumed is not None else -1
        try:
            while config.steps is None or self.step < config.steps:
                if budget < math.inf and mean_across(float(time.perf_counter() - started >= budget), processes) > 0:
                    break
                self.pending.append(self._train_step())
                bar.update(1)
                if self.step % config.log_every == 0:
                    self._flush(runlog, bar)
                if self.step % config.checkpoint_every == 0:
                    self._checkpoint(runlog)
                    last_saved = self.step
        finally:
            bar.close()
            self.steps = None   # lets the data-loading workers go
        if last_saved != self.step:
            self._checkpoint(runlog)
        exported = self._export()
        if runlog is not None:
            runlog.close()
        records = read_log(Path(config.output) / "log.jsonl") if processes.is_main else []
        return {"steps": self.step, "model": str(exported), "final_loss": recent_loss(records),
                "seconds": time.perf_counter() - started}

    def _train_step(self) -> dict[str, Any]:
        """One optimisation step. Its record keeps the loss and gradient norm as tensors: reading
        them would wait for the device every step (see _flush)."""
        config, processes = self.config, self.processes
        indices, examples = next(self.steps)
        batch = assemble(examples, indices, config, self.tokenizer, self.texts, processes.device, self.latent_cache)
        factor = self._lr_factor()
        optimizers = [self.optimizer] + ([self.alignment.optimizer] if self.alignment is not None else [])
        for group in (group for optimizer in optimizers for group in optimizer.param_groups):
            group["lr"] = group["base_lr"] * factor
        aligned = self.alignment is not None and batch.latents.shape[1] == 1
        with torch.autocast(processes.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            loss = flow_loss(self.forward, batch.latents, batch.text.tokens, batch.text.mask, batch.text.pooled,
                             keep_mask=batch.keep_mask, camera=batch.camera, config=self.flow, draws=batch.draws)
            total = loss
            if aligned:
                pixels = to_pixels([e.image for e in examples]).to(processes.device)      # [B, 3, H, W]
                side = batch.latents.shape[-1] // self.model_config.patch_size
                alignment = self.alignment.loss(pixels, (side, side))
                total = loss + config.repa_weight * alignment
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        if aligned:
            torch.nn.utils.clip_grad_norm_(self.alignment.projector.parameters(), config.clip)
        for optimizer in optimizers:
            optimizer.step()
        self.ema.update(self.core)
        self.step += 1
        record = {"step": self.step, "loss": loss.detach(), "lr": config.lr * factor, "grad_norm": grad_norm.detach(),
                  "frames": int(batch.latents.shape[1]),
                  "edit_fraction": batch.tasks.count("edit") / len(batch.tasks)}
        if aligned:
            record["alignment"] = alignment.detach()
        return record

    def _lr_factor(self) -> float:
        """Linear warm-up, then constant or a cosine to zero at the end of the budget (the steps, or
        the minutes by the wall clock, whichever ends first)."""
        config = self.config
        warm = min(1.0, (self.step + 1) / config.warmup)
        if config.lr_schedule == "constant":
            return warm
        done = self.step / config.steps if config.steps is not None else 0.0
        if self.budget_seconds < math.inf:
            done = max(done, (time.perf_counter() - self.started) / self.budget_seconds)
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    def _flush(self, runlog: RunLog | None, bar) -> None:
        """Read the pending steps' tensors in one transfer (averaged over ranks) and log them."""
        if not self.pending:
            return
        names = [name for name in ("loss", "grad_norm", "alignment") if name in self.pending[-1]]
        values = torch.stack([torch.stack([r[name].float() for name in names]) for r in self.pending])  # [S, K]
        values = mean_across_tensor(values, self.processes).tolist()
        now = time.perf_counter()
        seconds = now - getattr(self, "flushed_at", self.started)
        self.flushed_at = now
        speed = self.config.batch * len(self.pending) / max(seconds, 1e-9)
        for record, row in zip(self.pending, values):
            record.update(dict(zip(names, row)), images_per_second=speed, seconds=now - self.started)
            if runlog is not None:
                runlog.write(record)
        last = self.pending[-1]
        bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{speed:.0f}")
        self.pending = []

    def _checkpoint(self, runlog: RunLog | None) -> None:
        self._flush(runlog, _NO_BAR)
        ema_state = self.ema.state_dict()
        path = checkpoint.save(self.config.output, self.step, self.config, self.model, self.optimizer, ema_state,
                               self.ema.updates, self.processes, extra={"model": self.model_config.to_dict()},
                               alignment=self.alignment)
        if runlog is None:
            return
        if self.config.text_cache:
            self.texts.save(self.config.text_cache)
        if self.latent_cache is not None:
            write_latent_cache(self.latent_cache, self._latent_cache_path())
        samples = self._sample_grid(ema_state)
        samples_path = Path(self.config.output) / "samples" / f"step-{self.step:08d}.png"
        samples_path.parent.mkdir(exist_ok=True)
        samples.save(samples_path)
        runlog.image("samples", samples, self.step)
        plot_losses(read_log(runlog.path), Path(self.config.output) / "loss.png")
        self.log(f"step {self.step}: saved {path}, samples in {samples_path}")

    def _ema_model(self, ema_state: dict[str, torch.Tensor]) -> denoiser.Denoiser:
        model = denoiser.build(self.model_config)
        model.load_state_dict(ema_state)
        return model.to(self.processes.device).eval()

    @torch.no_grad()
    def _sample_grid(self, ema_state: dict[str, torch.Tensor]):
        model = self._ema_model(ema_state)
        prompts = list(self.config.sample_prompts)
        text = self.text_encoder.encode([p for p in prompts for _ in range(SAMPLES_PER_PROMPT)])
        side = self.config.size // self.tokenizer.config.downsample
        shape = (1, self.model_config.latent_channels, side, side)
        seeds = list(range(len(prompts) * SAMPLES_PER_PROMPT))
        latents = generate_latents(model, text, seeds, shape, steps=self.config.sample_steps)
        pixels = self.tokenizer.decode(latents)[:, 0]                                   # [N, 3, H, W]
        images = ((pixels + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        return sample_grid(list(np.ascontiguousarray(images)), prompts, SAMPLES_PER_PROMPT)

    def _export(self) -> Path:
        """The EMA weights as a complete model folder (atelier.bundle), `OUTPUT/model`."""
        ema_state = self.ema.state_dict()
        path = Path(self.config.output) / "model"
        if self.processes.is_main:
            training = {"steps": self.step, "images": self.step * self.config.batch, "config": self.config.to_dict()}
            save_bundle(path, self._ema_model(ema_state).cpu(), self.tokenizer.cpu(), self.text_encoder.fingerprint,
                        defaults={**(self.init_index or {}).get("defaults", SAMPLING), "size": self.config.size,
                                  "sizes": [self.config.size]}, training=training)
            self.tokenizer.to(self.processes.device)
            self.log(f"exported the EMA weights to {path}")
        return path

    def _latent_cache_path(self) -> Path:
        return Path(self.config.output) / "latents.safetensors"

    def _budget(self) -> str:
        parts = [f"{self.config.minutes:g} min"] if self.config.minutes > 0 else []
        if self.config.steps is not None:
            parts.append(f"{self.config.steps} steps")
        return " or ".join(parts)


def read_latent_cache(path: Path) -> dict[str, torch.Tensor]:
    """Latents by example key (the tokenizer's output for a finite source's images)."""
    if not path.is_file():
        return {}
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"latent cache {path} is corrupt ({error}); delete it to encode the images again") from None


def write_latent_cache(cache: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    partial = path.with_name(f".{path.name}.partial")
    save_file({key: value.contiguous() for key, value in cache.items()}, str(partial))
    os.replace(partial, path)


def _quiet(_: str) -> None:
    pass


class _NoBar:
    def set_postfix(self, **_: Any) -> None:
        pass


_NO_BAR = _NoBar()
