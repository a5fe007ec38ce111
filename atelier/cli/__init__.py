"""The `atelier` command: one module per group of subcommands, each adding its parsers with
add_parsers(commands) and naming the function that runs with set_defaults(run=...):

    world      world preview|sample|evalset
    evaluate   eval (and the runner that writes the samples it scores)
    generate   generate, edit, outpaint, vary, inspect, verify
    model      model info|pack
    bench      bench world|train|generate|serve
    text       text compact
    serve      serve, feedback, worker, users, keys
    train      train tokenizer|model|classifier|segmenter
    common     what they share: UsageError, argument types, the output-folder check

Subcommands import what they need when they run, so `atelier --help` stays instant.

Exit status 2 is bad input on the command line (argparse's own errors, and a setting out of range,
an input that cannot be read or an output folder that cannot be written, all found before a model
loads); 1 is a failure while working.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from atelier.cli import bench, evaluate, generate, model, serve, text, train, world
from atelier.cli.common import UsageError, os_reason

__all__ = ["UsageError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atelier", description="Atelier: visual generative model stack")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (world, evaluate, generate, model, bench, text, serve, train):
        group.add_parsers(commands)
    return parser


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
        raise SystemExit(f"error: {where}{os_reason(error)}") from error

