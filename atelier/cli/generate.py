"""atelier generate, edit, outpaint, vary, inspect and verify: images from text and from images, with
their settings inside the files, and what a file says about how it was made. Every setting, input
and output folder is checked before a model loads (exit status 2)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from pathlib import Path

from atelier.cli.common import UsageError, _not_negative, _positive, os_reason, output_folder


def add_parsers(commands) -> None:
    generate = commands.add_parser("generate", help="images from text, with their settings inside the files")
    generate.add_argument("prompt", nargs="*", help="one or more prompts (quote each)")
    generate.add_argument("--size", type=int, help="image side in pixels (default: the model's)")
    generate.add_argument("--prompts", type=Path, help="a text file with one prompt per line")
    generate.add_argument("--from", dest="source", type=Path, help="reproduce this image from its metadata")
    _sampling_options(generate)
    generate.set_defaults(run=_generate)

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
    edit.set_defaults(run=_edit)

    outpaint = commands.add_parser("outpaint", help="extend an image's canvas and draw the new area")
    outpaint.add_argument("image", type=Path)
    outpaint.add_argument("prompt", help="what the whole result should show (\"\" for none)")
    for side in ("left", "right", "top", "bottom"):
        outpaint.add_argument(f"--{side}", type=_not_negative, default=0, help=f"pixels to add on the {side}")
    _sampling_options(outpaint)
    outpaint.set_defaults(run=_edit)

    vary = commands.add_parser("vary", help="variations of an image, changed by a controllable amount")
    vary.add_argument("image", type=Path)
    vary.add_argument("--prompt", default="", help="steer the variations towards this (default: no prompt)")
    vary.add_argument("--strength", type=float, default=0.6,
                      help="how much to change, above 0 up to 1 (0.2: small changes; 1: a new image; default 0.6)")
    _sampling_options(vary)
    vary.set_defaults(run=_edit)

    inspect = commands.add_parser("inspect", help="print how an image was generated")
    inspect.add_argument("image", type=Path)
    inspect.add_argument("--json", action="store_true", help="the full metadata as JSON")
    inspect.set_defaults(run=_inspect)

    verify = commands.add_parser("verify", help="an image's generation metadata and invisible watermark")
    verify.add_argument("image", type=Path)
    verify.add_argument("--json", action="store_true", help="both as JSON")
    verify.set_defaults(run=_verify)


def _flag(setting: str) -> str:
    """The command-line flag of a pipeline setting (atelier.pipeline.SettingError.setting)."""
    return "-n" if setting == "n" else f"--{setting}"


def _usage(error: ValueError) -> UsageError:
    """A library's refusal of the command line's input, worded with the flag when it names a setting."""
    from atelier.pipeline import SettingError

    if isinstance(error, SettingError):
        return UsageError(f"error: {_flag(error.setting)} {error.rule}, got {error.value}")
    return UsageError(f"error: {error}")


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


def _generate(args: argparse.Namespace) -> None:
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
        output_folder(args.output)
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
            reason = os_reason(error) if isinstance(error, OSError) else "not a UTF-8 text file"
            raise UsageError(f"error: --prompts {args.prompts}: {reason}") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UsageError("error: give a prompt, --prompts FILE (one prompt per line) or --from IMAGE")
    requests = [GenerationRequest(prompt, args.negative, args.n, args.seed, args.steps, args.guidance, args.size,
                                  args.sampler) for prompt in prompts]
    _check_requests(requests, args.model)
    output_folder(args.output)
    import torch

    torch.set_num_threads(args.threads)
    pipe = Atelier.from_pretrained(args.model)
    chunk = max(1, MAX_IMAGES // args.n)
    for start in range(0, len(requests), chunk):
        for images in pipe.generate(requests[start:start + chunk], progress=not args.quiet):
            for path in save_numbered(images, args.output, f".{args.format}"):
                print(path)


def _edit(args: argparse.Namespace) -> None:
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
    output_folder(args.output)
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


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels, got {text!r}") from None
    return x, y
