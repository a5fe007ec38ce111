"""Clip captions: the image grammar's object and background phrases (atelier.world.images.caption)
plus motion phrases with synonyms.

`describe_clip` turns a clip into a ClipQuery that is true of it (always each mover's motion,
often its colour, sometimes more; still objects described as the image world describes a
scene), and `say_clip` says a ClipQuery in English. Clip captions use no held-out word of the
image world, so mixing clips into training keeps the held-out-phrasing prompts held out.
"""

from __future__ import annotations

import random
from dataclasses import replace

from atelier.world import vocab
from atelier.world.clips.motion import Clip, frame_scene
from atelier.world.clips.query import ClipQuery, MotionQuery
from atelier.world.images.caption import describe, speaker
from atelier.world.images.query import BackgroundQuery, ObjectQuery, Query
from atelier.world.images.scene import Scene

MOVE_VERBS = ("moves", "drifts", "slides", "glides", "travels")
DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("to the left", "left", "leftwards"),
    "right": ("to the right", "right", "rightwards"),
    "up": ("up", "upwards"),
    "down": ("down", "downwards"),
    "up left": ("up and to the left", "diagonally up and to the left", "towards the top left"),
    "up right": ("up and to the right", "diagonally up and to the right", "towards the top right"),
    "down left": ("down and to the left", "diagonally down and to the left", "towards the bottom left"),
    "down right": ("down and to the right", "diagonally down and to the right", "towards the bottom right"),
}
EDGES = {"left": "left", "right": "right", "up": "top", "down": "bottom"}
SPIN_VERBS = ("spins", "rotates", "turns", "twirls")
SPIN_PHRASES = {"clockwise": ("clockwise",), "anticlockwise": ("anticlockwise", "counterclockwise")}
GROW_PHRASES = ("grows", "gets bigger", "grows larger", "expands")
SHRINK_PHRASES = ("shrinks", "gets smaller", "shrinks down", "contracts")
RECOLOUR_VERBS = ("turns", "changes to", "becomes", "changes colour to")
APPEAR_VERBS = ("appears", "pops up", "shows up", "comes into view")
STILL_FRAMES = (", while {} {} still", " and {} {} put", " as {} {} still")
PREFIXES = ("", "", "", "in this clip, ", "in the video, ", "in this animation, ")

# Chances that a mover's caption names each attribute (its motion is always named).
SAY_COLOUR, SAY_SIZE, SAY_TEXTURE, SAY_REGION, SAY_APPEAR_REGION = 0.85, 0.3, 0.35, 0.3, 0.6
SAY_BACKGROUND = 0.7


def describe_clip(clip: Clip, rng: random.Random) -> ClipQuery:
    """A true, possibly partial, description of a clip: every mover's shape and motion, its
    other attributes sometimes; the still objects as `caption.describe` says a scene (with
    counts, regions or a relation); the background often."""
    start = clip.start
    still = tuple(o for o, m in zip(start.objects, clip.motions) if m is None)
    groups: list[ObjectQuery] = []
    relations = ()
    if still:
        static = describe(Scene(size=start.size, background=start.background, objects=still), rng)
        groups, relations = list(static.objects), static.relations
    background = _background(start, rng)
    motions = []
    for obj, motion in zip(start.objects, clip.motions):
        if motion is None:
            continue
        travels = motion.kind in ("move", "bounce")
        resizes = motion.kind in ("grow", "shrink")
        say_region = SAY_APPEAR_REGION if motion.kind == "appear" else 0.0 if travels else SAY_REGION
        # A region is said only if the object keeps it in every frame (a growing object's centre
        # is re-snapped to whole pixels as its window grows). Movers' shapes are unique in a clip.
        regions = {o.region for t in range(clip.frames) for o in frame_scene(clip, t).objects if o.shape == obj.shape}
        same_region = len(regions) == 1
        group = ObjectQuery(
            shape=obj.shape,
            colour=obj.colour if motion.kind != "recolour" and rng.random() < SAY_COLOUR else None,
            size=obj.size if not resizes and rng.random() < SAY_SIZE else None,
            texture=obj.texture if rng.random() < SAY_TEXTURE else None,
            region=vocab.REGIONS[obj.region] if same_region and rng.random() < say_region else None,
        )
        kind = motion.kind
        motions.append(MotionQuery(
            subject=len(groups), kind=kind,
            direction=motion.direction if travels else None,
            spin=motion.spin if kind == "rotate" else None,
            colours=(obj.colour, motion.colour) if kind == "recolour" else (),
        ))
        groups.append(group)
    # Movers lead the sentence: put their groups first and renumber.
    order = [m.subject for m in motions] + [i for i in range(len(groups)) if i not in {m.subject for m in motions}]
    position = {old: new for new, old in enumerate(order)}
    scene = Query(objects=tuple(groups[i] for i in order),
                  relations=tuple(replace(r, subject=position[r.subject], reference=position[r.reference])
                                  for r in relations),
                  background=background)
    return ClipQuery(scene=scene, motions=tuple(replace(m, subject=position[m.subject]) for m in motions))


def _background(scene: Scene, rng: random.Random) -> BackgroundQuery | None:
    if rng.random() >= SAY_BACKGROUND:
        return None
    bg = scene.background
    direction = bg.direction if bg.kind == "gradient" and rng.random() < 0.3 else None
    colours = bg.colours if rng.random() < 0.9 else ()
    return BackgroundQuery(kind=bg.kind, colours=colours, direction=direction)


def motion_phrase(motion: MotionQuery, rng: random.Random) -> str:
    """The verb phrase of one motion (a recolour's says only the colour it turns to)."""
    words = speaker(rng)
    if motion.kind == "move":
        return f"{rng.choice(MOVE_VERBS)} {rng.choice(DIRECTION_PHRASES[motion.direction])}"
    if motion.kind == "bounce":
        edge = EDGES[motion.direction]
        return rng.choice((
            f"bounces off the {edge} edge",
            f"{rng.choice(MOVE_VERBS)} {rng.choice(DIRECTION_PHRASES[motion.direction])} and bounces back",
            f"hits the {edge} edge and bounces back",
        ))
    if motion.kind == "rotate":
        return f"{rng.choice(SPIN_VERBS)} {rng.choice(SPIN_PHRASES[motion.spin])}"
    if motion.kind == "grow":
        return rng.choice(GROW_PHRASES)
    if motion.kind == "shrink":
        return rng.choice(SHRINK_PHRASES)
    if motion.kind == "recolour":
        return f"{rng.choice(RECOLOUR_VERBS)} {words.pick('colours', motion.colours[1])}"
    return rng.choice(APPEAR_VERBS)


def say_clip(query: ClipQuery, rng: random.Random) -> str:
    """One English sentence for a clip query."""
    words = speaker(rng)
    motions = {m.subject: m for m in query.motions}
    clauses = []
    for index, motion in motions.items():
        group = query.scene.objects[index]
        if motion.kind == "recolour":
            start, end = motion.colours
            if rng.random() < 0.3:
                phrase = words.object_phrase(group)
                clauses.append(f"{phrase} changes from {words.pick('colours', start)} to {words.pick('colours', end)}")
                continue
            group = replace(group, colour=start)
        if motion.kind == "appear" and group.region is not None:
            phrase = words.object_phrase(replace(group, region=None))
            clauses.append(f"{phrase} {motion_phrase(motion, rng)} {words.pick('regions', group.region)}")
            continue
        clauses.append(f"{words.object_phrase(group)} {motion_phrase(motion, rng)}")
    body = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    still = _still_part(query, set(motions), words)
    if still:
        subject, plural = still
        verb = rng.choice(STILL_FRAMES)
        body += verb.format(subject, ("stay" if plural else "stays"))
    background_first = query.scene.background is not None and rng.random() < 0.25
    text = body if background_first else rng.choice(PREFIXES) + body
    if query.scene.background is not None:
        bg = words.background_phrase(query.scene.background)
        text = f"{bg}, {text}" if background_first else f"{text} {bg}"
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text


def _still_part(query: ClipQuery, movers: set[int], words) -> tuple[str, bool] | None:
    """The still objects as one noun phrase (relations said as the image grammar says them),
    and whether it is plural."""
    groups = query.scene.objects
    phrases = {i: words.object_phrase(g) for i, g in enumerate(groups) if i not in movers}
    if not phrases:
        return None
    parts, used = [], set()
    for rel in query.scene.relations:
        parts.append(f"{phrases[rel.subject]} {words.pick('relations', rel.relation)} {phrases[rel.reference]}")
        used.update((rel.subject, rel.reference))
    parts += [p for i, p in phrases.items() if i not in used]
    plural = len(parts) > 1 or any(groups[i].count > 1 for i in phrases if i not in used)
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text, plural
