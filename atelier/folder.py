"""A model on disk is a folder: `config.json` plus safetensors shards with an index.

The layout diffusers users know (`model.safetensors.index.json` maps each tensor to its shard),
with shards of at most 15 MiB so any one file crosses a transfer limit (a tensor larger than a
shard is stored as row chunks `name#0`, `name#1`, ... listed in the index's metadata). Writes are atomic: every
file goes to a temporary name first and the folder appears under its final name only once it is
complete, so a killed process never leaves a half-written model that loads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
MAX_SHARD_BYTES = 15 * 1024 * 1024


Config = TypeVar("Config")


class FolderError(ValueError):
    """A model folder is missing, corrupt, or does not match what loads it."""


def save_folder(path: str | Path, config: Mapping[str, Any], tensors: Mapping[str, Any],
                max_shard_bytes: int = MAX_SHARD_BYTES) -> Path:
    """Write `config` and `tensors` (a state dict) as a model folder, replacing any folder there."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors, chunked = _chunk_large(tensors, max_shard_bytes)
    shards = _plan_shards(tensors, max_shard_bytes)
    with staged(path) as staging:
        weight_map, total = {}, 0
        for number, names in enumerate(shards, start=1):
            filename = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            part = {name: tensors[name].detach().contiguous().cpu() for name in names}
            save_file(part, str(staging / filename), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(names, filename))
            total += sum(t.numel() * t.element_size() for t in part.values())
        index = {"metadata": {"total_size": total, "chunked": chunked}, "weight_map": weight_map}
        (staging / INDEX).write_text(json.dumps(index, indent=1) + "\n")
        (staging / CONFIG).write_text(json.dumps(dict(config), indent=1) + "\n")
    return path


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path` to write into; swapped in at `path` when the block ends
    without an error, removed when it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield staging
        swap_in(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_dir():
        raise FolderError(f"{path} is not a model folder (expected a directory with {CONFIG} and {INDEX})")
    try:
        return json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise FolderError(f"{path} has no {CONFIG}; it is not a model folder or was not fully written") from None
    except json.JSONDecodeError as error:
        raise FolderError(f"{path / CONFIG} is corrupt: {error}") from None


def config_from_dict(cls: type[Config], data: Any, what: str) -> Config:
    """`cls(**data)` for the dataclass config `what` read from a config.json or a checkpoint, refusing a
    field this version does not know (a newer version wrote it, or a typo) rather than dropping it."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a {what} is a JSON object, got {type(data).__name__}")
    known = {field.name for field in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} fields: {', '.join(unknown)}; this version knows {', '.join(sorted(known))}")
    return cls(**data)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Every tensor of the folder, after checking the index against the shards."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        index = json.loads((path / INDEX).read_text())
        weight_map: dict[str, str] = index["weight_map"]
    except FileNotFoundError:
        raise FolderError(f"{path} has no {INDEX}; the folder was not fully written") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise FolderError(f"{path / INDEX} is corrupt: {error!r}") from None
    tensors: dict[str, Any] = {}
    for filename in sorted(set(weight_map.values())):
        shard = path / filename
        if not shard.is_file():
            raise FolderError(f"{path} is missing shard {filename} named in its index")
        try:
            part = load_file(str(shard), device=str(device))  # safetensors takes "cuda:0", not torch.device
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise FolderError(f"shard {shard} is corrupt or truncated: {error}") from None
        expected = {name for name, file in weight_map.items() if file == filename}
        if set(part) != expected:
            missing, extra = sorted(expected - set(part)), sorted(set(part) - expected)
            raise FolderError(f"shard {shard} does not match the index (missing {missing[:5]}, extra {extra[:5]})")
        tensors.update(part)
    return _join_chunks(tensors, index.get("metadata", {}).get("chunked", {}), path)


def check_state_dict(expected: Mapping[str, Any], found: Mapping[str, Any], what: str) -> None:
    """Raise a FolderError naming every missing, unexpected or wrongly shaped tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{name}: expected {tuple(expected[name].shape)}, found {tuple(found[name].shape)}"
             for name in sorted(set(expected) & set(found)) if expected[name].shape != found[name].shape]
    if missing or unexpected or wrong:
        lines = [f"{what} does not match its config:"]
        if missing:
            lines.append(f"  missing {len(missing)} tensors, e.g. {', '.join(missing[:5])}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected tensors, e.g. {', '.join(unexpected[:5])}")
        lines += [f"  wrong shape {line}" for line in wrong[:5]]
        raise FolderError("\n".join(lines))


def _chunk_large(tensors: Mapping[str, Any], max_shard_bytes: int) -> tuple[dict[str, Any], dict[str, int]]:
    out: dict[str, Any] = {}
    chunked: dict[str, int] = {}
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes <= max_shard_bytes or tensor.dim() == 0:
            out[name] = tensor
            continue
        row_bytes = nbytes // tensor.shape[0]
        if row_bytes > max_shard_bytes:
            raise ValueError(f"tensor {name}: one row has {row_bytes} bytes, more than a shard holds")
        pieces = tensor.split(max(1, max_shard_bytes // row_bytes))
        chunked[name] = len(pieces)
        out.update({f"{name}#{i}": piece for i, piece in enumerate(pieces)})
    return out, chunked


def _join_chunks(tensors: dict[str, Any], chunked: Mapping[str, int], path: Path) -> dict[str, Any]:
    import torch

    for name, count in chunked.items():
        try:
            pieces = [tensors.pop(f"{name}#{i}") for i in range(count)]
        except KeyError as error:
            raise FolderError(f"{path}: chunk {error} of tensor {name} is missing") from None
        tensors[name] = torch.cat(pieces)
    return tensors


def _plan_shards(tensors: Mapping[str, Any], max_shard_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def swap_in(staging: Path, path: Path) -> None:
    """Swap a finished staging folder in at `path`; an old folder is removed only after the swap.
    Permissions follow the umask (a temporary folder starts private)."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    for file in staging.iterdir():
        if file.is_file():
            file.chmod(0o666 & ~umask)
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(staging, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, path)
