"""atelier bench world|train|generate|serve: benchmarks that print their figures, each with its own
flags (atelier/bench/ holds the measurements)."""

from __future__ import annotations

import argparse
from pathlib import Path

from atelier.cli.common import UsageError, _positive, write_json


def add_parsers(commands) -> None:
    bench = commands.add_parser("bench", help="benchmarks that print their figures")
    targets = bench.add_subparsers(dest="target", required=True)

    world = targets.add_parser("world", help="the procedural world's scenes per second on one thread")
    world.add_argument("--seconds", type=float, default=5.0, help="how long to measure (default 5)")
    world.add_argument("--size", type=int, default=64, help="image side (default 64)")
    world.set_defaults(run=_world)

    train = targets.add_parser("train", help="training images/s and model FLOP utilisation, next to diffusers' DiT; "
                                             "with --data world, on the real data path, step by step")
    train.add_argument("--data", choices=["synthetic", "world"], default="synthetic",
                       help="synthetic: random latents, next to diffusers' DiT (default); world: the world's data "
                            "path as the trainer runs it, next to the same step on a fixed batch")
    train.add_argument("--preset", default="tiny", help="the model preset")
    train.add_argument("--batch", type=_positive, default=16, help="images per step")
    train.add_argument("--latent", type=_positive, help="synthetic: latent side (default: the preset's sample_latent)")
    train.add_argument("--size", type=_positive, help="world: image side (default 64)")
    train.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    train.add_argument("--compile", action="store_true", help="torch.compile both models")
    train.add_argument("--threads", type=_positive, default=2, help="torch CPU threads")
    train.add_argument("--seconds", type=float, default=5.0, help="how long to time each model (default 5)")
    train.add_argument("--json", type=Path, help="also write the figures here")
    train.set_defaults(run=_train)

    generate = targets.add_parser("generate", help="text-to-image speed on this machine, next to diffusers")
    generate.add_argument("--model", help="a model folder (default: the shipped atelier/weights/default)")
    generate.add_argument("--per-category", type=_positive, default=8,
                          help="evaluation prompts per category in the step sweep")
    generate.add_argument("--threads", type=_positive, default=2, help="torch CPU threads")
    generate.add_argument("--json", type=Path, help="also write the figures here")
    generate.set_defaults(run=_generate)

    serve = targets.add_parser("serve", help="the API server under load on this machine, on loopback")
    serve.add_argument("--model", help="a model folder (default: the shipped atelier/weights/default)")
    serve.add_argument("--threads", type=_positive, default=2, help="torch CPU threads")
    serve.add_argument("--seconds", type=float, default=5.0,
                       help="how long to drive each number of clients, batching on and off (default 5)")
    serve.add_argument("--load", action="store_true", help="also the load test (16 clients)")
    serve.add_argument("--load-seconds", type=float, default=60.0, help="length of the load test")
    serve.add_argument("--json", type=Path, help="also write the figures here")
    serve.set_defaults(run=_serve)

    recipe = targets.add_parser("recipe", help="the learning-efficiency protocol: train one recipe arm on a fixed "
                                               "FLOP budget, score it on the image suite, append its row")
    recipe.add_argument("arm", nargs="?", help="the arm to run (omit with --table; --list names them)")
    recipe.add_argument("--list", action="store_true", help="list the arms")
    recipe.add_argument("--table", action="store_true", help="print the report as a table")
    recipe.add_argument("--report", type=Path, default=Path("runs/recipe/report.jsonl"), help="the JSON-lines report")
    recipe.add_argument("--folder", type=Path, default=Path("runs/recipe"), help="where runs and samples go")
    recipe.add_argument("--budget", type=float, help="training GFLOP per arm (default: the protocol's)")
    recipe.add_argument("--seed", type=int, default=0)
    recipe.add_argument("--threads", type=_positive, default=2, help="torch CPU threads")
    recipe.set_defaults(run=_recipe)


def _world(args: argparse.Namespace) -> None:
    from atelier.bench.world import benchmark

    result = benchmark(seconds=args.seconds, size=args.size)
    print(f"world stream, {result['size']}px, one thread: {result['scenes_per_second']:,.0f} scenes/s "
          f"({result['scenes']} scenes in {result['seconds']:.1f} s; captions and truth included; "
          f"warm-up {result['warmup_scenes']} scenes in {result['warmup_seconds']:.1f} s)")


def _train(args: argparse.Namespace) -> None:
    if args.data == "world":
        _train_world(args)
        return
    if args.size is not None:
        raise UsageError("error: --size is for --data world; the synthetic mode takes --latent")
    from atelier.bench.train import benchmark

    results = benchmark(args.preset, args.batch, latent=args.latent, precision=args.precision,
                        seconds=args.seconds, compile_model=args.compile, threads=args.threads,
                        log=lambda line: print(line, flush=True))
    write_json(args.json, {"preset": args.preset, "batch": args.batch, "latent": args.latent,
                           "precision": args.precision, "compile": args.compile,
                           "results": [result.as_dict() for result in results]})


def _train_world(args: argparse.Namespace) -> None:
    if args.latent is not None:
        raise UsageError("error: --latent is for the synthetic mode; with --data world give --size (the image side)")
    from atelier.bench.train import benchmark_world

    write_json(args.json, benchmark_world(args.preset, args.batch, size=args.size or 64, precision=args.precision,
                                          seconds=args.seconds, compile_model=args.compile, threads=args.threads,
                                          log=lambda line: print(line, flush=True)))

def _generate(args: argparse.Namespace) -> None:
    from atelier.bench.generate import benchmark

    write_json(args.json, benchmark(args.model, threads=args.threads, per_category=args.per_category,
                                    log=lambda line: print(line, flush=True)))


def _serve(args: argparse.Namespace) -> None:
    from atelier.bench.serve import benchmark

    write_json(args.json, benchmark(args.model, threads=args.threads, seconds=args.seconds,
                                    load_seconds=args.load_seconds, with_load=args.load,
                                    log=lambda line: print(line, flush=True)))


def _recipe(args: argparse.Namespace) -> None:
    from atelier.bench import recipe

    if args.list:
        for name, (what, _) in recipe.ARMS.items():
            print(f"{name:10s} {what}")
        return
    if args.table or args.arm is None:
        print(recipe.format_report(recipe.read_report(args.report)))
        return
    if args.arm not in recipe.ARMS:
        raise SystemExit(f"error: unknown arm {args.arm!r}; choose one of {', '.join(recipe.ARMS)}")
    if (args.folder / args.arm).exists():
        raise SystemExit(f"error: {args.folder / args.arm} exists; remove it or give another --folder")
    row = recipe.run_arm(args.arm, args.folder, args.report, args.budget or recipe.BUDGET_GFLOP, args.seed,
                         args.threads, log=lambda line: print(line, flush=True))
    print(recipe.format_report(recipe.read_report(args.report)))
    print(f"arm {row['arm']}: overall {row['overall']:.3f}, appended to {args.report}")
