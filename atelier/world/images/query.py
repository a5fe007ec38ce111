"""Structured prompts: what a caption asserts, and the one function that decides whether a
scene (true or read back from pixels by the oracle) satisfies it.

Semantics, as in GenEval: each object group asks for exactly `count` objects that match all
the attributes it names; attributes it does not name are free, and objects it does not
describe are ignored. Relations hold between single-object groups; a background query
constrains only what it names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from atelier.world import vocab


class Observed(Protocol):
    """An object as seen: a scene's ground truth or the oracle's reading of an image."""

    shape: str | None
    colour: str | None
    size: str | None
    texture: str | None
    region: int
    centre: tuple[float, float]


class ObservedBackground(Protocol):
    kind: str
    colours: tuple[str, ...]
    direction: str | None


@dataclass(frozen=True)
class ObjectQuery:
    shape: str
    count: int = 1
    colour: str | None = None
    size: str | None = None
    texture: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, vocab.SHAPES)
        _check_choice("colour", self.colour, vocab.COLOUR_NAMES, optional=True)
        _check_choice("size", self.size, vocab.SIZE_NAMES, optional=True)
        _check_choice("texture", self.texture, vocab.TEXTURES, optional=True)
        _check_choice("region", self.region, vocab.REGIONS, optional=True)
        if self.count not in vocab.COUNTS:
            raise ValueError(f"count must be one of {vocab.COUNTS}, got {self.count}")
        if self.region is not None and self.count != 1:
            raise ValueError("a region can only be asked of a single object")

    def matches(self, obj: Observed) -> bool:
        return (
            obj.shape == self.shape
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
            and (self.texture is None or obj.texture == self.texture)
        )


@dataclass(frozen=True)
class RelationQuery:
    subject: int  # index into Query.objects
    relation: str
    reference: int

    def __post_init__(self) -> None:
        _check_choice("relation", self.relation, vocab.RELATIONS)


@dataclass(frozen=True)
class BackgroundQuery:
    kind: str
    colours: tuple[str, ...] = ()  # solid: (c,); gradient: (start, end); patterns: unordered pair
    direction: str | None = None  # gradient only

    def __post_init__(self) -> None:
        _check_choice("background kind", self.kind, vocab.BACKGROUNDS)
        for colour in self.colours:
            _check_choice("background colour", colour, vocab.COLOUR_NAMES)
        expected = 1 if self.kind == "solid" else 2
        if self.colours and len(self.colours) != expected:
            raise ValueError(f"a {self.kind} background names {expected} colour(s), got {self.colours}")
        if self.direction is not None and (self.kind != "gradient" or self.direction not in vocab.GRADIENT_DIRECTIONS):
            raise ValueError(f"direction {self.direction!r} only applies to gradients: {vocab.GRADIENT_DIRECTIONS}")

    def failures(self, seen: ObservedBackground | None) -> list[str]:
        if seen is None:
            return ["no background could be read"]
        if seen.kind != self.kind:
            return [f"background is {seen.kind}, asked {self.kind}"]
        out = []
        if self.colours:
            ordered = self.kind in ("solid", "gradient")
            same = tuple(seen.colours) == self.colours if ordered else sorted(seen.colours) == sorted(self.colours)
            if not same:
                out.append(f"background colours {seen.colours}, asked {self.colours}")
        if self.direction is not None and seen.direction != self.direction:
            out.append(f"gradient runs {seen.direction}, asked {self.direction}")
        return out


@dataclass(frozen=True)
class Query:
    objects: tuple[ObjectQuery, ...]
    relations: tuple[RelationQuery, ...] = ()
    background: BackgroundQuery | None = None

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("a query names at least one object")
        if sum(group.count for group in self.objects) > vocab.MAX_OBJECTS:
            raise ValueError(f"a query asks for at most {vocab.MAX_OBJECTS} objects")
        for rel in self.relations:
            for index in (rel.subject, rel.reference):
                if not 0 <= index < len(self.objects) or self.objects[index].count != 1:
                    raise ValueError(f"relation {rel} must link two single-object groups")
            if rel.subject == rel.reference:
                raise ValueError(f"relation {rel} links a group to itself")
        regions = [g.region for g in self.objects if g.region is not None]
        if len(regions) != len(set(regions)):
            raise ValueError(f"two groups are asked to stand in the same region: {regions}")
        for i, a in enumerate(self.objects):
            for b in self.objects[i + 1:]:
                if _could_be_the_same(a, b):
                    raise ValueError(f"'{_describe(a)}' and '{_describe(b)}' could describe the same objects; "
                                     f"groups must differ in an attribute both name")

    def failures(self, objects: Sequence[Observed], background: ObservedBackground | None) -> list[str]:
        """Reasons the observation does not satisfy the query; empty when it does."""
        out: list[str] = []
        matched: list[list[Observed]] = []
        for group in self.objects:
            hits = [obj for obj in objects if group.matches(obj)]
            matched.append(hits)
            if len(hits) != group.count:
                out.append(f"{_describe(group)}: found {len(hits)}, asked {group.count}")
            elif group.region is not None and vocab.REGIONS[hits[0].region] != group.region:
                out.append(f"{_describe(group)} is at {vocab.REGIONS[hits[0].region]}, asked {group.region}")
        for rel in self.relations:
            subject, reference = matched[rel.subject], matched[rel.reference]
            if len(subject) == 1 and len(reference) == 1:
                if not vocab.relation_holds(rel.relation, subject[0].centre, reference[0].centre):
                    out.append(f"{_describe(self.objects[rel.subject])} is not {rel.relation} "
                               f"{_describe(self.objects[rel.reference])}")
        if self.background is not None:
            out.extend(self.background.failures(background))
        return out

    def satisfied_by(self, objects: Sequence[Observed], background: ObservedBackground | None) -> bool:
        return not self.failures(objects, background)

    def to_dict(self) -> dict:
        out = {
            "objects": [{k: v for k, v in asdict(g).items() if v is not None} for g in self.objects],
            "relations": [asdict(r) for r in self.relations],
        }
        if self.background is not None:
            bg = asdict(self.background)
            bg["colours"] = list(bg["colours"])
            out["background"] = {k: v for k, v in bg.items() if v not in (None, [])}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Query:
        background = data.get("background")
        return cls(
            objects=tuple(ObjectQuery(**g) for g in data["objects"]),
            relations=tuple(RelationQuery(**r) for r in data.get("relations", ())),
            background=None if background is None else BackgroundQuery(
                kind=background["kind"], colours=tuple(background.get("colours", ())),
                direction=background.get("direction"),
            ),
        )


def _could_be_the_same(a: ObjectQuery, b: ObjectQuery) -> bool:
    """Whether one object could match both groups (same shape, no attribute named by both
    with different values), which would make exact counts contradict each other."""
    if a.shape != b.shape:
        return False
    return all(x is None or y is None or x == y
               for x, y in ((a.colour, b.colour), (a.size, b.size), (a.texture, b.texture)))


def _describe(group: ObjectQuery) -> str:
    words = [group.size, group.colour, group.texture, group.shape]
    return " ".join(w for w in words if w)


def _check_choice(what: str, value: object, choices: Sequence, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(map(str, choices))}")
