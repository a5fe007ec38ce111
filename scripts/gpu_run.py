"""The Python steps of `scripts/gpu_checks.sh train` (the GPU run that continues training the shipped
model); the shell script is the entry point and says how to run it. Each step is one subcommand:

    export-checkpoint RUN MODEL   the EMA weights of RUN's latest checkpoint as a model folder, for a
                                  training run cut short before it exported its own `RUN/model`
    defaults MODEL FROM           copy FROM's sampling defaults (steps, sampler, guidance) into MODEL's
                                  model_index.json: a run from scratch exports the trainer's generic ones
    hash MODEL                    the weights hash images record (atelier.bundle.weights_hash)
    generate MODEL DIR            the image suite's samples, DIR/<prompt id>/<k>.png at the seeds `atelier
                                  eval --model` uses, on the GPU when there is one, many prompts per batch
                                  (`atelier eval --model` samples on the CPU one prompt at a time); then
                                  `atelier eval --suite images DIR` scores them
    summary ...                   the record of the run (summary.json) and its row for the "GPU runs"
                                  table of docs/models/default.md, printed ready to paste
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path


def export_checkpoint(run: Path, target: Path) -> None:
    """What the trainer's own export writes (atelier.train.trainer.Trainer._export), from the newest
    checkpoint's EMA weights."""
    from safetensors.torch import load_file

    from atelier.bundle import read_index, save_bundle
    from atelier.model.config import ModelConfig
    from atelier.model.transformer import SpaceTimeTransformer
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.train import checkpoint
    from atelier.train.config import TrainConfig

    latest = checkpoint.latest(run)
    if latest is None:
        raise SystemExit(f"error: {run} has no checkpoint to export")
    state = checkpoint.read_state(latest)
    config = TrainConfig.from_dict(state["config"])
    model = SpaceTimeTransformer(ModelConfig.from_dict(state["model"]))
    model.load_state_dict(load_file(str(latest / "ema.safetensors")))
    init = read_index(config.init) if config.init else {}
    tokenizer = Autoencoder.from_pretrained(Path(config.init) / "tokenizer" if config.init else config.tokenizer)
    fingerprint = init.get("text_encoder", {}).get("fingerprint")
    if fingerprint is None:
        from atelier.text.encoder import TextEncoder

        fingerprint = TextEncoder.load(config.text_encoder).fingerprint
    training = {"steps": state["step"], "images": state["step"] * config.batch, "config": config.to_dict(),
                "exported_from": f"{latest.name}, the run having been cut short"}
    save_bundle(target, model.eval(), tokenizer, fingerprint,
                defaults={**init.get("defaults", {}), "size": config.size, "sizes": [config.size]}, training=training)
    print(f"exported the EMA weights of {latest} (step {state['step']}) to {target}")


def copy_defaults(model: Path, source: Path) -> None:
    from atelier.bundle import INDEX, read_index

    index, theirs = read_index(model), read_index(source)["defaults"]
    index["defaults"].update({key: theirs[key] for key in ("steps", "sampler", "guidance") if key in theirs})
    (model / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    print(f"sampling defaults of {model}: {index['defaults']} (from {source})")


def chosen_prompts(limit: int):
    """The whole image evaluation set, or `limit` prompts spread evenly over it (every category)."""
    from atelier.world.images import evalset

    prompts = evalset.load()
    if not limit or limit >= len(prompts):
        return list(prompts)
    return [prompts[i * len(prompts) // limit] for i in range(limit)]


def generate(model: Path, folder: Path, n: int, limit: int, device: str, batch: int, threads: int) -> None:
    """Prompts are written as they are made, so a run stopped part-way leaves whole prompts to score
    with `atelier eval --partial`. A failure on the GPU falls back to the CPU for the rest."""
    import torch

    from atelier.evaluate.suite import sample_seed
    from atelier.pipeline import Atelier
    from atelier.pipeline.requests import GenerationRequest

    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"error: {folder} already holds files; give an empty or new folder for the samples")
    torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    prompts = chosen_prompts(limit)
    started = time.perf_counter()
    pipe = Atelier.from_pretrained(model, device=device)
    print(f"generating {len(prompts)} prompts x {n} on {device}, {batch} prompts a batch "
          f"(model loaded in {time.perf_counter() - started:.1f} s)", flush=True)
    done = 0
    while done < len(prompts):
        chunk = prompts[done:done + batch]
        requests = [GenerationRequest(prompt.text, n=n, seed=sample_seed(prompt, 0)) for prompt in chunk]
        try:
            images = pipe.generate(requests)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:   # a CUDA failure: the CPU does the rest
            if device == "cpu":
                raise
            print(f"generation on {device} failed ({error}); the CPU does the rest", flush=True)
            device, pipe = "cpu", Atelier.from_pretrained(model, device="cpu")
            continue
        for prompt, made in zip(chunk, images):
            out = folder / prompt.id
            out.mkdir(parents=True, exist_ok=True)
            for k, image in enumerate(made):
                image.save(out / f"{k}.png")
        done += len(chunk)
        print(f"generated {done}/{len(prompts)} prompts ({time.perf_counter() - started:.0f} s)", flush=True)


def weights_hash(model: Path) -> str:
    from atelier.bundle import weights_hash

    return weights_hash(model)


def summary(args: argparse.Namespace) -> None:
    """summary.json beside the other results, and the table row, printed last."""
    from atelier.bundle import read_index

    before = args.before
    if (Path(before) / "model_index.json").is_file():
        before = weights_hash(before)
    record = {"date": datetime.date.today().isoformat(), "mode": args.mode, "before": before,
              "stages": _stages(args.stages)}
    if args.model is not None and (args.model / "model_index.json").is_file():
        training = read_index(args.model).get("training", {})
        record.update(after=weights_hash(args.model), steps=training.get("steps"), images=training.get("images"),
                      exported_from=training.get("exported_from", "the run's own export"),
                      defaults=read_index(args.model).get("defaults"))
        config = training.get("config", {})
        record["train_flags"] = {key: config.get(key) for key in ("preset", "batch", "lr", "warmup", "lr_schedule",
                                                                 "ema_decay", "ema_std", "seed", "workers", "init")}
    log = _read_log(args.run / "log.jsonl") if args.run is not None else []
    if log:
        last = log[-1]
        record.update(train_seconds=last.get("seconds"), images_per_second=last.get("images_per_second"),
                      final_loss=sum(r["loss"] for r in log[-20:]) / len(log[-20:]))
    if args.eval is not None and args.eval.is_file():
        evaluation = json.loads(args.eval.read_text())
        fidelity = evaluation.get("fidelity") or {}
        record.update(score=evaluation.get("overall"), score_ci95=evaluation.get("overall_ci95"),
                      eval_images=evaluation.get("images"), fd=fidelity.get("fd"),
                      eval_prompts=len(evaluation.get("prompts", [])))
    record["row"] = table_row(record)
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({key: value for key, value in record.items() if key != "row"}, indent=1))
    print("\nrow for the 'GPU runs' table of docs/models/default.md:\n" + record["row"])


def table_row(record: dict) -> str:
    """| date | minutes | images seen | steps | score [95% CI] | FD | weights hash before -> after |"""
    def number(value, form: str) -> str:
        return "-" if value is None else format(value, form)

    score = number(record.get("score"), ".3f")
    if record.get("score_ci95"):
        score += " [{:.3f}, {:.3f}]".format(*record["score_ci95"])
    if record.get("eval_prompts") not in (None, 648):
        score += f" ({record['eval_prompts']} prompts)"
    minutes = record.get("train_seconds")
    cells = [record["date"] + (" (toy)" if record.get("mode") == "toy" else ""),
             number(None if minutes is None else minutes / 60, ".1f"), number(record.get("images"), ","),
             number(record.get("steps"), ","), score, number(record.get("fd"), ".0f"),
             f"`{record.get('before')}` -> `{record.get('after', 'none')}`"]
    return "| " + " | ".join(cells) + " |"


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in record:
            records.append(record)
    return records


def _stages(path: Path | None) -> list[dict]:
    """The shell script's stages.txt: NAME STATUS SECONDS per line."""
    if path is None or not path.is_file():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [{"stage": row[0], "status": int(row[1]), "seconds": int(row[2])} for row in rows if len(row) == 3]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("export-checkpoint")
    step.add_argument("run", type=Path)
    step.add_argument("model", type=Path)
    step = steps.add_parser("defaults")
    step.add_argument("model", type=Path)
    step.add_argument("source", type=Path)
    step = steps.add_parser("hash")
    step.add_argument("model", type=Path)
    step = steps.add_parser("generate")
    step.add_argument("model", type=Path)
    step.add_argument("folder", type=Path)
    step.add_argument("-n", type=int, default=1, help="images per prompt")
    step.add_argument("--limit", type=int, default=0, help="this many prompts spread over the set (0: all 648)")
    step.add_argument("--device", default="auto", help="cuda, cpu, or auto (cuda when there is one)")
    step.add_argument("--batch", type=int, default=64, help="prompts per generate() call")
    step.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    step = steps.add_parser("summary")
    step.add_argument("--output", type=Path, required=True, help="the summary.json to write")
    step.add_argument("--mode", default="gpu")
    step.add_argument("--before", default="scratch", help="the model folder training started from, or 'scratch'")
    step.add_argument("--model", type=Path, help="the packed model")
    step.add_argument("--run", type=Path, help="the training run's folder")
    step.add_argument("--eval", type=Path, help="atelier eval's JSON")
    step.add_argument("--stages", type=Path, help="the script's stages.txt")
    args = parser.parse_args(argv)
    if args.step == "export-checkpoint":
        export_checkpoint(args.run, args.model)
    elif args.step == "defaults":
        copy_defaults(args.model, args.source)
    elif args.step == "hash":
        print(weights_hash(args.model))
    elif args.step == "generate":
        generate(args.model, args.folder, args.n, args.limit, args.device, args.batch, args.threads)
    else:
        summary(args)


if __name__ == "__main__":
    sys.exit(main())
