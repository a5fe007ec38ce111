"""The weights shipped inside the package (the default model, its tokenizer, the subject
segmenter, the judge's classifier), found through the installed package rather than a source
checkout, so a plain `pip install` serves them too. Each folder is a model on disk (atelier.folder)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SHIPPED = ("default", "tokenizer", "segmenter", "classifier")


def shipped(name: str) -> Path:
    """The folder of the shipped weights `name`, one of SHIPPED."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped weights named {name!r}; shipped: {', '.join(SHIPPED)}")
    return Path(str(files(__name__) / name))
