"""The committed evaluation sets' file format: one JSON object per line, keys sorted, so a
regenerated set diffs line by line against the committed one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

Case = TypeVar("Case")


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    """Each record's to_dict() on its own line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
    return path


def read_jsonl(path: Path, from_dict: Callable[[dict], Case]) -> tuple[Case, ...]:
    with open(path) as f:
        return tuple(from_dict(json.loads(line)) for line in f if line.strip())
