"""What a model training run is: one typed config, saved inside every checkpoint.

Torch-free, so the CLI validates a command line before importing anything heavy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from atelier.folder import config_from_dict
from atelier.model.config import UNET_PRESET_NAMES
from atelier.weights import shipped

# Each step trains one modality (its global batch shares one canvas shape [B, F, C, h, w]); within
# it, each sample draws one of the modality's tasks (the task table in the README's The model).
MODALITY_TASKS = {
    "image": ("text_to_image", "edit"),            # F = 1
    "clip": ("text_to_video", "image_to_video"),   # F = frames; image-to-video keeps frame 0
    "views": ("text_to_3d", "image_to_3d"),        # F = views with cameras; image-to-3D keeps view 0
}
MODALITIES = tuple(MODALITY_TASKS)
TASKS = tuple(task for tasks in MODALITY_TASKS.values() for task in tasks)
DEFAULT_TASKS = {"text_to_image": 0.7, "edit": 0.3, "text_to_video": 0.7, "image_to_video": 0.3, "text_to_3d": 0.7,
                 "image_to_3d": 0.3}
LR_SCHEDULES = ("constant", "cosine")
REGIONS = ("box", "blob", "brush", "background", "objects", "outpaint")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "tiny"                  # atelier.model.config.PRESETS
    data: str = "world"                   # "world", a folder of images with .txt captions
    tokenizer: str = str(shipped("tokenizer"))  # a trained tokenizer folder (atelier train tokenizer)
    text_encoder: str | None = None       # None: $ATELIER_TEXT_ENCODER or the installed package
    output: str = "runs/tiny"
    minutes: float = 0.0                  # wall-clock budget (0: --steps only)
    steps: int | None = None
    batch: int = 32                       # global batch: the same samples whatever the number of ranks
    lr: float = 3e-4
    memory_lr: float = 3e-3               # the memory layers' values (Berges et al. 2024 use a higher one)
    warmup: int = 200                     # steps of linear learning-rate warm-up
    weight_decay: float = 0.0
    clip: float = 1.0                     # gradient-norm clipping
    lr_schedule: str = "constant"         # after warm-up: "constant", or "cosine" to zero at the budget's end
    ema_decay: float = 0.999
    ema_std: float = 0.0                  # > 0: EDM2's power EMA with this relative width (overrides ema_decay)
    precision: str = "bf16"               # "bf16" autocast or "fp32"
    compile: bool = False                 # torch.compile the model
    activation_checkpointing: bool = False
    parallel: str = "ddp"                 # under torchrun: "ddp" or "fsdp" (FSDP2, fully_shard)
    size: int = 64                        # image side
    seed: int = 0
    threads: int = 2                      # torch CPU threads per process
    workers: int = 0                      # data-loading processes per rank (0: render in the training process)
    modalities: dict[str, float] = field(default_factory=lambda: {"image": 1.0})  # world only for clip/views
    frames: int = 8                       # clip frames per training sample
    views: int = 4                        # object views per training sample
    tasks: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TASKS))
    regions: dict[str, float] = field(default_factory=lambda: dict.fromkeys(REGIONS, 1.0))
    logit_mean: float = 0.0               # timesteps: sigmoid(N(logit_mean, logit_std)), then the resolution shift
    logit_std: float = 1.0
    repa_weight: float = 0.0              # representation alignment (atelier.train.repa): 0 off
    repa_block: int = 2                   # the block whose visual tokens are aligned
    curriculum: float = 0.0               # world images: share of the run over which scenes grow from one
                                          # object to the full range (atelier.train.data.WorldSource); 0 off
    text_dropout: float = 0.1
    context_dropout: float = 0.1
    checkpoint_every: int = 500           # steps
    keep_checkpoints: int = 2
    log_every: int = 10                   # steps
    sample_prompts: tuple[str, ...] = (
        "a red circle on a white background",
        "two blue squares on a yellow background",
        "a large green star at the top left",
        "a purple heart to the left of an orange triangle",
    )
    sample_steps: int = 20
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields to replace
    text_cache: str | None = None         # a text-embedding cache file: read at start, written at checkpoints
    cache_latents: bool = False           # encode a folder's images once (OUTPUT/latents.safetensors)
    init: str | None = None               # fine-tune: a model folder (atelier.bundle) whose weights, tokenizer
                                          # and sampling defaults start the run (a checkpoint in OUTPUT wins)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample_prompts", tuple(self.sample_prompts))
        problems = []
        if not (self.minutes >= 0 and math.isfinite(self.minutes)):
            problems.append(f"minutes must be a non-negative number, got {self.minutes}")
        if self.minutes == 0 and self.steps is None:
            problems.append("give a time budget (minutes > 0) or a number of steps")
        if self.steps is not None and self.steps < 1:
            problems.append(f"steps must be at least 1, got {self.steps}")
        for name in ("batch", "threads", "checkpoint_every", "log_every", "keep_checkpoints", "sample_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            problems.append(f"workers must be 0 or more, got {self.workers}")
        if self.lr <= 0 or self.memory_lr <= 0:
            problems.append("learning rates must be positive")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0 <= self.ema_std < 0.28:
            problems.append(f"ema_std must be in [0, 0.28), got {self.ema_std}")
        if self.logit_std <= 0:
            problems.append(f"logit_std must be positive, got {self.logit_std}")
        if not 0 <= self.curriculum <= 1:
            problems.append(f"curriculum must be a share of the run, from 0 to 1, got {self.curriculum}")
        elif self.curriculum > 0 and (self.steps is None or self.data != "world"):
            problems.append("a curriculum needs a run length in steps (--steps) and the world's data")
        if self.repa_weight < 0 or self.repa_block < 0:
            problems.append("repa_weight and repa_block must be non-negative")
        if self.preset in UNET_PRESET_NAMES:
            if self.repa_weight > 0:
                problems.append(f"representation alignment reads a transformer block; {self.preset} is a UNet")
            if any(w > 0 for m, w in self.modalities.items() if m != "image"):
                problems.append(f"{self.preset} is a UNet of images: it trains no clips or views")
        if self.precision not in ("bf16", "fp32"):
            problems.append(f"precision must be bf16 or fp32, got {self.precision!r}")
        if self.parallel not in ("ddp", "fsdp"):
            problems.append(f"parallel must be ddp or fsdp, got {self.parallel!r}")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name, weights, known in (("tasks", self.tasks, TASKS), ("regions", self.regions, REGIONS),
                                     ("modalities", self.modalities, MODALITIES)):
            unknown = sorted(set(weights) - set(known))
            if unknown:
                problems.append(f"unknown {name} {unknown}; known: {', '.join(known)}")
            if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                problems.append(f"{name} weights must be non-negative and not all zero")
        for modality, weight in self.modalities.items():
            own = MODALITY_TASKS.get(modality, ())
            if weight > 0 and own and not sum(self.tasks.get(task, 0) for task in own):
                problems.append(f"modality {modality} has weight {weight} but none of its tasks "
                                f"({', '.join(MODALITY_TASKS[modality])}) has a weight")
        if self.data != "world" and any(w > 0 for m, w in self.modalities.items() if m != "image"):
            problems.append(f"clips and views come from the procedural world only; --data {self.data} trains images")
        if self.frames < 2 or self.views < 1:
            problems.append(f"frames must be at least 2 and views at least 1, got {self.frames} and {self.views}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample_prompts"] = list(self.sample_prompts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return config_from_dict(cls, data, "training config")

    def resumable_from(self, saved: TrainConfig) -> list[str]:
        """Fields that must match for a checkpoint of `saved` to continue as this run."""
        same = ("preset", "data", "tokenizer", "batch", "size", "seed", "tasks", "regions", "model_overrides",
                "precision", "modalities", "frames", "views", "repa_weight", "repa_block",
                "curriculum")
        return [f"{name}: checkpoint has {getattr(saved, name)!r}, this run {getattr(self, name)!r}"
                for name in same if getattr(saved, name) != getattr(self, name)]
