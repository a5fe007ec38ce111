"""atelier train tokenizer|model|classifier|segmenter: training on the procedural world (the model
also on folders of images and WebDataset shards), each target with its own flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from atelier.cli.common import _positive


def add_parsers(commands) -> None:
    train = commands.add_parser("train", help="train a model on the procedural world")
    targets = train.add_subparsers(dest="target", required=True)

    tokenizer = targets.add_parser("tokenizer", help="the visual tokenizer: the autoencoder between images and latents")
    tokenizer.add_argument("--preset", help="cot-4x (default), cot-8x, conv-4x, conv-8x, tiny")
    tokenizer.add_argument("-o", "--output", type=Path, help="the folder to write (default: the shipped tokenizer)")
    tokenizer.add_argument("--minutes", type=float, help="training time per model (default 10; 0: --steps only)")
    tokenizer.add_argument("--steps", type=_positive, help="stop each model after this many steps")
    tokenizer.add_argument("--baseline", help="a preset trained alongside for the same time, e.g. conv-4x")
    tokenizer.add_argument("--baseline-output", type=Path, help="where to save the baseline (default: not saved)")
    tokenizer.add_argument("--batch", type=_positive, help="images per step (default 32)")
    tokenizer.add_argument("--lr", type=float, help="peak learning rate")
    tokenizer.add_argument("--size", type=int, default=64, help="image side")
    _run_options(tokenizer)
    tokenizer.add_argument("--precision", choices=["bf16", "fp32"], help="bf16 autocast (default) or fp32")
    tokenizer.add_argument("--latent-channels", type=_positive, help="override the preset's")
    tokenizer.add_argument("--eval-images", type=_positive, help="held-out images scored at the end (default 1024)")
    tokenizer.set_defaults(run=_tokenizer)

    model = targets.add_parser("model", help="the diffusion transformer (alone, or under torchrun with DDP or FSDP)")
    model.add_argument("--preset", help="tiny (default), small, base, large, xl, xxl; unet-tiny (a UNet, images only)")
    model.add_argument("-o", "--output", type=Path, help="the run's folder to write (default: runs/PRESET)")
    model.add_argument("--minutes", type=float, help="training time (default 10, or 0 when --steps is given; "
                                                     "0: --steps only)")
    model.add_argument("--steps", type=_positive, help="stop after this many steps")
    model.add_argument("--batch", type=_positive, help="global batch: images per step over all processes (default 32)")
    model.add_argument("--lr", type=float, help="peak learning rate")
    model.add_argument("--size", type=int, default=64, help="image side")
    _run_options(model)
    model.add_argument("--precision", choices=["bf16", "fp32"], help="bf16 autocast (default) or fp32")
    model.add_argument("--data", default="world",
                       help="'world', a folder of images with same-named .txt captions, or WebDataset .tar "
                       "shards (a file, a folder of them, a glob or name-{000..015}.tar)")
    model.add_argument("--tokenizer", help="the trained tokenizer folder (default: the shipped one)")
    model.add_argument("--text-encoder", help="a text encoder folder (default: the installed package)")
    model.add_argument("--parallel", choices=["ddp", "fsdp"], default="ddp", help="under torchrun")
    model.add_argument("--checkpoint-every", type=_positive, default=500, help="steps between checkpoints")
    model.add_argument("--warmup", type=int, help="learning-rate warm-up steps")
    model.add_argument("--ema-decay", type=float, help="EMA decay (default 0.999)")
    model.add_argument("--ema-std", type=float, help="EDM2's power EMA with this relative width, e.g. 0.1 "
                                                     "(replaces --ema-decay)")
    model.add_argument("--lr-schedule", choices=["constant", "cosine"],
                       help="after warm-up: constant, or a cosine to zero at the end of the budget")
    model.add_argument("--repa", type=float, dest="repa_weight",
                       help="representation alignment to the world classifier's features, with this weight")
    model.add_argument("--modalities", type=_weights,
                       help="share of steps per modality, e.g. image=0.6,clip=0.2,views=0.2 (default image=1)")
    model.add_argument("--frames", type=_positive, help="frames of a training clip (default 8)")
    model.add_argument("--views", type=_positive, help="views of a training object (default 4)")
    model.add_argument("--init", type=Path, help="fine-tune this model folder (its weights, tokenizer and "
                                                 "defaults; give its preset)")
    model.add_argument("--edit-fraction", type=float, help="share of keep-mask editing samples (default 0.3)")
    model.add_argument("--sample-steps", type=_positive, help="sampling steps for the checkpoint grids")
    model.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    model.add_argument("--text-cache", help="a caption-embedding cache file (read at start, written at checkpoints)")
    model.add_argument("--cache-latents", action="store_true", help="encode a folder's images only once")
    model.add_argument("--workers", type=int, help="data-loading processes (default 0: in the training loop)")
    model.add_argument("--activation-checkpointing", action="store_true", help="recompute activations")
    model.set_defaults(run=_model)

    classifier = targets.add_parser("classifier", help="the world classifier whose features the fidelity metric uses")
    classifier.add_argument("-o", "--output", type=Path, help="the folder to write (the shipped one: "
                                                              "atelier/weights/classifier)")
    classifier.add_argument("--minutes", type=float, help="training time (default 10)")
    _run_options(classifier)
    classifier.set_defaults(run=_classifier)

    segmenter = targets.add_parser("segmenter", help="the subject masks of atelier edit --background / --subject")
    segmenter.add_argument("-o", "--output", type=Path, help="the folder to write (the shipped one: "
                                                             "atelier/weights/segmenter)")
    segmenter.add_argument("--minutes", type=float, help="training time (default 12)")
    segmenter.add_argument("--batch", type=_positive, help="images per step (default 32)")
    _run_options(segmenter)
    segmenter.set_defaults(run=_segmenter)


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The options every target shares."""
    parser.add_argument("--threads", type=_positive, default=2,
                        help="torch CPU threads (1 on a machine others load: two threads then contend badly)")
    parser.add_argument("--seed", type=int, default=0, help="training images and initialisation")


def _weights(text: str) -> dict[str, float]:
    """"image=0.6,clip=0.2" -> {"image": 0.6, "clip": 0.2}"""
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT pairs separated by commas, got {text!r}") from None
    return weights


def _segmenter(args: argparse.Namespace) -> None:
    from atelier.train.segmenter import train_segmenter

    if args.output is None:
        raise SystemExit("error: give the segmenter's folder with -o DIR (the shipped one: "
                         "atelier/weights/segmenter)")
    minutes, seed, threads, batch = args.minutes or 12.0, args.seed or 0, args.threads or 1, args.batch or 32
    command = (f"atelier train segmenter -o {args.output} --minutes {minutes:g} --seed {seed} --threads {threads} "
               f"--batch {batch}")
    train_segmenter(Path(args.output), minutes, seed=seed, batch=batch, threads=threads, progress=print,
                    command=command)


def _classifier(args: argparse.Namespace) -> None:
    from atelier.train.classifier import train_classifier

    if args.output is None:
        raise SystemExit("error: give the classifier's folder with -o DIR (the shipped one: "
                         "atelier/weights/classifier)")
    result = train_classifier(Path(args.output), args.minutes or 10.0, seed=args.seed, threads=args.threads,
                              log=lambda line: print(line, flush=True))
    print(json.dumps(result["accuracy"], indent=1))


def _tokenizer(args: argparse.Namespace) -> None:
    from atelier.train.tokenizer import TrainSettings, train

    options = {"preset": args.preset, "output": args.output, "minutes": args.minutes, "steps": args.steps,
               "baseline": args.baseline, "baseline_output": args.baseline_output, "batch": args.batch,
               "lr": args.lr, "size": args.size, "threads": args.threads, "seed": args.seed,
               "precision": args.precision, "latent_channels": args.latent_channels,
               "eval_images": args.eval_images}
    settings = TrainSettings(**{key: value for key, value in options.items() if value is not None})
    train(settings, log=lambda line: print(line, flush=True))


def _model(args: argparse.Namespace) -> None:
    from atelier.train.config import DEFAULT_TASKS, TrainConfig

    minutes = args.minutes if args.minutes is not None else (0.0 if args.steps else 10.0)
    output = args.output or Path("runs") / (args.preset or "tiny")
    options = {"preset": args.preset, "data": args.data, "tokenizer": args.tokenizer,
               "text_encoder": args.text_encoder, "output": str(output),
               "minutes": minutes, "steps": args.steps, "batch": args.batch,
               "lr": args.lr, "size": args.size, "threads": args.threads, "seed": args.seed,
               "precision": args.precision, "parallel": args.parallel, "checkpoint_every": args.checkpoint_every,
               "warmup": args.warmup, "ema_decay": args.ema_decay, "ema_std": args.ema_std,
               "lr_schedule": args.lr_schedule, "repa_weight": args.repa_weight, "compile": args.compile,
               "activation_checkpointing": args.activation_checkpointing, "sample_steps": args.sample_steps,
               "text_cache": args.text_cache, "cache_latents": args.cache_latents, "workers": args.workers,
               "modalities": args.modalities, "frames": args.frames, "views": args.views,
               "init": str(args.init) if args.init else None}
    if args.edit_fraction is not None:
        options["tasks"] = {**DEFAULT_TASKS, "text_to_image": 1 - args.edit_fraction,
                            "edit": args.edit_fraction}
    from atelier.train.recipes import recipe

    chosen = {key: value for key, value in options.items() if value is not None}
    config = TrainConfig(**{**recipe(args.preset or "tiny"), **chosen})
    from atelier.model.config import preset

    preset(config.preset)  # an unknown preset fails before anything loads
    from atelier.train.trainer import train as train_model

    result = train_model(config, log=lambda line: print(line, flush=True))
    if result.get("final_loss") is not None:
        print(f"done: {result['steps']} steps, loss {result['final_loss']:.4f}, model in {result['model']}")
