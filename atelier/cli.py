"""The `atelier` command. Subcommands import what they need when they run, so `atelier
--help` stays instant."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _world(args: argparse.Namespace) -> None:
    if args.action == "preview":
        from atelier.world.preview import write_preview

        path = write_preview(args.output, seed=args.seed, count=args.count, size=args.size, split=args.split)
        print(f"wrote {path}")
    elif args.action == "sample":
        from atelier.world.preview import write_samples

        count = write_samples(args.output, seed=args.seed, count=args.count, size=args.size, split=args.split)
        print(f"wrote {count} scenes (png, txt caption, json truth) to {args.output}")
    elif args.action == "evalset":
        from atelier.world import evalset

        if args.write:
            print(f"wrote {evalset.write()}")
        prompts = evalset.load()
        print(f"{len(prompts)} prompts; subsets: {evalset.subset_sizes(prompts)}")


def _progress_printer(label: str):
    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            print(f"\r{label} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    return progress


def _generate(model: str, prompts, out_dir: Path, n: int, steps: int | None) -> None:
    """Write DIR/<prompt id>/<k>.png for every prompt, from the world's truth or a model.
    A folder that already holds samples is refused: mixing two runs would score neither."""
    from PIL import Image

    if out_dir.exists() and any(out_dir.iterdir()):
        raise SystemExit(f"error: {out_dir} already holds files; give an empty or new folder for the samples")
    from atelier.evaluate.suite import sample_seed, truth_images

    if model == "world":
        def generate(prompt):
            return truth_images(prompt, n)
    else:
        try:
            from atelier.pipeline import Atelier
        except ImportError as error:
            raise SystemExit(f"cannot load model {model!r}: this install has no generation pipeline yet "
                             f"({error}); use --model world to score ground-truth renders") from error
        pipe = Atelier.from_pretrained(model)

        def generate(prompt):
            return [pipe.text_to_image(prompt.text, seed=sample_seed(prompt, k), steps=steps)[0] for k in range(n)]

    progress = _progress_printer("generating")
    for done, prompt in enumerate(prompts, start=1):
        folder = out_dir / prompt.id
        folder.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(generate(prompt)):
            (image if hasattr(image, "save") else Image.fromarray(image)).save(folder / f"{k}.png")
        progress(done, len(prompts))


def _eval(args: argparse.Namespace) -> None:
    from atelier.evaluate.suite import format_table, report, score_folder
    from atelier.world import evalset

    if args.suite != "images":
        raise SystemExit(f"unknown suite {args.suite!r}; this version has: images")
    prompts = evalset.load()
    if args.validate:
        from atelier.evaluate.validate import format_validation, validate

        table = validate(prompts, images_per_prompt=args.n, size=args.size,
                         progress=lambda line: print(line, file=sys.stderr))
        print(format_validation(table))
        _write_json(args.json, table)
        return
    if args.model is not None:
        folder = args.samples or Path("eval_samples") / Path(args.model).name
        _generate(args.model, prompts, Path(folder), args.n, args.steps)
    elif args.samples is None:
        raise SystemExit("give a folder of samples (atelier eval --suite images DIR), --model PATH, or --validate")
    else:
        folder = args.samples
    results = score_folder(Path(folder), prompts, partial=args.partial, progress=_progress_printer("scoring"))
    out = report(results, suite=args.suite, samples=str(folder), model=args.model)
    print(format_table(out))
    _write_json(args.json or Path(folder) / "eval_images.json", out)


def _write_json(path: Path | None, data: dict) -> None:
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def _bench(args: argparse.Namespace) -> None:
    if args.target == "world":
        from atelier.world.bench import benchmark

        result = benchmark(seconds=args.seconds, size=args.size)
        print(f"world stream, {result['size']}px, one thread: {result['scenes_per_second']:,.0f} scenes/s "
              f"({result['scenes']} scenes in {result['seconds']:.1f} s; captions and truth included; "
              f"warm-up {result['warmup_scenes']} scenes in {result['warmup_seconds']:.1f} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier: visual generative model stack")
    commands = parser.add_subparsers(dest="command", required=True)

    world = commands.add_parser("world", help="the procedural world")
    world.add_argument("action", choices=["preview", "sample", "evalset"])
    world.add_argument("-o", "--output", type=Path, default=Path("preview"))
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("-n", "--count", type=_positive, default=24)
    world.add_argument("--size", type=int, default=64, help="image side, 32 to 256")
    world.add_argument("--split", default="train", choices=["train", "all"])
    world.add_argument("--write", action="store_true", help="evalset: regenerate the committed prompt file")
    world.set_defaults(run=_world)

    evaluate = commands.add_parser("eval", help="score samples against the evaluation set")
    evaluate.add_argument("samples", nargs="?", type=Path,
                          help="DIR/<prompt id>/<k>.png (with --model: where to write them)")
    evaluate.add_argument("--suite", default="images")
    evaluate.add_argument("--model", help="'world' for ground-truth renders, or a model folder")
    evaluate.add_argument("--steps", type=int, default=None, help="sampling steps for --model")
    evaluate.add_argument("-n", type=_positive, default=4, help="images per prompt (with --model or --validate)")
    evaluate.add_argument("--size", type=int, default=64, help="image side for --validate")
    evaluate.add_argument("--partial", action="store_true", help="score the prompts present, skip the rest")
    evaluate.add_argument("--validate", action="store_true", help="print the oracle's validation table")
    evaluate.add_argument("--json", type=Path, help="where to write the JSON report")
    evaluate.set_defaults(run=_eval)

    bench = commands.add_parser("bench", help="benchmarks that print their figures")
    bench.add_argument("target", choices=["world"])
    bench.add_argument("--seconds", type=float, default=5.0)
    bench.add_argument("--size", type=int, default=64)
    bench.set_defaults(run=_bench)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    main()
