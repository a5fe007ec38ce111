"""What the training stream never shows, so evaluation can measure generalisation.

Three held-out sets, each a fact about a scene rather than about its caption: a training
scene never contains a held-out colour-shape pair, never holds exactly N objects of a
held-out (N, shape) combination, and never places shapes in a held-out relation, whether or
not its caption mentions it. Held-out phrasings (words) live in `atelier.world.images.caption`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from atelier.world import vocab
from atelier.world.images.query import Observed

# One pair per shape and per colour: 12 of the 144 colour-shape pairs (8%).
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "star"), ("blue", "triangle"), ("green", "circle"), ("yellow", "heart"),
    ("purple", "square"), ("orange", "hexagon"), ("pink", "cross"), ("cyan", "diamond"),
    ("brown", "ring"), ("white", "crescent"), ("black", "arrow"), ("gray", "semicircle"),
})

# Exactly N objects of this shape (5 of the 36 counts of 2..4).
HELD_OUT_COUNTS: frozenset[tuple[int, str]] = frozenset({
    (2, "heart"), (3, "star"), (4, "circle"), (3, "diamond"), (4, "cross"),
})

# Shape A in this relation to shape B; each is held out together with its inverse.
_HELD_OUT_RELATIONS = {
    ("star", "above", "circle"), ("triangle", "left of", "square"),
    ("heart", "below", "hexagon"), ("ring", "right of", "diamond"),
    ("cross", "above", "arrow"),
}
HELD_OUT_RELATIONS: frozenset[tuple[str, str, str]] = frozenset(
    _HELD_OUT_RELATIONS | {(b, vocab.INVERSE_RELATION[r], a) for a, r, b in _HELD_OUT_RELATIONS}
)

SPLITS = ("train", "all")


def held_out_facts(objects: Sequence[Observed]) -> list[str]:
    """The held-out facts a set of objects exhibits (empty for a valid training scene)."""
    facts = [f"pair {o.colour} {o.shape}" for o in objects if (o.colour, o.shape) in HELD_OUT_PAIRS]
    counts: dict[str, int] = {}
    for o in objects:
        counts[o.shape] = counts.get(o.shape, 0) + 1
    facts += [f"count {n} {shape}" for shape, n in counts.items() if (n, shape) in HELD_OUT_COUNTS]
    for a in objects:
        for b in objects:
            if a is b:
                continue
            for relation in vocab.RELATIONS:
                if (a.shape, relation, b.shape) in HELD_OUT_RELATIONS and vocab.relation_holds(
                    relation, a.centre, b.centre
                ):
                    facts.append(f"relation {a.shape} {relation} {b.shape}")
    return facts


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def allowed_in(split: str, objects: Iterable[Observed]) -> bool:
    return check_split(split) == "all" or not held_out_facts(list(objects))
