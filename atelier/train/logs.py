"""What a training run leaves to read: JSONL and TensorBoard logs, a loss curve, sample grids."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


class RunLog:
    """One JSON line per record in `log.jsonl` (appended, so a resumed run continues the file; records
    past the resume step are dropped first) and the same scalars in TensorBoard (`tensorboard/`)."""

    def __init__(self, output: str | Path, resume_step: int = 0, tensorboard: bool = True):
        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.path = self.output / "log.jsonl"
        kept = [r for r in read_log(self.path) if r.get("step", 0) <= resume_step] if resume_step else []
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output / "tensorboard"), purge_step=resume_step or None)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None and "step" in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(f"train/{key}", value, record["step"])

    def image(self, tag: str, image: Image.Image, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue   # a line cut short by a killed process
    return records


def recent_loss(records: list[dict[str, Any]], count: int = 20) -> float | None:
    """The training loss averaged over the last `count` logged steps: a run's "final loss"."""
    losses = [r["loss"] for r in records if "loss" in r][-count:]
    return sum(losses) / len(losses) if losses else None


def plot_losses(records: list[dict[str, Any]], path: str | Path) -> Path:
    """The loss per step and its running mean, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records if "loss" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.plot(steps, losses, lw=0.6, alpha=0.4, label="loss")
    if len(losses) >= 10:
        window = max(5, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axis.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window}")
    axis.set_xlabel("step")
    axis.set_ylabel("velocity MSE")
    axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def sample_grid(images: list[np.ndarray], prompts: list[str], per_prompt: int, scale: int = 2) -> Image.Image:
    """Rows of `per_prompt` images [H, W, 3] uint8, one row per prompt, each captioned on its left."""
    side = images[0].shape[0] * scale
    label_width, pad = 260, 4
    grid = Image.new("RGB", (label_width + per_prompt * (side + pad), len(prompts) * (side + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for row, prompt in enumerate(prompts):
        y = row * (side + pad)
        draw.multiline_text((4, y + 4), _wrap(prompt, 38), fill="black")
        for k in range(per_prompt):
            tile = Image.fromarray(images[row * per_prompt + k]).resize((side, side), Image.Resampling.NEAREST)
            grid.paste(tile, (label_width + k * (side + pad), y))
    return grid


def _wrap(text: str, width: int) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])
