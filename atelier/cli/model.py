"""atelier model info|pack: the diffusion transformer's presets (parameters, FLOPs), and packing a
trained model folder for shipping."""

from __future__ import annotations

import argparse
from pathlib import Path

from atelier.cli.common import _positive


def add_parsers(commands) -> None:
    model = commands.add_parser("model", help="the diffusion transformer's presets; packing a model for shipping")
    model.add_argument("action", choices=["info", "pack"])
    model.add_argument("preset", help="info: a preset name (tiny, small, base, large, xl, xxl, unet-tiny) or 'all'; "
                       "pack: the model folder to pack")
    model.add_argument("-o", "--output", type=Path, help="pack: where to write the fp16 copy")
    model.add_argument("--latent", type=_positive, default=None,
                       help="latent side to count FLOPs at (default: the preset's sample_latent)")
    model.add_argument("--frames", type=_positive, default=1)
    model.add_argument("--text-tokens", type=_positive, default=32)
    model.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if args.action == "pack":
        from atelier.bundle import pack_bundle, weights_hash

        if args.output is None:
            raise SystemExit("error: atelier model pack SOURCE -o TARGET")
        path = pack_bundle(args.preset, args.output)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"wrote {path}: fp16, {size / 2**20:.1f} MiB, hash {weights_hash(path)}")
        return
    from atelier.model.config import PRESETS, UNET_PRESET_NAMES, preset
    from atelier.model.info import format_info, model_info

    names = [*PRESETS, *UNET_PRESET_NAMES] if args.preset == "all" else [args.preset]
    for name in names:
        config = preset(name)
        print(format_info(name, model_info(config, latent_side=args.latent, frames=args.frames,
                                           text_tokens=args.text_tokens)), flush=True)
