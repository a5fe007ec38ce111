"""What the subcommands share: the usage error (exit status 2), argument types, the output-folder
check and the JSON report writer. Standard library only, so `atelier --help` stays instant."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class UsageError(SystemExit):
    """Bad command-line input: exit status 2, as argparse's; the message is printed by main()."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


# The argument types keep their leading underscore: argparse names a type in its message for a value
# that is not a number ("argument -n: invalid _positive value: 'x'").
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def os_reason(error: OSError) -> str:
    """An OSError's reason in words, without the errno and the path Python puts around it."""
    return (error.strerror or str(error)).lower()


def output_folder(folder: Path) -> None:
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
        raise UsageError(f"error: -o {folder}: cannot write images there ({os_reason(error)})") from None


def write_json(path: Path | None, data: dict) -> None:
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)

