"""What a 3D object prompt asserts: its shape, colour and size, any of them left free.

The same semantics as the image world's ObjectQuery (atelier.world.images.query): attributes the
prompt names must be seen, the others are free. One object per prompt, so no counts,
regions or relations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from atelier.world import vocab
from atelier.world.objects.primitives import SHAPES_3D


class SeenObject(Protocol):
    """A 3D object as seen: the world's truth or the oracle's reading of its views."""

    shape: str | None
    colour: str | None
    size: str | None


@dataclass(frozen=True)
class Object3DQuery:
    shape: str | None = None
    colour: str | None = None
    size: str | None = None

    def __post_init__(self) -> None:
        for what, value, choices in (("3D shape", self.shape, SHAPES_3D), ("colour", self.colour, vocab.COLOUR_NAMES),
                                     ("size", self.size, vocab.SIZE_NAMES)):
            if value is not None and value not in choices:
                raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(choices)}")
        if self.shape is None and self.colour is None:
            raise ValueError("a 3D object prompt names at least its shape or its colour")

    def failures(self, seen: SeenObject | None) -> list[str]:
        """Reasons the object seen does not satisfy the prompt; empty when it does."""
        if seen is None:
            return ["no object could be read"]
        out = []
        for attribute in ("shape", "colour", "size"):
            asked = getattr(self, attribute)
            if asked is not None and getattr(seen, attribute) != asked:
                out.append(f"{attribute} is {getattr(seen, attribute)}, asked {asked}")
        return out

    def satisfied_by(self, seen: SeenObject | None) -> bool:
        return not self.failures(seen)

    def describe(self) -> str:
        return " ".join(w for w in (self.size, self.colour, self.shape or "object") if w)

    def to_dict(self) -> dict:
        return {k: v for k, v in (("shape", self.shape), ("colour", self.colour), ("size", self.size)) if v}

    @classmethod
    def from_dict(cls, data: dict) -> Object3DQuery:
        unknown = set(data) - {"shape", "colour", "size"}
        if unknown:
            raise ValueError(f"unknown 3D prompt fields {sorted(unknown)}; expected shape, colour, size")
        return cls(shape=data.get("shape"), colour=data.get("colour"), size=data.get("size"))
