"""Captions: a small grammar that says a query in many ways.

`describe` turns a scene into a query that is true of it (choosing which attributes to
mention, grouping objects into counts), and `say` turns a query into English with synonyms,
word orders and sentence frames drawn at random. Two lexicons: TRAIN, the only words the
training stream ever uses, and HELD_OUT, synonyms kept for the held-out-phrasing prompts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from atelier.world import vocab
from atelier.world.images.query import BackgroundQuery, ObjectQuery, Query, RelationQuery
from atelier.world.images.scene import Scene


@dataclass(frozen=True)
class Lexicon:
    shapes: dict[str, tuple[str, ...]]
    colours: dict[str, tuple[str, ...]]
    sizes: dict[str, tuple[str, ...]]
    texture_adjectives: dict[str, tuple[str, ...]]
    texture_phrases: dict[str, tuple[str, ...]]
    counts: dict[int, tuple[str, ...]]
    relations: dict[str, tuple[str, ...]]
    regions: dict[str, tuple[str, ...]]
    background: tuple[str, ...]  # the noun
    pattern_adjectives: dict[str, tuple[str, ...]]


TRAIN = Lexicon(
    shapes={
        "circle": ("circle",), "square": ("square",), "triangle": ("triangle",), "star": ("star",),
        "heart": ("heart",), "hexagon": ("hexagon",), "ring": ("ring", "donut"),
        "cross": ("cross", "plus sign"), "diamond": ("diamond",), "crescent": ("crescent",),
        "semicircle": ("semicircle", "half circle"), "arrow": ("arrow",),
    },
    colours={name: (name,) for name in vocab.COLOUR_NAMES} | {"cyan": ("cyan", "turquoise")},
    sizes={"small": ("small", "little"), "medium": ("medium", "medium-sized"), "large": ("large", "big")},
    texture_adjectives={"solid": ("solid", "plain"), "striped": ("striped",),
                        "dotted": ("dotted", "polka-dot"), "outlined": ("outlined",)},
    texture_phrases={
        "solid": ("in a single flat colour",), "striped": ("with stripes", "with diagonal stripes"),
        "dotted": ("with dots", "covered in dots"), "outlined": ("with an outline", "with a thick outline"),
    },
    counts={1: ("a", "a", "a", "one"), 2: ("two",), 3: ("three",), 4: ("four",)},
    relations={
        "left of": ("to the left of", "left of", "on the left of"),
        "right of": ("to the right of", "right of", "on the right of"),
        "above": ("above", "higher than"),
        "below": ("below", "under"),
    },
    regions={
        "top left": ("in the top left corner", "at the top left"),
        "top": ("at the top", "at the top middle"),
        "top right": ("in the top right corner", "at the top right"),
        "left": ("on the left", "at the middle left"),
        "center": ("in the center", "in the middle"),
        "right": ("on the right", "at the middle right"),
        "bottom left": ("in the bottom left corner", "at the bottom left"),
        "bottom": ("at the bottom", "at the bottom middle"),
        "bottom right": ("in the bottom right corner", "at the bottom right"),
    },
    background=("background",),
    pattern_adjectives={"checkered": ("checkered", "checkerboard"), "stripes": ("horizontally striped",)},
)

# Synonyms that never occur in a training caption; a concept absent here keeps its TRAIN words.
HELD_OUT = Lexicon(
    shapes={"circle": ("disk",), "diamond": ("rhombus",), "ring": ("hoop",), "crescent": ("moon",)},
    colours={"red": ("crimson",), "purple": ("violet",), "gray": ("grey",), "green": ("emerald",)},
    sizes={"small": ("tiny",), "large": ("huge",)},
    texture_adjectives={"dotted": ("spotted",), "striped": ("banded",)},
    texture_phrases={},
    counts={2: ("2", "a pair of"), 3: ("3",), 4: ("4",)},
    relations={"above": ("over",), "below": ("beneath", "underneath")},
    regions={
        "top left": ("in the upper left corner",), "top right": ("in the upper right corner",),
        "bottom left": ("in the lower left corner",), "bottom right": ("in the lower right corner",),
        "center": ("in the centre",),
    },
    background=("backdrop",),
    pattern_adjectives={"checkered": ("chequered",)},
)

PLURALS = {"cross": "crosses", "plus sign": "plus signs", "half circle": "half circles"}
_PREFIXES = ("", "", "", "a picture of ", "an image of ", "a drawing of ", "a simple illustration of ")


def article(determiner: str, following: str) -> str:
    return "an" if determiner == "a" and following[0] in "aeiou" else determiner


def words(text: str) -> list[str]:
    """Lower-case words of a caption, the unit the held-out-phrasing split is defined on."""
    return re.findall(r"[a-z]+|[0-9]+", text.lower())


def _lexicon_words(lexicon: Lexicon) -> set[str]:
    out: set[str] = set()
    for table in (lexicon.shapes, lexicon.colours, lexicon.sizes, lexicon.texture_adjectives,
                  lexicon.texture_phrases, lexicon.counts, lexicon.relations, lexicon.regions,
                  lexicon.pattern_adjectives):
        for phrases in table.values():
            for phrase in phrases:
                out.update(words(phrase))
    for phrase in lexicon.background:
        out.update(words(phrase))
    return out


def train_vocabulary() -> frozenset[str]:
    """Every word a training caption can contain."""
    frames = " ".join(_PREFIXES) + (
        " there is are and an on against with from to gradient fading background of horizontal stripes "
        "running left right top bottom an"
    )
    plural_words = {w for p in PLURALS.values() for w in words(p)} | {
        w + "s" for ws in TRAIN.shapes.values() for p in ws for w in words(p)
    }
    return frozenset(_lexicon_words(TRAIN) | set(words(frames)) | plural_words)


def held_out_words() -> frozenset[str]:
    """Words reserved for the held-out-phrasing prompts."""
    return frozenset(_lexicon_words(HELD_OUT) - train_vocabulary())


class _Speaker:
    def __init__(self, rng: random.Random, held_out: bool):
        self.rng = rng
        self.held_out = held_out

    def pick(self, table: str, key) -> str:
        if self.held_out:
            options = getattr(HELD_OUT, table).get(key)
            if options:
                return self.rng.choice(options)
        return self.rng.choice(getattr(TRAIN, table)[key])

    def noun(self, shape: str, plural: bool) -> str:
        word = self.pick("shapes", shape)
        if not plural:
            return word
        return PLURALS.get(word, word + "s")

    def object_phrase(self, group: ObjectQuery) -> str:
        rng = self.rng
        plural = group.count > 1
        adjectives = []
        if group.size:
            adjectives.append(self.pick("sizes", group.size))
        if group.colour:
            adjectives.append(self.pick("colours", group.colour))
        trailing = ""
        if group.texture:
            if rng.random() < 0.35:
                trailing = " " + self.pick("texture_phrases", group.texture)
            else:
                texture = self.pick("texture_adjectives", group.texture)
                adjectives.insert(rng.choice([len(adjectives), max(0, len(adjectives) - 1)]), texture)
        body = " ".join(adjectives + [self.noun(group.shape, plural)]) + trailing
        if group.region:
            body += " " + self.pick("regions", group.region)
        determiner = self.pick("counts", group.count)
        return f"{article(determiner, body)} {body}"

    def background_phrase(self, bg: BackgroundQuery) -> str:
        noun = self.pick_background_noun()
        colours = [self.pick("colours", c) for c in bg.colours]
        if bg.kind == "solid":
            lead = self.rng.choice(("on", "against", "with"))
            if not colours:
                return f"on a single colour {noun}"
            return f"{lead} {article('a', colours[0])} {colours[0]} {noun}"
        if bg.kind == "gradient":
            run = ""
            if bg.direction == "horizontal":
                run = " running left to right"
            elif bg.direction == "vertical":
                run = " running top to bottom"
            if not colours:
                return f"on a gradient {noun}{run}"
            if self.rng.random() < 0.5:
                return f"on a {noun} fading from {colours[0]} to {colours[1]}{run}"
            return f"on a gradient from {colours[0]} to {colours[1]}{run}"
        adjective = self.pick("pattern_adjectives", bg.kind)
        if not colours:
            return f"on a {adjective} {noun}"
        if bg.kind == "stripes" and self.rng.random() < 0.5:
            return f"on a {noun} of {colours[0]} and {colours[1]} horizontal stripes"
        return f"on {article('a', colours[0])} {colours[0]} and {colours[1]} {adjective} {noun}"

    def pick_background_noun(self) -> str:
        table = HELD_OUT.background if self.held_out else TRAIN.background
        return self.rng.choice(table)


def say(query: Query, rng: random.Random, held_out: bool = False) -> str:
    """One English sentence for the query; held_out=True uses the held-out synonyms."""
    speaker = _Speaker(rng, held_out)
    phrases = [speaker.object_phrase(g) for g in query.objects]
    used = set()
    clauses = []
    for rel in query.relations:
        relation = speaker.pick("relations", rel.relation)
        clauses.append(f"{phrases[rel.subject]} {relation} {phrases[rel.reference]}")
        used.update((rel.subject, rel.reference))
    rest = [p for i, p in enumerate(phrases) if i not in used]
    rng.shuffle(rest)
    clauses += rest
    body = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    background_first = query.background is not None and rng.random() < 0.25
    if rng.random() < 0.15:
        verb = "are" if clauses[0].split(" ", 1)[0] not in ("a", "an", "one") else "is"
        text = f"there {verb} {body}"
    elif not background_first:
        text = rng.choice(_PREFIXES) + body
    else:
        text = body
    if query.background is not None:
        bg = speaker.background_phrase(query.background)
        text = f"{bg}, {text}" if background_first else f"{text} {bg}"
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text


def describe(scene: Scene, rng: random.Random) -> Query:
    """A true, possibly partial, description of a scene: always every object's shape, often
    its colour, sometimes size, texture, position and the background. Objects that look the
    same under the chosen attributes become one counted group, so counts stay exact."""
    say_colour = rng.random() < 0.85
    say_size = rng.random() < 0.4
    say_texture = rng.random() < 0.4
    groups: dict[tuple, list[int]] = {}
    for index, obj in enumerate(scene.objects):
        key = (obj.shape, obj.colour if say_colour else None, obj.size if say_size else None,
               obj.texture if say_texture else None)
        groups.setdefault(key, []).append(index)
    singles = [key for key, members in groups.items() if len(members) == 1]
    say_regions = rng.random() < 0.3
    relations: list[RelationQuery] = []
    keys = list(groups)
    rng.shuffle(keys)
    if not say_regions and len(singles) >= 2 and rng.random() < 0.45:
        a, b = rng.sample([keys.index(k) for k in singles], 2)
        obj_a, obj_b = scene.objects[groups[keys[a]][0]], scene.objects[groups[keys[b]][0]]
        true = [r for r in vocab.RELATIONS if vocab.relation_holds(r, obj_a.centre, obj_b.centre)]
        relations.append(RelationQuery(subject=a, relation=rng.choice(true), reference=b))
    objects = []
    for key in keys:
        shape, colour, size, texture = key
        members = groups[key]
        region = None
        if say_regions and len(members) == 1 and rng.random() < 0.7:
            region = vocab.REGIONS[scene.objects[members[0]].region]
        objects.append(ObjectQuery(shape=shape, count=len(members), colour=colour, size=size,
                                   texture=texture, region=region))
    background = None
    if rng.random() < 0.7:
        bg = scene.background
        direction = bg.direction if bg.kind == "gradient" and rng.random() < 0.3 else None
        colours = bg.colours if rng.random() < 0.9 else ()
        background = BackgroundQuery(kind=bg.kind, colours=colours, direction=direction)
    return Query(objects=tuple(objects), relations=tuple(relations), background=background)


def speaker(rng: random.Random, held_out: bool = False) -> _Speaker:
    """The grammar's word chooser, for other sentences in the captions' style (edit
    instructions): `pick(table, key)`, `noun(shape, plural)`, `object_phrase(group)`."""
    return _Speaker(rng, held_out)
