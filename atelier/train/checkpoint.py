"""Training checkpoints: weights, EMA weights, optimizer state and the run's config and step.

A checkpoint is a folder `checkpoints/step-NNNNNNNN/` written under a temporary name and renamed
when complete, so a run killed at any moment leaves only whole checkpoints behind. The data and
every random draw are functions of (seed, step, sample index) (atelier.train.batches), so the
step count is the whole data and RNG state; the torch RNG state is saved as well for anything
outside that scheme. Weights are safetensors; the optimizer state is a torch file loaded with
weights_only=True (no code runs on load).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from atelier.folder import check_state_dict
from atelier.train.config import TrainConfig
from atelier.train.distributed import Processes, barrier
from atelier.train.ema import EMA

STEP_FOLDER = re.compile(r"^step-(\d{8})$")
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class CheckpointError(ValueError):
    """A checkpoint is corrupt or belongs to another run."""


def checkpoints(output: str | Path) -> list[Path]:
    folder = Path(output) / "checkpoints"
    found = [p for p in folder.iterdir() if STEP_FOLDER.match(p.name)] if folder.is_dir() else []
    return sorted(found)


def latest(output: str | Path) -> Path | None:
    found = checkpoints(output)
    return found[-1] if found else None


def save(output: str | Path, step: int, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
         ema_state: dict[str, torch.Tensor], ema_updates: int, processes: Processes,
         extra: dict[str, Any] | None = None, alignment=None) -> Path:
    """Every rank calls this (gathering sharded state is collective); rank 0 writes. `ema_state` is
    `EMA.state_dict()`, gathered by the caller, who also samples from it."""
    from safetensors.torch import save_file

    model_state = get_model_state_dict(model, options=FULL)
    optimizer_state = get_optimizer_state_dict(model, optimizer, options=FULL)
    final = Path(output) / "checkpoints" / f"step-{step:08d}"
    if processes.is_main:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.with_name(f".{final.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        save_file({k: v.contiguous() for k, v in model_state.items()}, str(staging / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in ema_state.items()}, str(staging / "ema.safetensors"))
        torch.save(optimizer_state, staging / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state()}, staging / "rng.pt")
        if alignment is not None:   # REPA's projector and its optimizer (atelier.train.repa)
            torch.save(alignment.state_dict(), staging / "alignment.pt")
        state = {"step": step, "ema_updates": ema_updates, "config": config.to_dict(), **(extra or {})}
        (staging / "state.json").write_text(json.dumps(state, indent=1) + "\n")
        for file in staging.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for old in checkpoints(output)[:-config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(processes)
    return final


def read_state(path: str | Path) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / "state.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no state.json") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"checkpoint {path}/state.json is corrupt: {error}") from None


def load(path: str | Path, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
         ema: EMA, alignment=None) -> dict[str, Any]:
    """Restore a run from `path` after checking it belongs to this one; returns its state.json."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    state = read_state(path)
    try:
        saved = TrainConfig.from_dict(state["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has an unreadable config: {error}") from None
    conflicts = config.resumable_from(saved)
    if conflicts:
        raise CheckpointError(f"checkpoint {path} belongs to a different run ({'; '.join(conflicts)}); "
                              f"use another --output or the same settings")
    try:
        weights = load_file(str(path / "model.safetensors"))
        ema_weights = load_file(str(path / "ema.safetensors"))
        optimizer_state = torch.load(path / "optimizer.pt", weights_only=True)
        rng = torch.load(path / "rng.pt", weights_only=True)
        aligned = torch.load(path / "alignment.pt", weights_only=True) if alignment is not None else None
    except (SafetensorError, OSError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or incomplete: {error}") from None
    expected = get_model_state_dict(model, options=FULL)
    check_state_dict(expected, weights, f"checkpoint {path}")
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
    # Parameters that never had a gradient (the camera embedding in an image-only run) have no
    # optimizer state; the weights above were checked strictly.
    set_optimizer_state_dict(model, optimizer, optimizer_state,
                             options=StateDictOptions(full_state_dict=True, strict=False))
    ema.load_state_dict(ema_weights, state.get("ema_updates", state["step"]))
    if aligned is not None:
        alignment.load_state_dict(aligned)
    torch.set_rng_state(rng["torch"])
    return state
