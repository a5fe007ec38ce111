"""atelier eval: score samples against an evaluation suite (images, clips, edits, objects) or the
segmenter's masks. The runner that writes the samples first (`--model`: the world's truth, or a
model through the pipeline) lives here too: it needs the pipeline, a floor above atelier.evaluate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atelier.cli.common import _positive, write_json

SUITES = {"images": "atelier.evaluate.suite", "clips": "atelier.evaluate.clips", "edits": "atelier.evaluate.edits",
          "objects": "atelier.evaluate.objects"}


def add_parsers(commands) -> None:
    evaluate = commands.add_parser("eval", help="score samples against the evaluation set")
    evaluate.add_argument("samples", nargs="?", type=Path,
                          help="DIR/<prompt id>/<k>.png (with --model: where to write them)")
    evaluate.add_argument("--suite", default="images", help="images, clips, edits, objects, or masks (the "
                                                             "segmenter's subject masks; --model a segmenter folder)")
    evaluate.add_argument("--inputs", type=Path, help="edits: write the sources, masks and instructions here")
    evaluate.add_argument("--model", help="'world' for ground-truth renders, or a model folder")
    evaluate.add_argument("--steps", type=int, default=None, help="sampling steps for --model")
    evaluate.add_argument("-n", type=_positive,
                          help="samples per prompt with --model or --validate (images, clips and model edits 4, "
                               "objects 2, truth edits 1; masks: images, 500)")
    evaluate.add_argument("--size", type=int, default=64, help="image side for --validate")
    evaluate.add_argument("--partial", action="store_true", help="score the prompts present, skip the rest")
    evaluate.add_argument("--threads", type=_positive, default=2, help="torch CPU threads for --model")
    evaluate.add_argument("--validate", action="store_true", help="print the oracle's validation table")
    evaluate.add_argument("--json", type=Path, help="where to write the JSON report")
    evaluate.set_defaults(run=run)


def _progress_printer(label: str):
    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            print(f"\r{label} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
    return progress


def _generate(model: str, prompts, out_dir: Path, n: int, steps: int | None, threads: int = 2) -> None:
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
        import torch

        torch.set_num_threads(threads)
        pipe = Atelier.from_pretrained(model)

        def generate(prompt):   # sample k of a prompt has seed sample_seed(prompt, k) = sample_seed(prompt, 0) + k
            return pipe.text_to_image(prompt.text, n=n, seed=sample_seed(prompt, 0), steps=steps)

    progress = _progress_printer("generating")
    for done, prompt in enumerate(prompts, start=1):
        folder = out_dir / prompt.id
        folder.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(generate(prompt)):
            (image if hasattr(image, "save") else Image.fromarray(image)).save(folder / f"{k}.png")
        progress(done, len(prompts))


def run(args: argparse.Namespace) -> None:
    if args.suite == "masks":
        _eval_masks(args)
        return
    if args.suite not in SUITES:
        raise SystemExit(f"unknown suite {args.suite!r}; choose one of {', '.join([*SUITES, 'masks'])}")
    if args.suite != "images":
        _eval_suite(args)
        return
    from atelier.evaluate.suite import format_table, report, score_folder
    from atelier.world.images import evalset

    prompts = evalset.load()
    if args.validate:
        from atelier.evaluate.validate import format_validation, validate

        table = validate(prompts, images_per_prompt=args.n or 4, size=args.size,
                         progress=lambda line: print(line, file=sys.stderr))
        print(format_validation(table))
        write_json(args.json, table)
        return
    if args.model is not None:
        folder = args.samples or Path("eval_samples") / Path(args.model).name
        _generate(args.model, prompts, Path(folder), args.n or 4, args.steps, args.threads)
    elif args.samples is None:
        raise SystemExit("give a folder of samples (atelier eval --suite images DIR), --model PATH, or --validate")
    else:
        folder = args.samples
    results = score_folder(Path(folder), prompts, partial=args.partial, progress=_progress_printer("scoring"))
    out = report(results, suite=args.suite, samples=str(folder), model=args.model)
    out["fidelity"] = _fidelity(Path(folder), prompts)
    print(format_table(out))
    if out["fidelity"] is not None:
        print(f"fidelity: Frechet distance {out['fidelity']['fd']:.2f} in the world classifier's features "
              f"({out['fidelity']['images']} images against {out['fidelity']['reference_images']} true renders; "
              f"lower is better, see docs/fidelity.md)")
    write_json(args.json or Path(folder) / "eval_images.json", out)


def _eval_masks(args: argparse.Namespace) -> None:
    """The segmenter's subject masks against the world's truth (IoU), on held-out images."""
    import torch

    from atelier.segment.evaluate import format_iou, subject_iou
    from atelier.segment.model import DEFAULT_SEGMENTER, Segmenter

    torch.set_num_threads(args.threads)
    segmenter = Segmenter.from_pretrained(args.model or DEFAULT_SEGMENTER)
    result = subject_iou(segmenter, count=args.n or 500, size=args.size)
    print(format_iou(result))
    write_json(args.json, {"suite": "masks", "model": str(args.model or DEFAULT_SEGMENTER), **result})


def _fidelity(folder: Path, prompts) -> dict | None:
    """The Frechet distance of the samples, or None when it cannot be measured (no classifier
    weights installed, or too few samples: a partial folder of one image)."""
    from atelier.evaluate.fidelity import folder_fidelity

    try:
        return folder_fidelity(folder, prompts)
    except ValueError as error:   # atelier.folder.FolderError included
        print(f"fidelity skipped: {error}", file=sys.stderr)
        return None


def _eval_suite(args: argparse.Namespace) -> None:
    """clips, edits and objects: the same commands as images, with the suite's own cases and layout."""
    import importlib

    suite = importlib.import_module(SUITES[args.suite])
    cases = suite.load_cases()
    if args.validate:
        per_case = {"per_case": args.n} if args.n else {}
        table = suite.validate(cases, size=args.size, progress=lambda line: print(line, file=sys.stderr), **per_case)
        print(suite.format_validation(table))
        write_json(args.json, table)
        return
    if args.inputs is not None:
        if args.suite != "edits":
            raise SystemExit("--inputs writes the edit suite's sources and masks; use it with --suite edits")
        suite.write_inputs(args.inputs, cases, size=args.size)
        print(f"wrote the sources, masks and instructions of {len(cases)} edits to {args.inputs}; put each output at "
              f"{args.inputs}/<case id>/<k>.png and run atelier eval --suite edits {args.inputs}")
        return
    folder = args.samples
    if args.model is not None:
        if args.model != "world" and args.suite != "edits":
            raise SystemExit(f"--model {args.model}: generating {args.suite} is not in this version's pipeline yet; "
                             f"write the samples yourself and score the folder, or use --model world")
        folder = folder or Path("eval_samples") / f"{Path(args.model).name}-{args.suite}"
        if Path(folder).exists() and any(Path(folder).iterdir()):
            raise SystemExit(f"error: {folder} already holds files; give an empty or new folder for the samples")
        if args.suite == "edits":
            suite.write_inputs(folder, cases, size=args.size)
        if args.model == "world":
            suite.write_truth(folder, cases, **({"per_case": args.n} if args.n else {}), size=args.size)
        else:
            _edit_cases(args.model, Path(folder), cases, args.n or 4, args.threads)
    elif folder is None:
        raise SystemExit(f"give a folder of samples (atelier eval --suite {args.suite} DIR), --model world, "
                         f"or --validate")
    results = suite.score_folder(Path(folder), cases, partial=args.partial, progress=_progress_printer("scoring"))
    out = suite.report(results, suite=args.suite, samples=str(folder), model=args.model)
    print(suite.format_table(out))
    if args.suite == "edits" and (raw := suite.raw_psnr(Path(folder), [r.case for r in results])) is not None:
        out["psnr_outside_raw"] = raw
        print(f"raw model outputs before paste-back ({raw['outputs']}): PSNR outside the mask mean "
              f"{raw['mean']:.1f} dB, median {raw['median']:.1f} dB")
    write_json(args.json or Path(folder) / f"eval_{args.suite}.json", out)


def _edit_cases(model: str, folder: Path, cases, n: int, threads: int) -> None:
    """The model's edits of every case from the inputs in `folder`: DIR/<case id>/<k>.png (pasted
    back) and DIR/<case id>/raw/<k>.png (before paste-back), prompted with the target's caption."""
    import torch

    from atelier.evaluate.edits import case_seed
    from atelier.pipeline import Atelier

    torch.set_num_threads(threads)
    pipe = Atelier.from_pretrained(model)
    progress = _progress_printer("editing")
    for done, case in enumerate(cases, start=1):
        directory = folder / case.id
        caption = (directory / "caption.txt").read_text().strip()
        result = pipe.edit(directory / "source.png", directory / "mask.png", caption, n=n, seed=case_seed(case))
        (directory / "raw").mkdir(exist_ok=True)
        for k, (image, raw) in enumerate(zip(result.images, result.raw)):
            image.save(directory / f"{k}.png")
            raw.save(directory / "raw" / f"{k}.png")
        progress(done, len(cases))
