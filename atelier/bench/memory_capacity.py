"""The memory-layer claim, measured: at equal FLOPs per sample, how many of K named glyph entities a
model with a product-key memory layer reproduces, against its dense twin.

Lample et al. 2019 and Berges et al. 2024 ("Memory Layers at Scale") claim memory layers add
capacity for facts at almost no compute. The glyph world (atelier.world.glyphs) is pure facts: K
invented names, one icon each, nothing to generalise. For each K this script writes the world,
trains the two models with the project's trainer one after the other for the same budget (steps or
minutes), then asks each exported model for every entity's icon ("an icon of a zorblat", one fixed
seed) and counts an entity reproduced when its nearest template is its own and lies within half the templates'
guaranteed separation (atelier.world.glyphs.reproduced says why that radius).

    .venv/bin/python -m atelier.bench.memory_capacity --k 256 1024 --minutes 0 --steps 1800 \
        --output runs/memory_capacity --tokenizer atelier/weights/tokenizer --docs docs/memory_capacity.md

A longer budget for one K joins an earlier report as another row (`--reuse` evaluates finished runs
again, with their logged loss and time):

    .venv/bin/python -m atelier.bench.memory_capacity --k 1024 --steps 7200 --output runs/mc1024-long \
        --merge docs/memory_capacity.json --tokenizer atelier/weights/tokenizer --docs docs/memory_capacity.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atelier.model.config import preset
from atelier.model.info import model_info
from atelier.weights import shipped
from atelier.world.glyphs import MIN_SEPARATION, Glyph, match, reproduced, write_glyph_folder

# Block 5's MLP becomes a product-key memory of 128^2 = 16,384 slots (3.1M values) read by 4 heads of
# 16: the query, gate and output projections plus sub-key scoring cost 98.5% of the MLP's FLOPs.
MEMORY = {"memory_blocks": (5,), "memory_keys": 128, "memory_heads": 4, "memory_key_dim": 128, "memory_topk": 16}
DENSE = {"memory_blocks": ()}
VARIANTS = {"dense": DENSE, "memory": MEMORY}
FLOP_TOLERANCE = 0.05
EVAL_SEED = 0  # every entity is drawn from the same noise: only its caption differs
THRESHOLD = MIN_SEPARATION / 2

Generate = Callable[[list[str]], np.ndarray]  # captions -> uint8 images [N, H, W, 3]


@dataclass(frozen=True)
class Evaluation:
    entities: int
    reproduced: int       # nearest template is the right one and within `threshold`
    nearest_right: int    # nearest template is the right one, at any distance
    median_distance: float  # RMS distance of each image to its own template, in [0, 1] pixel units
    threshold: float


def evaluate(generate: Generate, glyphs: list[Glyph], batch: int = 64, threshold: float = THRESHOLD) -> Evaluation:
    """Ask `generate` for every entity's icon by its caption and score each against all templates."""
    return score(ask(generate, glyphs, batch), glyphs, threshold)


def ask(generate: Generate, glyphs: list[Glyph], batch: int = 64) -> np.ndarray:
    """Every entity's icon from its caption, `batch` captions at a time: uint8 [K, H, W, 3]."""
    captions = [g.caption for g in glyphs]
    return np.concatenate([np.asarray(generate(captions[i:i + batch])) for i in range(0, len(captions), batch)])


def score(images: np.ndarray, glyphs: list[Glyph], threshold: float = THRESHOLD) -> Evaluation:
    """Image i against all templates: reproduced, nearest right, and its distance to its own template."""
    templates = np.stack([g.image for g in glyphs])
    if images.shape != templates.shape:
        raise ValueError(f"generated images {images.shape} do not match the templates {templates.shape}")
    nearest, _ = match(images, templates)
    own = np.sqrt(np.mean((images.reshape(len(glyphs), -1) / 255.0 - templates.reshape(len(glyphs), -1) / 255.0) ** 2,
                          axis=1))
    return Evaluation(len(glyphs), int(reproduced(images, templates, threshold).sum()),
                      int((nearest == np.arange(len(glyphs))).sum()), float(np.median(own)), threshold)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """Images [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((pixels.float() + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


def bundle_generator(path: str | Path, text_encoder, steps: int | None = None,
                     guidance: float | None = None) -> tuple[Generate, torch.nn.Module]:
    """A `Generate` over an exported model folder (atelier.bundle), with its default sampler settings,
    and the transformer it samples with (to watch its memory reads)."""
    from atelier.bundle import read_index
    from atelier.flow.generate import generate_latents
    from atelier.model.transformer import SpaceTimeTransformer
    from atelier.tokenizer.autoencoder import Autoencoder

    path = Path(path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the trainer trained it
    defaults = read_index(path)["defaults"]
    model = SpaceTimeTransformer.from_pretrained(path / "transformer", device=device)
    tokenizer = Autoencoder.from_pretrained(path / "tokenizer", device=device)
    side = defaults["size"] // tokenizer.config.downsample
    shape = (1, model.config.latent_channels, side, side)

    def generate(captions: list[str]) -> np.ndarray:
        text = text_encoder.encode(captions)  # fp32, as the trainer encodes captions
        # The denoiser under bf16 autocast, as in training: the numerics it learned, at twice fp32's CPU speed.
        with torch.autocast(device.type, dtype=torch.bfloat16):
            latents = generate_latents(model, text, [EVAL_SEED] * len(captions), shape,
                                       steps=steps or defaults["steps"], sampler=defaults["sampler"],
                                       text_scale=guidance if guidance is not None else defaults["guidance"])
        return to_uint8(tokenizer.decode(latents)[:, 0])
    return generate, model


@torch.no_grad()
def glyph_tokenizer(source: str | Path, glyphs: list[Glyph], output: Path) -> Path:
    """The tokenizer's weights with its latent shift and scale re-measured on the glyph templates
    (atelier.train.tokenizer.latent_statistics, what its own trainer does on its training images): a
    tokenizer trained on another world normalises glyph latents to a standard deviation far from one,
    which moves every timestep's signal-to-noise ratio away from the one the flow schedule assumes."""
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.train.tokenizer import latent_statistics

    original = Autoencoder.from_pretrained(source)
    shift, scale = latent_statistics(original, to_pixels(glyphs))
    tokenizer = Autoencoder(original.config.with_latent_stats(shift, scale))
    tokenizer.load_state_dict(original.state_dict())
    return tokenizer.save(output, training={"weights_from": str(source),
                                            "latent_statistics": f"measured on {len(glyphs)} glyph templates"})


def to_pixels(glyphs: list[Glyph]) -> torch.Tensor:
    """The templates as float images [K, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.stack([g.image for g in glyphs])).permute(0, 3, 1, 2).float().div(127.5).sub(1)


@torch.no_grad()
def tokenizer_check(tokenizer_path: str | Path, glyphs: list[Glyph]) -> dict[str, float]:
    """How well the tokenizer round-trips the templates: PSNR, and how many reconstructions would
    themselves count as reproduced (the ceiling any diffusion model on these latents can reach)."""
    from atelier.tokenizer.autoencoder import Autoencoder

    tokenizer = Autoencoder.from_pretrained(tokenizer_path)
    templates = np.stack([g.image for g in glyphs])
    pixels = to_pixels(glyphs)
    rebuilt = np.concatenate([to_uint8(tokenizer.decode(tokenizer.encode(chunk))) for chunk in pixels.split(128)])
    by_caption = dict(zip((g.caption for g in glyphs), rebuilt))
    ceiling = evaluate(lambda captions: np.stack([by_caption[c] for c in captions]), glyphs)
    mse = np.mean((rebuilt / 255.0 - templates / 255.0) ** 2, axis=(1, 2, 3))
    psnr = 10 * np.log10(1 / np.maximum(mse, 1e-10))
    return {"psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()), "ceiling": ceiling.reproduced,
            "median_distance": ceiling.median_distance, "encoder": tokenizer.config.encoder,
            "downsample": tokenizer.config.downsample,
            "latent_channels": tokenizer.config.latent_channels}


def flops_check(latent_channels: int, latent_side: int) -> dict[str, dict[str, Any]]:
    """Parameters and forward FLOPs per sample of both variants; refuses a pair more than 5% apart."""
    infos = {name: model_info(preset("tiny", latent_channels=latent_channels, **overrides), latent_side=latent_side)
             for name, overrides in VARIANTS.items()}
    ratio = infos["memory"].flops_per_sample / infos["dense"].flops_per_sample
    if abs(ratio - 1) > FLOP_TOLERANCE:
        raise SystemExit(f"the memory model costs {ratio:.3f}x the dense one's FLOPs, beyond {FLOP_TOLERANCE:.0%}")
    return {name: {"parameters": info.parameters, "memory_parameters": info.memory_parameters,
                   "dense_parameters": info.dense_parameters, "gflop_per_sample": info.flops_per_sample / 1e9,
                   "visual_tokens": info.visual_tokens, "text_tokens": info.text_tokens}
            for name, info in infos.items()}


def train_variant(name: str, root: Path, glyphs: list[Glyph], args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant on ROOT/glyphs with ROOT/tokenizer, with the project's trainer, into ROOT/NAME
    (or reuse a finished run there with --reuse)."""
    from atelier.bundle import read_index
    from atelier.train.config import TrainConfig
    from atelier.train.logs import read_log, recent_loss
    from atelier.train.trainer import train

    folder, run = root / "glyphs", root / name
    exported = run / "model"
    if args.reuse and (exported / "model_index.json").is_file():
        print(f"reusing {exported}", flush=True)
    elif run.exists() and any(run.iterdir()):
        raise SystemExit(f"{run} already holds a run; remove it, or pass --reuse to evaluate the finished one")
    else:
        config = TrainConfig(preset="tiny", data=str(folder), tokenizer=str(root / "tokenizer"), output=str(run),
                             minutes=args.minutes, steps=args.steps or None, batch=args.batch, lr=args.lr,
                             warmup=args.warmup, size=32, seed=args.seed, threads=args.threads,
                             workers=args.workers, tasks={"text_to_image": 1.0}, checkpoint_every=10**9,
                             sample_prompts=tuple(g.caption for g in glyphs[:2]), sample_steps=10,
                             model_overrides=dict(VARIANTS[name]))
        print(f"training {name} on {folder} for {_budget(args)}", flush=True)
        train(config, log=lambda line: print(f"  [{name}] {line}", flush=True), progress=False)
    training = read_index(exported)["training"]
    records = read_log(run / "log.jsonl")  # the loop's own clock: sampling the grid and exporting excluded
    return {"steps": training["steps"], "images": training["images"], "seconds": records[-1]["seconds"],
            "final_loss": recent_loss(records)}


def write_sheet(images: np.ndarray, glyphs: list[Glyph], path: Path, count: int = 64, columns: int = 16) -> None:
    """The first `count` entities, their templates in one row and the model's answers in the row below."""
    from PIL import Image

    count = min(count, len(glyphs))
    templates = np.stack([g.image for g in glyphs[:count]])
    rows = []
    for start in range(0, count, columns):
        for source in (templates, images):
            row = list(source[start:start + columns])
            row += [np.full_like(templates[0], 255)] * (columns - len(row))
            rows.append(np.concatenate(row, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).resize((columns * 64, len(rows) * 64), Image.NEAREST).save(path)


def _budget(args: argparse.Namespace) -> str:
    parts = ([f"{args.minutes:g} min"] if args.minutes > 0 else []) + ([f"{args.steps} steps"] if args.steps else [])
    return " or ".join(parts)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
              if line.startswith("model name")]
    return (f"{models[0] if models else platform.machine()}, {os.cpu_count()} CPU cores visible, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from atelier.model.memory import SlotUsage
    from atelier.text.encoder import TextEncoder

    torch.set_num_threads(args.threads)
    text_encoder = TextEncoder.load()
    budget = _budget(args)
    report: dict[str, Any] = {"command": f"`{args.command}`", "machine": machine(),
                              "batch": args.batch, "lr": args.lr, "threshold": THRESHOLD,
                              "tokenizer_path": str(args.tokenizer), "memory_overrides": MEMORY,
                              "requested": [[k, budget] for k in args.k], "worlds": []}
    earlier = [json.loads(path.read_text()) for path in args.merge]  # their worlds stay
    done: set[tuple[int, str]] = set()
    for world in (world for other in earlier for world in other["worlds"]):
        if world_key(world) not in done:  # the first report's copy wins
            report["worlds"].append(world)
            done.add(world_key(world))
    report["command"] = "; then ".join([other["command"] for other in earlier] + [report["command"]])
    for count in [k for k in args.k if (k, budget) not in done]:
        root = args.output / f"k{count}"
        glyphs = write_glyph_folder(root / "glyphs", count, seed=args.seed)
        tokenizer_path = glyph_tokenizer(args.tokenizer, glyphs, root / "tokenizer")
        tokenizer = tokenizer_check(tokenizer_path, glyphs)
        side = 32 // tokenizer["downsample"]
        world = {"k": count, "budget": budget, "tokenizer": tokenizer, "latent_side": side,
                 "models": flops_check(tokenizer["latent_channels"], side)}
        print(f"K={count}: tokenizer PSNR {tokenizer['psnr_mean']:.1f} dB (min {tokenizer['psnr_min']:.1f}), "
              f"reconstructions reproduced {tokenizer['ceiling']}/{count}", flush=True)
        for name in VARIANTS:
            world["models"][name].update(train_variant(name, root, glyphs, args))
            started = time.perf_counter()
            generate, model = bundle_generator(root / name / "model", text_encoder, args.eval_steps)
            with torch.no_grad(), SlotUsage(model) as usage:
                images = ask(generate, glyphs)
            evaluation = score(images, glyphs)
            write_sheet(images, glyphs, root / name / "eval.png")
            world["models"][name].update(asdict(evaluation), slot_usage=usage.summary(),
                                         eval_seconds=time.perf_counter() - started)
            print(f"  {name}: reproduced {evaluation.reproduced}/{count}, nearest right {evaluation.nearest_right}, "
                  f"median distance {evaluation.median_distance:.3f}", flush=True)
        report["worlds"].append(world)
        _write(report, args)  # after each K, so a long run leaves its finished worlds behind
    _write(report, args)  # also when the merged reports held every world asked for
    return report


def world_key(world: dict[str, Any]) -> tuple[int, str]:
    """A world is one K trained for one budget: the same K may be measured at several."""
    return world["k"], world["budget"]


def ordered(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The worlds by K, then by the steps their models took."""
    return sorted(report["worlds"], key=lambda w: (w["k"], w["models"]["dense"].get("steps") or 0))


def table(report: dict[str, Any]) -> str:
    lines = ["| K | model | parameters (dense + memory) | GFLOP/sample | steps | images seen | train min | "
             "final loss | reproduced / K | nearest right / K | median RMS to own | memory slots read / perplexity |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for world in ordered(report):
        for name, m in world["models"].items():
            if "reproduced" not in m:
                continue
            lines.append(f"| {world['k']:,} | {name} | {m['dense_parameters'] / 1e6:.2f}M + "
                         f"{m['memory_parameters'] / 1e6:.2f}M | {m['gflop_per_sample']:.3f} | {m['steps']:,} | "
                         f"{m['images']:,} | {_minutes(m['seconds'])} | {_loss(m['final_loss'])} | "
                         f"{m['reproduced']} / {world['k']:,} | "
                         f"{m['nearest_right']} / "
                         f"{world['k']:,} | {m['median_distance']:.3f} | {_usage(m)} |")
    return "\n".join(lines)


def _usage(model: dict[str, Any]) -> str:
    """Each memory layer's share of slots read and its read perplexity as a share of the slots."""
    if not model["memory_parameters"]:
        return "-"
    if model.get("slot_usage") is None:  # reports written before the usage was measured
        return "not measured"
    return ", ".join(f"{layer['read']:.0%} / {layer['perplexity']:.1%}" for layer in model["slot_usage"])


def _slots(report: dict[str, Any]) -> str:
    counts = {layer["slots"] for w in report["worlds"] for layer in w["models"]["memory"].get("slot_usage") or []}
    return " or ".join(f"{count:,}" for count in sorted(counts)) or "n"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _loss(loss: float | None) -> str:
    return "-" if loss is None else f"{loss:.3f}"


def verdict(report: dict[str, Any]) -> str:
    """One line per world: the counts side by side and memory's lead in each, with its standard error
    over the K entities (two independent binomial counts: how far entity sampling alone moves it; a
    second training seed would add its own spread). A null result when neither model gets 5% of K
    even by nearest template."""
    lines = []
    for world in ordered(report):
        dense, memory, k = world["models"]["dense"], world["models"]["memory"], world["k"]
        if "reproduced" not in dense or "reproduced" not in memory:
            continue
        counts = (f"dense {dense['reproduced']}, memory {memory['reproduced']} reproduced; nearest template right "
                  f"for {dense['nearest_right']} and {memory['nearest_right']}")
        if max(dense["nearest_right"], memory["nearest_right"]) < 0.05 * k:
            lines.append(f"- K = {k:,}, {world['budget']}: a null result, neither model draws 5% of the entities "
                         f"even nearest their own template ({counts}).")
            continue
        if min(dense["reproduced"], memory["reproduced"]) == k:
            lines.append(f"- K = {k:,}, {world['budget']}: both models reproduce all {k:,} entities, so this world "
                         f"does not tell them apart (median RMS to own {dense['median_distance']:.3f} and "
                         f"{memory['median_distance']:.3f}).")
            continue
        leads = "; ".join(f"{_lead(dense[key], memory[key], k)} {label}"
                          for key, label in (("reproduced", "reproduced"), ("nearest_right", "nearest right")))
        lines.append(f"- K = {k:,}, {world['budget']}: {counts}. Memory minus dense: {leads}.")
    return "\n".join(lines)


def _lead(dense: int, memory: int, k: int) -> str:
    error = k * math.sqrt((dense / k) * (1 - dense / k) / k + (memory / k) * (1 - memory / k) / k)
    return f"{memory - dense:+d} (standard error {error:.0f})"


def _missing(report: dict[str, Any]) -> str:
    done = {world_key(w) for w in report["worlds"]}
    missing = [f"K = {k:,} for {budget}" for k, budget in report.get("requested", []) if (k, budget) not in done]
    if not missing:
        return ""
    return (f"\nNot measured yet: {', '.join(missing)} (requested, but the run stopped before it finished; "
            "`--merge` with its JSON continues it).\n")


def _tokenizer_line(world: dict[str, Any]) -> str:
    t = world["tokenizer"]
    return (f"  - K = {world['k']:,}: {t.get('encoder', '?')} encoder, {t['downsample']}x, {t['latent_channels']} "
            f"latent channels; PSNR {t['psnr_mean']:.1f} dB mean, {t['psnr_min']:.1f} dB worst; {t['ceiling']:,} of "
            f"{world['k']:,} reconstructions pass the test themselves (median RMS {t['median_distance']:.3f})")


def markdown(report: dict[str, Any]) -> str:
    lines = {w["k"]: _tokenizer_line(w) for w in report["worlds"]}  # one tokenizer per K, whatever the budget
    tokenizer_lines = "\n".join(lines[k] for k in sorted(lines))
    return f"""# Memory layers: how many named entities a model reproduces at equal FLOPs

Generated by `python -m atelier.bench.memory_capacity`; the raw figures are in `memory_capacity.json` next to this file.

## Setup

- World: `atelier.world.glyphs`, K entities with invented names ("an icon of a zorblat") and one 32 px
  procedural icon each; every pair of icons is at least {MIN_SEPARATION} RMS apart (pixels in [0, 1]).
- Models: the `tiny` preset twice, trained by `atelier.train.trainer` on text-to-image only, batch
  {report['batch']}, lr {report['lr']:g} (memory values: TrainConfig.memory_lr), the same steps for both
  models of a world (the table), one after the other. Dense: `memory_blocks=()`. Memory: block 5's MLP
  replaced by a product-key memory,
  `{report['memory_overrides']}`. FLOPs per forward pass from `atelier.model.info.model_info` at an
  8x8 latent (32 px, 4x tokenizer) with 32 text tokens; the memory reads are gathers and count zero.
- Tokenizer: the weights of `{report['tokenizer_path']}`, its latent shift and scale re-measured on the K
  templates (`glyph_tokenizer`). Round trip of the K templates:
{tokenizer_lines}
- Test: one image per entity from its caption (seed {EVAL_SEED}, the bundle's default sampler, steps and
  guidance). Reproduced = the nearest template by mean squared pixel distance is the entity's own AND the
  RMS distance to it is under {report['threshold']:.2f}, half the guaranteed separation: the largest radius
  at which the balls around the templates do not overlap, so by the triangle inequality a passing image is
  nearer its own template than any other by construction, never by a near-tie. "Nearest right" drops the
  distance condition.
- Memory slots read / perplexity: while the memory model draws every entity's icon, the share of its
  {_slots(report)} value slots read at all, and the perplexity of the summed read weights as a share of the
  slots (`atelier.model.memory.SlotUsage`; Lample et al. 2019, section 4.4): 100% would be every slot
  read equally.

## Result

{table(report)}

{verdict(report)}
{_missing(report)}
One training run and one sampling seed per model: differences of a few entities are within noise.
"Final loss" is the training loss averaged over the last 20 steps (each sample's timestep is random).

How it was made: {report['command']}

Machine: {report['machine']}
"""


def _write(report: dict[str, Any], args: argparse.Namespace) -> None:
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "memory_capacity.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = markdown(report)
    (args.output / "memory_capacity.md").write_text(text)
    if args.docs is not None:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        args.docs.write_text(text)
        args.docs.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[256, 1024], help="entity counts")
    parser.add_argument("--steps", type=int, default=1800, help="training steps per model (0: --minutes only)")
    parser.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget per model (0: --steps only)")
    parser.add_argument("--output", type=Path, default=Path("runs/memory_capacity"))
    parser.add_argument("--tokenizer", type=Path, default=shipped("tokenizer"))
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write the markdown report here, and the JSON next to it")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    parser.add_argument("--seed", type=int, default=0, help="the glyph world and the training runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (TrainConfig.workers)")
    parser.add_argument("--reuse", action="store_true", help="evaluate finished runs instead of refusing them")
    parser.add_argument("--merge", type=Path, nargs="+", default=[],
                        help="keep these earlier reports' worlds; train only the (K, budget) they lack")
    parser.add_argument("--render", type=Path, default=None,
                        help="write the markdown (to --output and --docs) from this report JSON; train nothing")
    args = parser.parse_args(argv)
    words = sys.argv[1:] if argv is None else argv
    # what made the report, written into it
    args.command = " ".join(["python -m atelier.bench.memory_capacity", *(shlex.quote(word) for word in words)])
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render is not None:  # the report again from its JSON, e.g. after editing the text above
        report = json.loads(args.render.read_text())
        _write(report, args)
    else:
        report = run(args)
    print(table(report))


if __name__ == "__main__":
    main()
