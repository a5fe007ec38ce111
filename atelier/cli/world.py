"""atelier world preview|sample|evalset: the procedural world's pictures, samples and evaluation sets."""

from __future__ import annotations

import argparse
from pathlib import Path

from atelier.cli.common import _positive

EVALSETS = {suite: f"atelier.world.{suite}.evalset" for suite in ("images", "clips", "edits", "objects")}


def add_parsers(commands) -> None:
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
    world.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
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
